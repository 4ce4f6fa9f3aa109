"""Training system: learning, data parallelism, exact resume, NaN stop, configs, results."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments.configs import digits as digits_config
from experiments.configs import mnist as mnist_config
from renet_jax import train
from renet_jax.tasks import ClassificationTask

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(config, workdir):
  return train.train_and_evaluate(config, workdir, ClassificationTask)


def _tiny_digits(tmp_path, **train_overrides):
  c = digits_config.get_config()
  c.data.data_dir = str(tmp_path / "tfds")
  c.model.renet.units = (8, 8)
  c.model.renet.fc_units = (32,)
  c.train.num_epochs = 2
  c.train.patience = 0
  c.train.log_every_steps = 10
  for k, v in train_overrides.items():
    c.train[k] = v
  return c


def _latest_params(workdir):
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  restored = manager.restore(manager.latest_step())
  return manager.latest_step(), restored["state"]["params"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
  """The embedded default trained briefly (5 epochs)."""
  workdir = tmp_path_factory.mktemp("digits")
  c = digits_config.get_config("quick")
  c.data.data_dir = str(workdir / "tfds")
  return workdir, run(c, str(workdir / "run"))


@pytest.mark.slow
def test_digits_run_learns(digits_run):
  _, results = digits_run
  assert results["test_accuracy"] > 0.85  # chance is 0.10


@pytest.mark.slow
def test_run_writes_its_workdir(digits_run):
  workdir, results = digits_run
  run = workdir / "run"
  for name in ("config.json", "metrics.jsonl", "results.json", "learning_curve.png",
               "tensorboard", "checkpoints", "best"):
    assert (run / name).exists(), name
  on_disk = json.loads((run / "results.json").read_text())
  assert on_disk == pytest.approx(results)
  assert results["test_error"] == pytest.approx(1 - results["test_accuracy"])
  assert results["test_examples"] == 300
  assert results["device_count"] == jax.device_count() and results["num_params"] > 0
  assert json.loads((run / "config.json").read_text())["data"]["name"] == "digits"
  rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  validation = [r for r in rows if r["split"] == "validation"]
  assert len(validation) == 5  # one per epoch
  assert results["validation_error"] == pytest.approx(
      min(r["error"] for r in validation))  # the best checkpoint was evaluated
  assert all(r["images_per_s"] > 0 for r in rows if r["split"] == "train")


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
  whole = run(_tiny_digits(tmp_path), str(tmp_path / "whole"))
  # Interrupted mid-epoch (37 steps per epoch), then the same command again.
  first = run(_tiny_digits(tmp_path, stop_after_steps=23),
                                   str(tmp_path / "resumed"))
  assert not first["finished"] and first["stopped_by"] == "stop_after_steps"
  assert first["steps"] == 23
  resumed = run(_tiny_digits(tmp_path), str(tmp_path / "resumed"))
  step_a, params_a = _latest_params(str(tmp_path / "whole"))
  step_b, params_b = _latest_params(str(tmp_path / "resumed"))
  assert step_a == step_b == 74
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(a, b)  # bitwise
  assert resumed["test_accuracy"] == whole["test_accuracy"]


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message_and_keeps_checkpoints(tmp_path):
  c = _tiny_digits(tmp_path, checkpoint_every_steps=1)
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 1e30
  with pytest.raises(FloatingPointError, match=r"The training loss became (nan|inf) at "
                     r"step (\d+); stopped. The last good checkpoint \(step \d+\) is kept"):
    run(c, str(tmp_path / "run"))
  manager = ocp.CheckpointManager(str(tmp_path / "run" / "checkpoints"))
  assert manager.latest_step() is not None  # the good checkpoints are still there


def test_invalid_values_are_rejected_before_any_work(tmp_path):
  c = _tiny_digits(tmp_path)
  c.model.name = "transformer"
  c.optimizer.name = "lion"
  with pytest.raises(ValueError, match=r"Invalid config:\n  model.name='transformer': "
                     r"choose one of \('renet', 'cnn'\)\n  optimizer.name='lion'"):
    run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override,message", [
    ("--config.model.unitz=3", "unitz"),
    ("--config.train.batch_size=abc", "batch_size"),
])
@pytest.mark.slow
def test_unknown_fields_and_wrong_types_are_rejected_by_the_flags(tmp_path, override,
                                                                  message):
  out = subprocess.run(
      [sys.executable, "-m", "experiments.classify",
       "--config=experiments/configs/digits.py", override, f"--workdir={tmp_path}/run"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and message in out.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cnn_baseline_trains_with_the_same_code(tmp_path):
  c = _tiny_digits(tmp_path)
  c.model.name = "cnn"
  c.model.cnn.features = (8,)
  results = run(c, str(tmp_path / "run"))
  assert results["model"] == "cnn" and results["test_accuracy"] > 0.5


@pytest.mark.slow
def test_eight_devices_match_one_device():
  code = textwrap.dedent("""
      import os
      os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      from renet_jax import models, optim, parallel, train
      from renet_jax.losses import classification_loss
      from experiments.configs import digits
      c = digits.get_config()
      model = models.ReNetClassifier(10, units=(8, 8), fc_units=(16,))
      tx = optim.make_optimizer(c.optimizer, 10, 100)
      rng = np.random.default_rng(0)
      batches = [{"image": rng.random((32, 8, 8, 1), np.float32),
                  "label": rng.integers(0, 10, 32).astype(np.int32)} for _ in range(4)]
      params = model.init(jax.random.key(0), batches[0]["image"])["params"]
      def run(devices):
        mesh = parallel.make_mesh(devices)
        rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
        state = jax.device_put(train.TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
            rng=jax.random.key_data(jax.random.key(1))), rep)
        step = jax.jit(lambda s, b: train.train_step(
            s, b, model=model, tx=tx, loss_fn=classification_loss),
                       in_shardings=(rep, data), out_shardings=(rep, rep))
        losses = []
        for b in batches:
          state, m = step(state, jax.device_put(b, data))
          losses.append(float(m["loss"]))
        return losses, state.params
      l1, p1 = run(jax.devices()[:1])
      l8, p8 = run(jax.devices())
      assert len(jax.devices()) == 8
      np.testing.assert_allclose(l8, l1, rtol=1e-5)
      for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
      print("ok", l1)
  """)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(SHARED_MNIST),
                    reason="../shared/data/mnist is absent on this machine")
def test_mnist_quick_config_reaches_97_percent(tmp_path):
  c = mnist_config.get_config("quick")  # 32 units per RNN, one FC of 256, one epoch
  c.data.manual_dir = SHARED_MNIST
  c.data.data_dir = str(tmp_path / "tfds")
  results = run(c, str(tmp_path / "run"))
  assert results["test_accuracy"] >= 0.97, results


@pytest.mark.slow
def test_stop_at_an_epoch_boundary_and_rerun_of_a_finished_run(tmp_path):
  workdir = str(tmp_path / "run")
  first = run(_tiny_digits(tmp_path, stop_after_steps=37), workdir)  # = one epoch
  assert (first["finished"], first["steps"]) == (False, 37)
  done = run(_tiny_digits(tmp_path, patience=1), workdir)
  again = run(_tiny_digits(tmp_path, patience=1), workdir)
  assert again["steps"] == done["steps"] and again["test_accuracy"] == done["test_accuracy"]
  assert _latest_params(workdir)[0] == done["steps"]  # nothing trained the second time
