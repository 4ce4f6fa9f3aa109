"""Input pipelines: determinism, per-epoch reshuffling, shards, exact resume, the
index-batch (on-device data) path in the same order, padding, prefetching."""

import subprocess
import sys
import textwrap

import grain
import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from renet_jax import parallel
from renet_jax.data import pipeline


def _source(n=20):
  return [{"image": np.full((4, 4, 1), i, np.uint8), "label": i % 10, "index": i}
          for i in range(n)]


def _take(it, k):
  return [next(it) for _ in range(k)]


def _equal(a, b):
  return all(np.array_equal(x[key], y[key]) for x, y in zip(a, b) for key in x)


def test_deterministic_given_seed_and_reshuffled_each_epoch():
  make = lambda seed: iter(pipeline.batches(_source(), batch_size=5, seed=seed, train=True))
  a, b, c = _take(make(0), 8), _take(make(0), 8), _take(make(1), 8)
  assert _equal(a, b) and not _equal(a, c)
  epochs = [np.concatenate([x["index"] for x in a[4 * e:4 * e + 4]]) for e in range(2)]
  assert all(sorted(e) == list(range(20)) for e in epochs)  # every example once per epoch
  assert not np.array_equal(epochs[0], epochs[1])


def test_resume_yields_the_same_next_batches():
  it = iter(pipeline.batches(_source(), batch_size=3, seed=0, train=True))
  _take(it, 5)
  state = it.get_state()
  want = _take(it, 6)
  resumed = iter(pipeline.batches(_source(), batch_size=3, seed=0, train=True))
  resumed.set_state(state)
  assert _equal(_take(resumed, 6), want)


def test_read_options_change_nothing_but_the_cpu_spent():
  """Our read-ahead (index batches in the calling thread, host batches at most
  READ_AHEAD_BATCHES ahead) gives grain's default pipeline's batches, and a state saved
  under one resumes under the other (checkpoints from before the change)."""
  n, kw = 23, dict(batch_size=4, seed=3, train=True)
  default = lambda: iter(pipeline.batches(_source(n), read_options=grain.ReadOptions(), **kw))
  ours = iter(pipeline.batches(_source(n), **kw))
  reference = default()
  assert _equal(_take(ours, 14), _take(reference, 14))  # 2.5 epochs: reshuffles too
  state = reference.get_state()
  resumed = iter(pipeline.batches(_source(n), **kw))
  resumed.set_state(state)
  assert _equal(_take(resumed, 6), _take(reference, 6))
  indices = iter(pipeline.index_batches(n, **kw))
  for ix, ex in zip(_take(indices, 14), _take(default(), 14)):
    np.testing.assert_array_equal(ix["index"], ex["index"])


@pytest.mark.parametrize("train", [True, False])
def test_index_batches_name_the_examples_batches_reads(train):
  kw = dict(batch_size=3, seed=4, train=train, shard_index=1, shard_count=2)
  examples = list(zip(range(9), pipeline.batches(_source(), **kw)))
  indices = list(zip(range(9), pipeline.index_batches(20, **kw)))
  assert len(examples) == len(indices) > 2
  for (_, ex), (_, ix) in zip(examples, indices):
    np.testing.assert_array_equal(ex["index"], ix["index"])


def test_gather_looks_up_device_arrays_and_passes_the_rest():
  arrays = pipeline.split_arrays(_source(), transform=lambda ex: {"image": ex["image"],
                                                                  "label": ex["label"]})
  assert arrays["image"].shape == (20, 4, 4, 1)
  assert pipeline.nbytes(_source(), lambda ex: {"image": ex["image"]}) == 20 * 16
  batch = pipeline.gather(arrays, {"index": np.array([3, 17]), "mask": np.ones(2)})
  np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], [3, 17])
  np.testing.assert_array_equal(batch["label"], [3, 7])
  np.testing.assert_array_equal(batch["mask"], [1, 1])
  plain = {"image": np.zeros(2)}
  assert pipeline.gather(arrays, plain) is plain


def test_shards_partition_the_data_and_eval_is_ordered_and_complete():
  shards = [list(pipeline.batches(_source(), batch_size=4, seed=0, train=False,
                                  shard_index=k, shard_count=3)) for k in range(3)]
  indices = [np.concatenate([b["index"] for b in s]) for s in shards]
  assert sorted(np.concatenate(indices)) == list(range(20))
  np.testing.assert_array_equal(indices[1], np.arange(1, 20, 3))
  assert [len(b["index"]) for b in shards[0]] == [4, 3]  # the short last batch is kept


@pytest.mark.parametrize("on_device", [False, True])
def test_evaluation_batches_are_padded_and_masked(on_device):
  out = list(pipeline.evaluation_batches(20 if on_device else _source(), batch_size=8,
                                         on_device=on_device))
  assert [len(b["index"]) for b in out] == [8, 8, 8]
  np.testing.assert_array_equal(out[-1]["mask"], [1, 1, 1, 1, 0, 0, 0, 0])
  real = np.concatenate([b["index"][b["mask"] > 0] for b in out])
  np.testing.assert_array_equal(real, np.arange(20))


def test_prefetcher_yields_the_batches_with_the_state_after_each():
  sharding = NamedSharding(parallel.make_mesh(), P("data"))
  make = lambda: iter(pipeline.batches(_source(), batch_size=4, seed=0, train=True))
  direct = make()
  prefetcher = pipeline.Prefetcher(make(), sharding, size=2)
  try:
    for _ in range(7):
      batch, state = next(prefetcher)
      want = next(direct)
      np.testing.assert_array_equal(np.asarray(batch["index"]), want["index"])
      assert isinstance(batch["image"], jax.Array)
    resumed = make()
    resumed.set_state(state)  # the state after the 7th batch: continues at the 8th
    np.testing.assert_array_equal(next(resumed)["index"], next(direct)["index"])
  finally:
    prefetcher.close()


def test_prefetcher_passes_errors_and_the_end_on():
  sharding = NamedSharding(parallel.make_mesh(), P("data"))

  def broken():
    yield {"x": np.zeros(2)}
    raise OSError("disk gone")

  prefetcher = pipeline.Prefetcher(broken(), sharding)
  next(prefetcher)
  with pytest.raises(OSError, match="disk gone"):
    next(prefetcher)
  prefetcher.close()
  finite = pipeline.Prefetcher(iter([{"x": np.zeros(2)}]), sharding)
  next(finite)
  with pytest.raises(StopIteration):
    next(finite)
  finite.close()


@pytest.mark.slow
def test_batches_come_out_sharded_over_eight_devices():
  code = textwrap.dedent("""
      import jax, numpy as np
      jax.config.update("jax_num_cpu_devices", 8)
      from jax.sharding import NamedSharding, PartitionSpec as P
      from renet_jax.data import pipeline
      source = [{"image": np.full((2, 2, 1), i, np.float32), "label": i} for i in range(16)]
      mesh = jax.make_mesh((8,), ("data",))
      host = next(iter(pipeline.batches(source, batch_size=16, seed=0, train=False)))
      batch = pipeline.on_mesh(host, NamedSharding(mesh, P("data")))
      assert batch["image"].shape == (16, 2, 2, 1)
      shards = batch["label"].addressable_shards
      assert len(shards) == 8 and all(s.data.shape == (2,) for s in shards)
      assert sorted(int(v) for s in shards for v in np.asarray(s.data)) == list(range(16))
      print("ok")
  """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


@pytest.mark.slow
def test_worker_processes_yield_the_same_batches(tmp_path):
  script = tmp_path / "workers.py"
  script.write_text(
      "import numpy as np\n"
      "from renet_jax.data import pipeline\n"
      "def double(ex):\n"
      "  return dict(ex, image=ex['image'] * 2)\n"
      "if __name__ == '__main__':\n"
      "  src = [{'image': np.full((4, 4, 1), i, np.uint8), 'label': i} for i in range(40)]\n"
      "  make = lambda w: pipeline.batches(src, batch_size=4, seed=0, train=True,\n"
      "                                    transform=double, worker_count=w)\n"
      "  a = [b for _, b in zip(range(12), make(2))]\n"
      "  b = [b for _, b in zip(range(12), make(0))]\n"
      "  same = all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)\n"
      "  print('same' if same and len(a) == 12 else 'different')\n")
  out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0 and "same" in out.stdout, out.stderr[-2000:]
