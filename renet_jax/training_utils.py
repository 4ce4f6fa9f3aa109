"""What a training run needs besides the steps: config checks, metric files, progress,
learning-curve pictures, atomic JSON."""

import json
import os
import sys
import time

import ml_collections

from renet_jax import optim

FLIPS = ("none", "horizontal", "both")


def check_config(config: ml_collections.ConfigDict, task_cls):
  """Rejects values that cannot work before any work starts (unknown fields and wrong
  types are already rejected by the locked config when the flags are parsed)."""
  problems = []

  def need(ok, message):
    if not ok:
      problems.append(message)

  need(config.model.name in task_cls.MODELS,
       f"model.name={config.model.name!r}: choose one of {task_cls.MODELS}")
  need(config.optimizer.name in optim.OPTIMIZERS,
       f"optimizer.name={config.optimizer.name!r}: choose one of {optim.OPTIMIZERS}")
  need(config.optimizer.schedule in optim.SCHEDULES,
       f"optimizer.schedule={config.optimizer.schedule!r}: choose one of {optim.SCHEDULES}")
  need(config.data.name in task_cls.DATASETS,
       f"data.name={config.data.name!r}: choose one of {task_cls.DATASETS}")
  need(config.data.flip in FLIPS, f"data.flip={config.data.flip!r}: choose one of {FLIPS}")
  for field in ("batch_size", "eval_batch_size", "num_epochs", "log_every_steps"):
    need(config.train[field] > 0, f"train.{field}={config.train[field]} must be positive")
  need(config.optimizer.learning_rate > 0,
       f"optimizer.learning_rate={config.optimizer.learning_rate} must be positive")
  for rate in ("dropout_rate", "input_mask_rate"):
    if rate in config.model:
      need(0 <= config.model[rate] < 1, f"model.{rate}={config.model[rate]} must lie in [0, 1)")
  if problems:
    raise ValueError("Invalid config:\n  " + "\n  ".join(problems))


def write_json_atomic(path: str, obj):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, default=float)
  os.replace(tmp, path)


class MetricsWriter:
  """Appends {"step", "split", ...metrics} lines to metrics.jsonl and TensorBoard."""

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


def plot_learning_curves(metrics_path: str, png_path: str,
                         names=("loss", "accuracy", "mean_iou")):
  """One panel per metric of `names` found in metrics.jsonl, train and validation
  against step."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = [json.loads(line) for line in open(metrics_path)] if os.path.exists(
      metrics_path) else []
  names = [n for n in names if any(n in r for r in rows)] or ["loss"]
  fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
  for ax, name in zip(axes[0], names):
    for split in ("train", "validation"):
      pts = [r for r in rows if r["split"] == split and name in r]
      if pts:
        ax.plot([r["step"] for r in pts], [r[name] for r in pts], label=split,
                marker="." if split == "validation" else None)
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(png_path, dpi=100)
  plt.close(fig)


def maybe_initialize_distributed():
  """jax.distributed.initialize() for multi-process runs: under SLURM with more than one
  task, on TPU pods, or when JAX_COORDINATOR_ADDRESS is set; single processes skip it."""
  import jax
  slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
  if slurm_tasks > 1 or os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get(
      "TPU_WORKER_HOSTNAMES", "").count(",") > 0:
    jax.distributed.initialize()
