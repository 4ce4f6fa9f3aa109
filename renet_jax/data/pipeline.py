"""Input pipelines: the host only reads and batches; everything random runs on the device.

Two ways to feed a split, with the same example order for the same seed:
- `batches`: grain reads the examples, applies a deterministic per-example `transform`
  (e.g. a resize) and batches them (numpy arrays);
- `split_arrays` + `index_batches`: the whole split, transformed once, is kept on the
  devices and grain yields only batches of example indices, gathered on the device
  (`gather`). For splits that fit in device memory this takes the host out of the loop.

Both are deterministic given the seed, reshuffled every epoch, sharded per JAX process,
and resumable (`it.get_state()` / `it.set_state()`). `Prefetcher` puts batches on a
device mesh ahead of use in a background thread.
"""

import queue
import threading
from typing import Any, Callable, Iterable, Mapping, Sequence

from absl import flags
import grain
import jax
import jax.numpy as jnp
import numpy as np

Example = dict[str, Any]


def batches(source: Sequence, *, batch_size: int, seed: int, train: bool,
            transform: Callable[[Example], Example] | None = None,
            num_epochs: int | None = None, shard_index: int | None = None,
            shard_count: int | None = None, worker_count: int = 0,
            worker_buffer_size: int = 2,
            read_options: grain.ReadOptions | None = None) -> grain.IterDataset:
  """Batches of `source` (a random-access sequence of example dicts), `transform`
  applied to each example first.

  Training: reshuffled every epoch from `seed`, repeated `num_epochs` times (None:
  forever), only full batches. Evaluation: in order, once, the last batch may be short.
  Each process reads its own shard (default: this JAX process's). worker_count > 0
  runs the transform in that many worker processes, each prefetching
  `worker_buffer_size` batches. `read_options`: grain's threads and read-ahead (default:
  its 16 threads, at most READ_AHEAD_BATCHES and READ_AHEAD_BYTES ahead).
  """
  ds = _ordered(grain.MapDataset.source(source), seed, train, num_epochs, shard_index,
                shard_count)
  if transform is not None:
    ds = ds.map(transform)
  if read_options is None:
    read_options = grain.ReadOptions(prefetch_buffer_size=_read_ahead(source, transform,
                                                                      batch_size))
  it = ds.batch(batch_size, drop_remainder=train).to_iter_dataset(read_options)
  if worker_count > 0:
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; scripts may not parse
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count,
                                                     per_worker_buffer_size=worker_buffer_size))
  return it


# Host memory grain's read-ahead may hold. Its default, 500 batches, is 27 GB of
# CamVid's cached VGG features (batch 5 of 11 MB examples): a 24 GB machine ran out.
READ_AHEAD_BYTES = 1 << 30
# Batches grain's 16 reading threads keep ready: 4 each. Its default, 500, is for remote
# disks; here it only costs CPU, spent again at every restart (`python -m experiments.bench
# --input_pipeline`: three 74-step iterators read with 2.2-2.6 CPU-s instead of 3.8, and
# 183-197 batches/s against 154-157 read without pause).
READ_AHEAD_BATCHES = 64


def _read_ahead(source, transform, batch_size: int) -> int:
  """Batches grain reads ahead: up to READ_AHEAD_BATCHES, at most READ_AHEAD_BYTES, at
  least 2."""
  if not len(source):
    return 2
  batch_bytes = max(1, batch_size * nbytes([source[0]], transform))
  return int(min(READ_AHEAD_BATCHES, max(2, READ_AHEAD_BYTES // batch_bytes)))


def index_batches(num_examples: int, *, batch_size: int, seed: int, train: bool,
                  num_epochs: int | None = None, shard_index: int | None = None,
                  shard_count: int | None = None,
                  read_options: grain.ReadOptions | None = None) -> grain.IterDataset:
  """{"index": int32 (batch,)}: the positions `batches` would read, in its order.
  `read_options`: grain's (default: INDEX_READ_OPTIONS)."""
  ds = _ordered(grain.MapDataset.range(num_examples), seed, train, num_epochs,
                shard_index, shard_count)
  ds = ds.map(lambda i: {"index": np.int32(i)})
  return ds.batch(batch_size, drop_remainder=train).to_iter_dataset(
      INDEX_READ_OPTIONS if read_options is None else read_options)


# Indices cost nothing to make: read in the calling thread, as grain advises for data in
# memory (its default, 16 threads reading 500 batches ahead, took 3.8 CPU-s for three
# 74-step iterators against 0.4: experiments.bench --input_pipeline); `Prefetcher`
# overlaps the device anyway.
INDEX_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def _ordered(ds, seed, train, num_epochs, shard_index, shard_count):
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if shard_count > 1:
    ds = ds[shard_index::shard_count]
  if train:
    ds = ds.shuffle(seed=seed).repeat(num_epochs)
  return ds


def split_arrays(source: Sequence, transform: Callable[[Example], Example] | None = None
                 ) -> dict[str, np.ndarray]:
  """The whole split as arrays, `transform` applied to each example once."""
  examples = [source[i] if transform is None else transform(source[i])
              for i in range(len(source))]
  return {k: np.stack([ex[k] for ex in examples]) for k in examples[0]}


def nbytes(source: Sequence, transform: Callable[[Example], Example] | None = None) -> int:
  """Bytes `split_arrays` would hold, estimated from the first example."""
  example = source[0] if transform is None else transform(source[0])
  return len(source) * sum(np.asarray(v).nbytes for v in example.values())


def gather(arrays: Mapping[str, jax.Array], batch: Example) -> Example:
  """A batch of `index_batches` looked up in device-resident split arrays (the rest of
  the batch, e.g. an evaluation mask, passes through); other batches pass unchanged."""
  if "index" not in batch:
    return batch
  index = batch["index"]
  rest = {k: v for k, v in batch.items() if k != "index"}
  return {**{k: jnp.take(v, index, axis=0) for k, v in arrays.items()}, **rest}


def on_mesh(batch: Example, sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """This process's part of a batch as global arrays laid out by `sharding` (e.g. the
  batch axis split over a mesh's data axis): the global batch is all processes' parts
  stacked."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


class Prefetcher:
  """Iterates `iterator` (of host batches) in a background thread, putting each batch
  on the mesh `size` batches ahead of use.

  `next()` returns (global batch, iterator state after it; None for iterators without
  `get_state`): a checkpoint records the state of what training consumed, not of what
  was prefetched. Errors in the thread are raised by `next()`. `close()` stops it.
  """

  def __init__(self, iterator, sharding: jax.sharding.Sharding, size: int = 2):
    self._iterator, self._sharding = iterator, sharding
    self._queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, daemon=True)
    self._thread.start()

  def _fill(self):
    try:
      while not self._stop.is_set():
        batch = next(self._iterator)
        state = self._iterator.get_state() if hasattr(self._iterator, "get_state") else None
        item = (on_mesh(batch, self._sharding), state)
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
    except BaseException as e:  # StopIteration included: handed to the consumer
      self._queue.put(e)

  def __iter__(self):
    return self

  def __next__(self):
    item = self._queue.get()
    if isinstance(item, BaseException):
      raise item
    return item

  def close(self):
    self._stop.set()
    while self._thread.is_alive():
      try:  # unblock a producer waiting on a full queue
        self._queue.get(timeout=0.1)
      except queue.Empty:
        pass
    self._thread.join()


def evaluation_batches(num_or_source, *, batch_size: int, transform=None,
                       on_device: bool) -> Iterable[Example]:
  """A split once, in order, each batch padded to `batch_size` with a 0/1 "mask" of the
  real examples (so every batch has one shape: one compiled evaluation step). With
  `on_device`, `num_or_source` is the number of examples and batches hold indices."""
  local = batch_size // jax.process_count()
  if on_device:
    it = index_batches(num_or_source, batch_size=local, seed=0, train=False)
  else:
    it = batches(num_or_source, batch_size=local, seed=0, train=False, transform=transform)
  for batch in it:
    yield pad_batch(batch, local)


def pad_batch(batch: Example, size: int) -> Example:
  """Pads a short final batch to `size` with masked-out copies of its first example."""
  n = len(next(iter(batch.values())))
  out = {k: np.concatenate([v, np.repeat(v[:1], size - n, axis=0)]) if n < size else v
         for k, v in batch.items()}
  out["mask"] = (np.arange(size) < n).astype(np.float32)
  return out
