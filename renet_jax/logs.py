"""What a run reports while it trains: metrics.jsonl, TensorBoard, a progress bar."""

import json
import os
import sys
import time


class MetricsWriter:
  """Appends {"step", "split", "time", ...metrics} lines to metrics.jsonl and scalars to
  TensorBoard; does nothing when not `enabled` (processes other than 0)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    self.path = os.path.join(workdir, "metrics.jsonl")
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, split: str, metrics: dict):
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, "split": split, "time": time.time(),
                          **{k: float(v) for k, v in metrics.items()}}) + "\n")
    for k, v in metrics.items():
      self.tb.add_scalar(f"{split}/{k}", float(v), step)

  def flush(self):
    if self.enabled:
      self.tb.flush()


class TrainWindow:
  """Training metrics averaged over the steps since the last write, with images/s."""

  def __init__(self, batch_size: int):
    self.batch_size = batch_size
    self._reset()

  def _reset(self):
    self.sums, self.steps, self.start = {}, 0, time.time()

  def add(self, metrics: dict):
    for k, v in metrics.items():
      self.sums[k] = self.sums.get(k, 0.0) + v
    self.steps += 1

  def write(self, writer: MetricsWriter, step: int, **extra):
    elapsed = max(time.time() - self.start, 1e-9)
    writer.write(step, "train", {**{k: v / self.steps for k, v in self.sums.items()},
                                 "images_per_s": self.steps * self.batch_size / elapsed,
                                 **extra})
    self._reset()


def read_metrics(path: str) -> list[dict]:
  """The rows of a metrics.jsonl (none if it does not exist)."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class Progress:
  """A tqdm bar with step, loss, images/s and ETA; silent when not on a terminal."""

  def __init__(self, total: int, initial: int, batch_size: int):
    from tqdm import tqdm
    self.batch_size = batch_size
    self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                    disable=not sys.stderr.isatty())
    self.last = (time.time(), initial)

  def update(self, step: int, loss: float):
    self.bar.update(step - self.bar.n)
    now = time.time()
    if now - self.last[0] > 1.0:
      rate = (step - self.last[1]) * self.batch_size / (now - self.last[0])
      self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.0f}")
      self.last = (now, step)

  def close(self):
    self.bar.close()
