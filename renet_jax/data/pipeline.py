"""grain input pipelines: deterministic given a seed, sharded per process, resumable.

  it = iter(batches(sources["train"], batch_size=64, seed=0, train=True,
                    random_transform=lambda rng, ex: augment_example(rng, ex)))
  state = it.get_state(); ...; it.set_state(state)  # resumes exactly
"""

from typing import Any, Callable, Iterable, Iterator, Sequence

from absl import flags
import grain
import jax
import numpy as np

Example = dict[str, Any]


def batches(source: Sequence, *, batch_size: int, seed: int, train: bool,
            transform: Callable[[Example], Example] | None = None,
            batch_transform: Callable[[Example], Example] | None = None,
            random_transform: Callable[[np.random.Generator, Example], Example] | None = None,
            num_epochs: int | None = None, shard_index: int | None = None,
            shard_count: int | None = None, worker_count: int = 0,
            worker_buffer_size: int = 2) -> grain.IterDataset:
  """Batches of `source` (a random-access sequence of example dicts).

  Order: `transform` per example, batching, `batch_transform` per batch (e.g. a
  whitening product, far cheaper on a batch than per image), then `random_transform` on
  each example of the batch (training only), from a generator seeded per batch.
  Training: reshuffled every epoch from `seed`, repeated `num_epochs` times (None:
  forever), only full batches. Evaluation: in order,
  once, the last batch may be short. Each process reads its own shard (default: this
  JAX process's). worker_count > 0 runs the transforms in that many worker processes,
  each prefetching `worker_buffer_size` batches.
  """
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  ds = grain.MapDataset.source(source)
  if shard_count > 1:
    ds = ds[shard_index::shard_count]
  if train:
    ds = ds.shuffle(seed=seed).repeat(num_epochs)
  if transform is not None:
    ds = ds.map(transform)
  ds = ds.batch(batch_size, drop_remainder=train)
  if batch_transform is not None:
    ds = ds.map(batch_transform)
  if random_transform is not None and train:
    ds = ds.random_map(lambda batch, rng: _each_example(random_transform, rng, batch),
                       seed=seed)
  it = ds.to_iter_dataset()
  if worker_count > 0:
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; scripts may not parse
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count,
                                                     per_worker_buffer_size=worker_buffer_size))
  return it


def _each_example(fn, rng, batch: Example) -> Example:
  n = len(next(iter(batch.values())))
  examples = [fn(rng, {k: v[i] for k, v in batch.items()}) for i in range(n)]
  return {k: np.stack([ex[k] for ex in examples]) for k in batch}


def on_mesh(host_batches: Iterable[Example], sharding: jax.sharding.Sharding
            ) -> Iterator[dict[str, jax.Array]]:
  """Each process's batches as global arrays laid out by `sharding` (e.g. the batch axis
  split over a mesh's data axis): the global batch is all processes' batches stacked."""
  for batch in host_batches:
    yield {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
           for k, v in batch.items()}
