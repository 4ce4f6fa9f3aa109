"""Training system: learning, data parallelism, exact resume, NaN stop, configs, results."""

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import flax
import jax
import ml_collections
import numpy as np
import optax
import pytest

import fixtures
from fixtures import TFDS

from experiments.configs import digits as digits_config
from experiments.configs import moving_digits_seg as moving_digits_seg_config
from renet_jax.data import registry
from renet_jax.errors import ConfigError
from renet_jax.nn.renet import ReNet
from renet_jax.serving import inference
from renet_jax.training import checkpoints, train
from renet_jax.training.tasks import ClassificationTask, VideoSegmentationTask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(config, workdir):
  return train.train_and_evaluate(config, workdir, ClassificationTask)


def _tiny_digits(**train_overrides):
  c = digits_config.get_config()
  c.data.data_dir = TFDS
  c.model.renet.units = (8, 8)
  c.model.renet.fc_units = (32,)
  c.train.num_epochs = 2
  c.train.patience = 0
  c.train.log_every_steps = 10
  for k, v in train_overrides.items():
    c.train[k] = v
  return c


def _latest_params(workdir):
  return checkpoints.load_params(workdir, "latest")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
  """The embedded default trained briefly (5 epochs), with JAX's compilation log kept
  in workdir/compiles.txt. Compiled as the tests compile, without XLA's optimisations
  (185 steps of 8x8 images: 53 -> 47 CPU-s with the bfloat16 test that compares)."""
  workdir = tmp_path_factory.mktemp("digits")
  c = digits_config.get_config("quick")
  c.data.data_dir = TFDS
  log = io.StringIO()
  handler = logging.StreamHandler(log)
  logging.getLogger("jax").addHandler(handler)
  jax.config.update("jax_log_compiles", True)
  try:
    with fixtures.xla_optimizations(False):
      results = run(c, str(workdir / "run"))
  finally:
    jax.config.update("jax_log_compiles", False)
    logging.getLogger("jax").removeHandler(handler)
  (workdir / "compiles.txt").write_text(log.getvalue())
  return workdir, results


@pytest.mark.slow
def test_digits_run_learns(digits_run):
  _, results = digits_run
  assert results["test_accuracy"] > 0.85  # chance is 0.10


@pytest.mark.slow
def test_bfloat16_run_trains_within_a_point_of_float32(digits_run, tmp_path):
  """model.dtype=bfloat16 (bf16 compute, float32 parameters, optimiser state, loss and
  metrics), the same run otherwise: test accuracy no more than 1 point below float32's
  (here 0.98 against 0.96), and results.json records the precision."""
  _, fp32 = digits_run
  c = digits_config.get_config("quick")
  c.data.data_dir = TFDS
  c.model.dtype = "bfloat16"
  bf16 = run(c, str(tmp_path / "run"))
  assert bf16["test_accuracy"] >= fp32["test_accuracy"] - 0.01, (bf16, fp32)
  assert (bf16["model_dtype"], fp32["model_dtype"]) == ("bfloat16", "float32")
  assert bf16["model_precision"] == "float32"
  assert {r["dtype"] for r in bf16["recurrences"]} == {"bfloat16"}
  assert {r["impl"] for r in fp32["recurrences"]} == {"custom_vjp"}  # CPU: docs/benchmarks.md


@pytest.mark.slow
def test_run_writes_its_workdir(digits_run):
  workdir, results = digits_run
  run = workdir / "run"
  for name in ("config.json", "metrics.jsonl", "results.json", "learning_curve.png",
               "tensorboard", "checkpoints"):
    assert (run / name).exists(), name
  on_disk = json.loads((run / "results.json").read_text())
  # The test accuracy on disk, recounted outside the training loop: the released best
  # parameters classify each of the 300 test digits (inference.Classifier, one at a time).
  test = registry.prepare("digits", data_dir=TFDS)[0]["test"]
  classifier = inference.Classifier(str(run))
  correct = sum(int(np.argmax(classifier([test[i]["image"]])[0]) == test[i]["label"])
                for i in range(len(test)))
  assert len(test) == on_disk["test_examples"] == 300
  assert on_disk["test_accuracy"] == correct / 300
  assert on_disk["test_error"] == pytest.approx(1 - correct / 300)
  assert results["device_count"] == jax.device_count() and results["num_params"] > 0
  assert json.loads((run / "config.json").read_text())["data"]["name"] == "digits"
  rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  validation = [r for r in rows if r["split"] == "validation"]
  assert len(validation) == 5  # one per epoch
  assert results["validation_error"] == pytest.approx(
      min(r["error"] for r in validation))  # the best checkpoint was evaluated
  assert all(r["images_per_s"] > 0 for r in rows if r["split"] == "train")


@pytest.mark.slow
def test_steps_compile_once_for_the_whole_run(digits_run):
  """Five epochs, seven evaluation passes (validation each epoch, validation and test of
  the best checkpoint; the splits have one size here): one trace and compilation each
  (a trace is what precedes every compilation or persistent-cache lookup)."""
  workdir, _ = digits_run
  traced = re.findall(r"Finished tracing (\w+) for jit",
                      (workdir / "compiles.txt").read_text())
  assert traced.count("_train") == 1 and traced.count("_evaluate") == 1, traced


@pytest.mark.slow
def test_where_the_time_went_adds_up(digits_run):
  workdir, results = digits_run
  time_s = {k[5:-2]: v for k, v in results.items() if k.startswith("time_")}
  assert set(time_s) == {"train_step", "data_wait", "evaluation", "checkpoint", "other"}
  assert all(v >= 0 for v in time_s.values()), time_s
  assert sum(time_s.values()) == pytest.approx(results["wall_time_s"], rel=1e-6)
  rows = [json.loads(l) for l in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
  in_steps = sum(r["step_s"] for r in rows if r["split"] == "train")  # the logged windows
  assert results["fraction_outside_step"] == pytest.approx(
      1 - in_steps / results["wall_time_s"], rel=1e-6)
  assert 0 < results["fraction_outside_step"] < 1
  assert results["train_images_per_s"] > 0 and results["eval_images_per_s"] > 0
  rows = [json.loads(l) for l in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if r["split"] == "train"]
  for r in train_rows:  # a window: waiting for data + in the step = its wall time
    assert r["data_wait_s"] >= 0 and r["step_s"] > 0
    steps = r["images_per_s"] * (r["data_wait_s"] + r["step_s"]) / 32  # batch 32
    assert steps == pytest.approx(round(steps), abs=1e-6) and round(steps) >= 1
  assert sum(r["step_s"] for r in train_rows) == pytest.approx(time_s["train_step"])
  validation = [r for r in rows if r["split"] == "validation"]
  assert validation and all(r["evaluation_s"] > 0 for r in validation)
  # Saves happen between windows; each train row has those since the previous row.
  assert all(r["checkpoint_s"] >= 0 for r in train_rows)
  assert sum(r["checkpoint_s"] for r in train_rows) <= time_s["checkpoint"]


def _tiny_moving_digits(**train_overrides):
  c = moving_digits_seg_config.get_config()
  c.data.data_dir = TFDS
  c.data.flip = "horizontal"  # drawn on the device from the step's key
  m = c.model.conv_deconv_rnn  # one conv-RNN and one deconv-RNN layer
  m.encoder_units = m.decoder_units = (4,)
  m.encoder_strides = m.decoder_strides = (2,)
  m.input_convs = m.state_convs = ()
  c.train.num_epochs = 1
  c.train.log_every_steps = 10
  for k, v in train_overrides.items():
    c.train[k] = v
  return c


# experiment -> (tiny config maker, task, step interrupted at, last step): digits to the
# end of its 2 epochs of 37 steps (resumed across an epoch boundary; the results too;
# compared with conftest's `tiny_digits_whole`, the same run through the CLI), clips to
# step 30 of an epoch of 125 (the clip pipeline's position and its flips, without the
# epoch's evaluation: the digits case has that).
_RESUME_CASES = {"digits": (_tiny_digits, ClassificationTask, 23, 74),
                 "moving_digits_seg": (_tiny_moving_digits, VideoSegmentationTask, 20, 30)}


@pytest.mark.slow
@pytest.mark.parametrize("case", [
    "digits", pytest.param("moving_digits_seg", marks=pytest.mark.optimized)])
def test_resume_is_exact(tmp_path, request, case):
  config, task, interrupted, last = _RESUME_CASES[case]
  if case == "digits":
    whole, _ = request.getfixturevalue("tiny_digits_whole")
    whole = {"workdir": whole, **json.loads(open(os.path.join(whole, "results.json")).read())}
  else:
    whole = {"workdir": str(tmp_path / "whole"), **train.train_and_evaluate(
        config(stop_after_steps=last), str(tmp_path / "whole"), task)}
  # Interrupted mid-epoch, then the same command again.
  first = train.train_and_evaluate(config(stop_after_steps=interrupted),
                                   str(tmp_path / "resumed"), task)
  assert not first["finished"] and first["stopped_by"] == "stop_after_steps"
  assert first["steps"] == interrupted
  resumed = train.train_and_evaluate(config(stop_after_steps=last - interrupted),
                                     str(tmp_path / "resumed"), task)
  step_a, params_a = _latest_params(whole["workdir"])
  step_b, params_b = _latest_params(str(tmp_path / "resumed"))
  assert step_a == step_b == last == resumed["steps"]
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(a, b)  # bitwise
  assert resumed["finished"] == whole["finished"] == (case == "digits")
  if whole["finished"]:
    assert resumed["test_accuracy"] == whole["test_accuracy"]


def _classify_argv(workdir, *extra):
  return [sys.executable, "-m", "experiments.classify",
          *fixtures.tiny_digits_args(workdir, *extra)]


@pytest.mark.slow
def test_killed_during_an_asynchronous_save_resumes_bitwise(tmp_path, tiny_digits_whole):
  """kill -9 while a checkpoint is being written in the background (orbax's temporary
  folder exists beside a complete checkpoint), then the same command again: the half
  written checkpoint is ignored and the run ends bitwise equal to an uninterrupted one."""
  whole, _ = tiny_digits_whole
  run_args = dict(cwd=REPO, capture_output=True, text=True, timeout=600)
  saving = ["--config.train.checkpoint_every_steps=1"]  # saves in flight most of the time
  killed = tmp_path / "killed"
  proc = subprocess.Popen(_classify_argv(killed, *saving), cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  in_flight = None
  deadline = time.time() + 300
  while proc.poll() is None and time.time() < deadline:
    names = os.listdir(killed / "checkpoints") if (killed / "checkpoints").is_dir() else []
    if any(n.isdigit() for n in names) and any("tmp" in n for n in names):
      proc.send_signal(signal.SIGKILL)
      in_flight = [n for n in names if "tmp" in n]
      break
    time.sleep(0.001)
  proc.wait()
  assert in_flight, "the run ended before a save could be caught in flight"
  again = subprocess.run(_classify_argv(killed), **run_args)
  assert again.returncode == 0, again.stderr[-2000:]
  assert "Resumed from" in again.stderr
  step_a, params_a = _latest_params(whole)
  step_b, params_b = _latest_params(str(killed))
  assert step_a == step_b == 74
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(a, b)
  results = [json.loads(open(os.path.join(d, "results.json")).read()) for d in (whole, killed)]
  assert results[0]["test_accuracy"] == results[1]["test_accuracy"]


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message_and_keeps_checkpoints(tmp_path):
  c = _tiny_digits(checkpoint_every_steps=1)
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 1e30
  with pytest.raises(FloatingPointError, match=r"The training loss became (nan|inf) at "
                     r"step (\d+); stopped. The last good checkpoint \(step \d+\) is kept"
                     ) as error:
    run(c, str(tmp_path / "run"))
  bad_step = int(re.search(r"at step (\d+)", str(error.value)).group(1))
  step, params = _latest_params(str(tmp_path / "run"))  # the good checkpoints are kept
  assert step < bad_step
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))


def test_invalid_values_are_rejected_before_any_work(tmp_path):
  c = _tiny_digits()
  c.model.name = "transformer"
  c.optimizer.name = "lion"
  with pytest.raises(ConfigError, match=r"invalid config: model.name='transformer' is "
                     r"unknown \(choose one of \('renet', 'cnn'\)\); optimizer.name='lion'"):
    run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


class _OneImageTask:
  """What preflight and `initial_state` read of a task: one 8x8 training image and a
  model."""
  constants = None
  init_params = staticmethod(lambda params: params)

  def __init__(self, model):
    self.sources = {"train": [{"image": np.zeros((8, 8, 1), np.uint8)}]}
    self.model = lambda: model

  def transform(self, example):
    return example

  def preprocess(self, constants, batch, key, train):
    return {"image": jax.numpy.asarray(batch["image"], jax.numpy.float32)}


class _ReNetOnly(flax.linen.Module):
  patch: tuple

  @flax.linen.compact
  def __call__(self, x, train=False):
    return ReNet(units=(4,), patch_sizes=(self.patch,))(x)


class _BuggyModule(flax.linen.Module):
  @flax.linen.compact
  def __call__(self, x, train=False):
    raise ValueError("a bug in the library")


def test_initial_parameters_agree_with_an_optimised_compilation():
  """`initial_state` compiles the parameters' program without XLA's optimisations: the
  values are those of an optimised compilation of `model.init` to float32 rounding."""
  task = _OneImageTask(_ReNetOnly((2, 2)))
  model = task.model()
  params = train.initial_state(0, model, optax.sgd(0.1), task).params
  init_rng = jax.random.split(jax.random.key(0))[0]
  with fixtures.xla_optimizations(True):
    want = jax.jit(model.init)(init_rng, train.example_image(task))["params"]
  assert jax.tree.structure(params) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_preflight_names_the_config_only_for_the_modules_own_checks():
  c = ml_collections.ConfigDict({"train": {"batch_size": 1},
                                 "data": {"name": "tiny"}, "model": {"name": "renet"}})
  with pytest.raises(ConfigError, match=r"model.renet does not fit the tiny images "
                     r"\(8, 8, 1\): .*not divisible by patch"):
    train.preflight(c, _OneImageTask(_ReNetOnly((3, 3))))  # 3 does not divide 8
  train.preflight(c, _OneImageTask(_ReNetOnly((2, 2))))  # fits
  with pytest.raises(ValueError, match="a bug in the library") as bug:
    train.preflight(c, _OneImageTask(_BuggyModule()))
  assert not isinstance(bug.value, ConfigError)  # keeps its traceback, not one line


@pytest.mark.slow
def test_cnn_baseline_trains_with_the_same_code(tmp_path):
  c = _tiny_digits()
  c.model.name = "cnn"
  c.model.cnn.features = (8,)
  results = run(c, str(tmp_path / "run"))
  assert results["model"] == "cnn" and results["test_accuracy"] > 0.5


# experiment -> (tiny config maker above, task, augmentation added to it)
_EIGHT_DEVICE_CASES = {
    "digits": ("_tiny_digits", "ClassificationTask", {"flip": "horizontal", "shift": 1}),
    "moving_digits_seg": ("_tiny_moving_digits", "VideoSegmentationTask", {}),  # flips
}


@pytest.mark.slow
def test_eight_devices_match_one_device():
  """The jitted steps on 1 and 8 (host) devices: the same training losses and
  parameters (augmentation drawn on the device included) and the same evaluation
  metrics, with batches from the host and gathered from device-resident data; for
  images and for video clips (one process for both: it starts with 8 devices)."""
  code = textwrap.dedent(f"""
      import itertools, sys
      import jax, numpy as np
      jax.config.update("jax_num_cpu_devices", 8)
      from renet_jax import parallel
      from renet_jax.data import pipeline
      from renet_jax.training import optim, tasks, train
      sys.path.insert(0, "tests")
      import test_train
      assert len(jax.devices()) == 8
      def flat(metrics):  # per-class dicts as "name/class" entries
        return {{f"{{k}}/{{j}}" if isinstance(v, dict) else k: w
                for k, v in metrics.items()
                for j, w in (v.items() if isinstance(v, dict) else [(None, v)])}}
      def check(case, maker, task_name, augmentation):
        c = getattr(test_train, maker)()
        c.data.update(augmentation)
        task = getattr(tasks, task_name)(c)
        # 12 validation examples: a full batch of 8 and one padded with 4 (the
        # evaluation must count the 4 and not the padding).
        batch_size = 8
        task.sources["validation"] = [task.sources["validation"][i] for i in range(12)]
        model = task.model()
        tx = optim.make_optimizer(c.optimizer, 10, 100)
        state0 = jax.device_get(train.initial_state(0, model, tx, task))  # steps donate
        train_data = pipeline.split_arrays(task.sources["train"], task.transform)
        def run(devices, on_device):
          steps = train.Steps(model, tx, task, parallel.make_mesh(devices),
                              on_device=[("train", train_data)] if on_device else ())
          state = jax.device_put(state0, steps.replicated)
          batches = (pipeline.index_batches(len(task.sources["train"]),
                                            batch_size=batch_size, seed=0, train=True)
                     if on_device else pipeline.batches(task.sources["train"],
                                                        batch_size=batch_size, seed=0,
                                                        train=True,
                                                        transform=task.transform))
          losses, sums = [], None
          for batch in itertools.islice(batches, 4):
            batch = pipeline.on_mesh(batch, steps.split)
            if sums is None:
              sums = steps.train_sums(state, batch)
            state, sums = steps.train(state, sums, batch)
            losses.append(float(sums["loss"]))
          totals = None
          for batch in pipeline.evaluation_batches(task.sources["validation"],
                                                   batch_size=batch_size,
                                                   transform=task.transform, on_device=False):
            batch = pipeline.on_mesh(batch, steps.split)
            if totals is None:
              totals = steps.eval_totals(state.params, batch, "validation")
            totals = steps.evaluate(state.params, totals, batch, "validation")
          return losses, state.params, task.summarize(jax.device_get(totals))
        l1, p1, e1 = run(jax.devices()[:1], on_device=False)
        for devices, on_device in ((jax.devices(), False), (jax.devices(), True)):
          l, p, e = run(devices, on_device)
          np.testing.assert_allclose(l, l1, rtol=1e-5, err_msg=case)
          for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=case)
          assert flat(e).keys() == flat(e1).keys()
          for k, v in flat(e1).items():
            np.testing.assert_allclose(flat(e)[k], v, rtol=1e-6, atol=1e-6, err_msg=case + k)
        print("ok", case, l1, e1)
      for case, args in {_EIGHT_DEVICE_CASES!r}.items():
        check(case, *args)
  """)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  # Each case checked, evaluated over the 12 examples (not the padding of the last batch).
  for case, counted in {"digits": "'examples': 12",
                        "moving_digits_seg": f"'pixels': {12 * 10 * 32 * 32}"}.items():
    (line,) = [l for l in out.stdout.splitlines() if l.startswith(f"ok {case} ")]
    assert counted in line, line


@pytest.mark.slow
def test_stop_at_an_epoch_boundary_and_rerun_of_a_finished_run(tmp_path):
  workdir = str(tmp_path / "run")
  first = run(_tiny_digits(stop_after_steps=37), workdir)  # = one epoch
  assert (first["finished"], first["steps"]) == (False, 37)
  done = run(_tiny_digits(patience=1), workdir)
  again = run(_tiny_digits(patience=1), workdir)
  assert again["steps"] == done["steps"] and again["test_accuracy"] == done["test_accuracy"]
  assert _latest_params(workdir)[0] == done["steps"]  # nothing trained the second time


@pytest.mark.slow
def test_a_missing_best_checkpoint_is_chosen_again_on_resume(tmp_path, caplog):
  """A workdir whose best checkpoint an earlier version deleted (its step is still the
  early-stopping record's best): the resumed run warns, picks the best again among its
  own evaluations, and ends with that checkpoint's metrics instead of crashing."""
  run(_tiny_digits(num_epochs=1), str(tmp_path / "run"))
  # The record of the earlier version's last checkpoint: its best (step 5, a score no
  # evaluation reaches) was deleted.
  record = tmp_path / "run" / "checkpoints" / "37" / "progress" / "metadata"
  progress = json.loads(record.read_text())
  progress["early_stopping"].update(best_step=5, best_score=2.0)
  record.write_text(json.dumps(progress))
  c = _tiny_digits(num_epochs=2)
  with caplog.at_level("WARNING"):
    rest = run(c, str(tmp_path / "run"))
  assert "is missing from" in caplog.text
  assert rest["finished"] and rest["best_step"] == 74 and "test_accuracy" in rest


@pytest.mark.slow
def test_time_budget_stops_with_the_best_checkpoint_evaluated_and_resumes(tmp_path):
  # A budget spent before the first step ends: one step, then validation, a checkpoint,
  # and the best (only) checkpoint evaluated on validation and test.
  first = run(_tiny_digits(time_budget_s=1e-3), str(tmp_path / "run"))
  assert first["stopped_by"] == "time_budget" and first["finished"]
  assert first["steps"] == 1 and first["best_step"] == 1
  saved = json.loads((tmp_path / "run" / "results.json").read_text())
  assert saved["stopped_by"] == "time_budget" and "test_accuracy" in saved
  # The budget may change on resume: the run goes on from step 1 to the end.
  rest = run(_tiny_digits(), str(tmp_path / "run"))
  assert rest["stopped_by"] == "num_epochs" and rest["steps"] == 74
  rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if r["split"] == "validation"] == [1, 37, 74]


@pytest.mark.slow
def test_a_spent_time_budget_ends_the_run_with_everything_written(tmp_path):
  """train.time_budget_s ends a run that would go on for 200 epochs: a validation pass
  and a checkpoint at the last step, then the best checkpoint evaluated on test and
  every file written, as when the epochs end (what a one-command GPU run relies on)."""
  workdir = tmp_path / "run"
  results = run(_tiny_digits(num_epochs=200, time_budget_s=12.0), str(workdir))
  assert results["finished"] and results["stopped_by"] == "time_budget"
  assert 0 < results["steps"] < 200 * 37
  assert 0 < results["best_step"] <= results["steps"]
  assert 12.0 <= results["wall_time_s"] < 60
  for name in ("results.json", "learning_curve.png", "best_params.npz", "provenance.json",
               "metrics.jsonl", "task.json", "config.json"):
    assert (workdir / name).exists(), name
  assert json.loads((workdir / "results.json").read_text())["test_accuracy"] == \
      results["test_accuracy"] > 0.5
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r for r in rows if r["split"] == "validation"][-1]["step"] == results["steps"]
  assert results["steps"] in checkpoints.Checkpoints(str(workdir), 2).steps()
  (sitting,) = json.loads((workdir / "provenance.json").read_text())["sittings"]
  assert sitting["stopped_by"] == "time_budget" and sitting["end_step"] == results["steps"]
