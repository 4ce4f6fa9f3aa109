"""grain pipelines: determinism, per-epoch reshuffling, shards, exact resume."""

import numpy as np

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
