"""What a run reports while it trains: metrics.jsonl, TensorBoard, a progress bar."""

import collections
import contextlib
import json
import os
import shutil
import sys
import time

from renet_jax import files


class MetricsWriter:
  """Appends {"step", "split", "time", ...metrics} lines to metrics.jsonl and scalars to
  TensorBoard; does nothing when not `enabled` (processes other than 0).

  A run resumed from its checkpoint at `resume_step` (0: none) logs again what came
  after it, so the rows past it (and a line cut by a kill) are dropped first, and the
  TensorBoard events are rebuilt from the rows kept: one row per logged step, however
  often the run was interrupted.
  """

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
    self.enabled = enabled
    if not enabled:
      return
    self.path = os.path.join(workdir, "metrics.jsonl")
    kept = [row for row in files.read_jsonl(self.path) if row["step"] <= resume_step]
    files.write_atomic(self.path, lambda tmp: _write_rows(tmp, kept))
    tb_dir = os.path.join(workdir, "tensorboard")
    shutil.rmtree(tb_dir, ignore_errors=True)
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(tb_dir)
    for row in kept:
      self._add_scalars(row)

  def write(self, step: int, split: str, metrics: dict):
    if not self.enabled:
      return
    row = {"step": step, "split": split, "time": time.time(),
           **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    self._add_scalars(row)

  def _add_scalars(self, row):
    for k, v in row.items():
      if k not in ("step", "split", "time"):
        self.tb.add_scalar(f"{row['split']}/{k}", v, row["step"])

  def close(self):
    if self.enabled:
      self.tb.close()


def _write_rows(path, rows):
  with open(path, "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)


class Clock:
  """Wall time spent in named activities, and the run's total since the clock started."""

  def __init__(self):
    self.start = time.perf_counter()
    self.spent = collections.defaultdict(float)
    self.last = 0.0  # seconds of the latest timed block

  @contextlib.contextmanager
  def __call__(self, name: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.last = time.perf_counter() - start
      self.spent[name] += self.last

  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def totals(self) -> dict:
    return dict(self.spent)

  def since(self, before: dict) -> collections.defaultdict:
    """Seconds per activity spent since `totals()` returned `before`."""
    return collections.defaultdict(
        float, {k: v - before.get(k, 0.0) for k, v in self.spent.items()})


class Throughput:
  """Where a run's time goes. Training is timed in windows between two reads of the
  device-side sums: a window's wall time is its time waiting for input batches
  (`data_wait`, timed by the caller's clock) plus its time in the step (the rest:
  dispatch and device work, compilation in the first window). Evaluation passes are
  timed by the caller (`evaluated`)."""

  def __init__(self, images_per_step: int):
    self.images_per_step = images_per_step
    self.windows = []  # (steps, wall seconds)
    self.evaluations = []  # (images, seconds)

  def start_window(self, clock: Clock):
    self._start = (time.perf_counter(), clock.spent["data_wait"])

  def end_window(self, clock: Clock, sums: dict) -> dict:
    """The metrics row of a window from its device-side sums: mean metrics, images/s,
    seconds waiting for data and in the step. Adds the step time to the clock."""
    start, wait_before = self._start
    wall = time.perf_counter() - start
    wait = clock.spent["data_wait"] - wait_before
    steps = int(sums["steps"])
    clock.spent["train_step"] += wall - wait
    self.windows.append((steps, wall))
    means = {k: float(v) / max(steps, 1) for k, v in sums.items()
             if k not in ("steps", "nonfinite_step")}
    return {**means, "images_per_s": steps * self.images_per_step / max(wall, 1e-9),
            "data_wait_s": wait, "step_s": wall - wait}

  def evaluated(self, images: int, seconds: float):
    self.evaluations.append((images, seconds))

  def summary(self, clock: Clock) -> dict:
    """results.json fields: steady-state training images/s (all windows but the first,
    which compiles), evaluation images/s (all passes but the first), and the run's wall
    time split into time_{train_step,data_wait,evaluation,checkpoint,other}_s."""
    def rate(items, per_item):
      items = items[1:] or items
      seconds = sum(s for _, s in items)
      return sum(n for n, _ in items) * per_item / seconds if seconds > 0 else 0.0

    total = clock.elapsed()
    spent = {k: clock.spent[k] for k in ("train_step", "data_wait", "evaluation",
                                         "checkpoint")}
    spent["other"] = total - sum(spent.values())
    return {"train_images_per_s": rate(self.windows, self.images_per_step),
            "eval_images_per_s": rate(self.evaluations, 1),
            "wall_time_s": total, **{f"time_{k}_s": v for k, v in spent.items()},
            "fraction_outside_step": 1 - spent["train_step"] / total if total else 0.0}


class Progress:
  """A tqdm bar with step, ETA, and the latest window's loss and images/s; silent when
  not on a terminal."""

  def __init__(self, total: int, initial: int):
    from tqdm import tqdm
    self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                    disable=not sys.stderr.isatty())

  def update(self, step: int):
    self.bar.update(step - self.bar.n)

  def show(self, row: dict):
    self.bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.0f}")

  def close(self):
    self.bar.close()
