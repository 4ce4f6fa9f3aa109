"""grain pipelines: determinism, per-epoch reshuffling, shards, exact resume."""

import numpy as np
import pytest

from renet_jax.data import augment, pipeline


def _source(n=20):
  return [{"image": np.full((4, 4, 1), i, np.uint8), "label": i % 10, "index": i}
          for i in range(n)]


def _shift(rng, ex):
  return dict(ex, image=augment.random_shift(rng, ex["image"], pixels=1)[0])


def _take(it, k):
  return [next(it) for _ in range(k)]


def _equal(a, b):
  return all(np.array_equal(x[key], y[key]) for x, y in zip(a, b) for key in x)


def test_deterministic_given_seed_and_reshuffled_each_epoch():
  make = lambda seed: iter(pipeline.batches(_source(), batch_size=5, seed=seed, train=True,
                                            random_transform=_shift))
  a, b, c = _take(make(0), 8), _take(make(0), 8), _take(make(1), 8)
  assert _equal(a, b) and not _equal(a, c)
  epochs = [np.concatenate([x["index"] for x in a[4 * e:4 * e + 4]]) for e in range(2)]
  assert all(sorted(e) == list(range(20)) for e in epochs)  # every example once per epoch
  assert not np.array_equal(epochs[0], epochs[1])


def test_resume_yields_the_same_next_batches():
  it = iter(pipeline.batches(_source(), batch_size=3, seed=0, train=True,
                             random_transform=_shift))
  _take(it, 5)
  state = it.get_state()
  want = _take(it, 6)
  resumed = iter(pipeline.batches(_source(), batch_size=3, seed=0, train=True,
                                  random_transform=_shift))
  resumed.set_state(state)
  assert _equal(_take(resumed, 6), want)


def test_shards_partition_the_data_and_eval_is_ordered_and_complete():
  shards = [list(pipeline.batches(_source(), batch_size=4, seed=0, train=False,
                                  shard_index=k, shard_count=3)) for k in range(3)]
  indices = [np.concatenate([b["index"] for b in s]) for s in shards]
  assert sorted(np.concatenate(indices)) == list(range(20))
  np.testing.assert_array_equal(indices[1], np.arange(1, 20, 3))
  # Evaluation applies no random transform and keeps the short last batch.
  assert [len(b["index"]) for b in shards[0]] == [4, 3]
  assert all(np.all(b["image"][:, 0, 0, 0] == b["index"]) for b in shards[0])


@pytest.mark.slow
def test_batches_come_out_sharded_over_eight_devices():
  import subprocess
  import sys
  import textwrap
  code = textwrap.dedent("""
      import os
      os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
      import jax, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      from renet_jax.data import pipeline
      source = [{"image": np.full((2, 2, 1), i, np.float32), "label": i} for i in range(16)]
      mesh = jax.make_mesh((8,), ("data",))
      it = pipeline.on_mesh(pipeline.batches(source, batch_size=16, seed=0, train=False),
                            NamedSharding(mesh, P("data")))
      batch = next(it)
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
  import subprocess
  import sys
  script = tmp_path / "workers.py"
  script.write_text(
      "import numpy as np\n"
      "from renet_jax.data import augment, pipeline\n"
      "def shift(rng, ex):\n"
      "  return dict(ex, image=augment.random_shift(rng, ex['image'], pixels=1)[0])\n"
      "if __name__ == '__main__':\n"
      "  src = [{'image': np.full((4, 4, 1), i, np.uint8), 'label': i} for i in range(40)]\n"
      "  make = lambda w: pipeline.batches(src, batch_size=4, seed=0, train=True,\n"
      "                                    random_transform=shift, worker_count=w)\n"
      "  a = [b for _, b in zip(range(12), make(2))]\n"
      "  b = [b for _, b in zip(range(12), make(0))]\n"
      "  same = all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)\n"
      "  print('same' if same and len(a) == 12 else 'different')\n")
  out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0 and "same" in out.stdout, out.stderr[-2000:]


def test_order_of_transforms():
  source = [{"image": np.full((2, 2, 1), i, np.float32), "label": i} for i in range(6)]
  batch = next(iter(pipeline.batches(
      source, batch_size=3, seed=0, train=True,
      transform=lambda ex: dict(ex, image=ex["image"] + 1),
      batch_transform=lambda b: dict(b, image=b["image"] * 10),
      random_transform=lambda rng, ex: dict(ex, image=ex["image"] + 0.5))))
  # (i + 1) * 10 + 0.5: per-example, then per-batch, then the random transform.
  want = (batch["label"] + 1) * 10 + 0.5
  np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], want)
  assert batch["image"].shape == (3, 2, 2, 1)
