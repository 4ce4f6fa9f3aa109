"""Evaluators: what a run measures (or draws) with a set of parameters, each one
`run(params) -> {metric: value}`.

`SplitMetrics` is the loop's own evaluation: the task's metrics over a whole split,
summed on the devices by the jitted `Steps.evaluate` (validation after every epoch,
which selects the best checkpoint and drives early stopping; validation and test of the
best parameters at the end; `released.evaluate` of a committed run). The others are
built from the config's `evals` block, one sub-block each, in the manner of
big_vision's `config.evals` and `evaluators/common.from_config`:

  config.evals.<name> = {"type": <one of TYPES>, "at": "epoch" | "end", ...its fields}

"epoch": after every validation pass (current parameters) and at the end (the best
ones); "end": at the end only. What they return goes to metrics.jsonl (a row named
<name>) and, at the end, to results.json. They run the task's `Predictor` on the
host, in process 0, on the images as stored (`task.images`):

  panels         {splits, num_panels}: panels/<split>.png, one row per image (a
                 clip's frames for video): input | truth | prediction
  original_size  {splits}: with data.image_size, the segmentation metrics at each
                 image's own resolution (the predictor's labels resized back, as
                 `experiments.predict` and an exported model give them):
                 <split>_original_size_<metric>
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from renet_jax import pictures
from renet_jax.data import preprocess
from renet_jax.evaluation import metrics

CADENCES = ("epoch", "end")
SPLITS = ("validation", "test")


class SplitMetrics:
  """The task's metrics over `split`: every example exactly once, across devices and
  processes, summed on the device by `steps` (a `train.Steps`), batches of
  `batch_size`. The zero sums are traced once and kept between runs."""

  def __init__(self, steps, task, split: str, batch_size: int):
    self.steps, self.task, self.split, self.batch_size = steps, task, split, batch_size
    self._zero_totals = None

  def run(self, params) -> dict:
    totals = None
    for batch in self.steps.evaluation_batches(self.task.sources[self.split], self.split,
                                               self.batch_size, self.task.transform):
      if totals is None:
        if self._zero_totals is None:
          self._zero_totals = self.steps.eval_totals(params, batch, self.split)
        totals = jax.tree.map(jnp.copy, self._zero_totals)
      totals = self.steps.evaluate(params, totals, batch, self.split)
    return self.task.summarize(jax.device_get(totals))


class Panels:
  """panels/<split>.png: the first `num_panels` images of each split (a video task: the
  first `num_panels` frames of its first clip), input | truth | prediction."""

  def __init__(self, task, workdir: str, splits=SPLITS, num_panels: int = 4):
    self.task, self.workdir = task, workdir
    self.splits, self.num_panels = tuple(splits), num_panels

  def run(self, params) -> dict:
    for split in self.splits:
      source = self.task.images[split]
      if not len(source) or not self.num_panels:
        continue
      first = self.task.resized(source[0])
      if first["image"].ndim == 4:  # a clip: its frames are the rows
        images = [first["image"][:self.num_panels]]
        labels = list(first["label"][:self.num_panels])
        predictions = list(self.task.predictor.labels(params, images)[0])
        inputs = images[0]
      else:
        examples = [first] + [self.task.resized(source[i])
                              for i in range(1, min(self.num_panels, len(source)))]
        inputs = np.stack([ex["image"] for ex in examples])
        labels = [ex["label"] for ex in examples]
        predictions = self.task.predictor.labels(params, list(inputs))
      pictures.write_png(os.path.join(self.workdir, "panels", f"{split}.png"),
                         pictures.panel(preprocess.scale(inputs), labels, predictions,
                                        self.task.pixels.colours))
    return {}


class OriginalSizeMetrics:
  """Segmentation metrics of the predictor's labels at each image's own size against
  the stored labels, one confusion matrix per split (nothing where the task does not
  resize, or a split's labels are all stored at the model's size already: its
  per-split metrics say it all)."""

  def __init__(self, task, splits=SPLITS, batch_size: int = 8):
    self.task, self.splits, self.batch_size = task, tuple(splits), batch_size

  def run(self, params) -> dict:
    task, out = self.task, {}
    if task.size is None:
      return out
    info = task.pixels.info
    for split in self.splits:
      source, k = task.images[split], info.num_classes
      if all(np.shape(source[i]["label"])[-2:] == task.size for i in range(len(source))):
        continue
      confusion = np.zeros((k, k), np.int64)
      for start in range(0, len(source), self.batch_size):
        examples = [source[i] for i in range(start, min(start + self.batch_size,
                                                       len(source)))]
        for example, labels in zip(examples, task.predictor.labels(
            params, [ex["image"] for ex in examples], self.batch_size)):
          confusion += metrics.confusion_matrix(
              labels, np.asarray(example["label"], np.int32), k, void=info.void)
      found = metrics.metrics_from_confusion(confusion, info.class_names)
      out.update({f"{split}_original_size_{name}": v for name, v in found.items()})
    return out


TYPES = {"panels": Panels, "original_size": OriginalSizeMetrics}
FIELDS = {"panels": ("splits", "num_panels"), "original_size": ("splits",)}


def panels(at: str = "epoch", splits=SPLITS, num_panels: int = 4) -> ml_collections.ConfigDict:
  """A config block of the panels evaluator."""
  return ml_collections.ConfigDict({"type": "panels", "at": at, "splits": tuple(splits),
                                    "num_panels": num_panels})


def original_size(at: str = "end", splits=SPLITS) -> ml_collections.ConfigDict:
  """A config block of the original-size metrics evaluator."""
  return ml_collections.ConfigDict({"type": "original_size", "at": at,
                                    "splits": tuple(splits)})


def check(evals: ml_collections.ConfigDict, need, one_of, segmentation: bool):
  """The config checks of an `evals` block (`config_checks` helpers `need`, `one_of`)."""
  for name, block in evals.items():
    where = f"evals.{name}"
    if "type" not in block:
      need(False, f"{where} has no type (one of {', '.join(TYPES)})")
      continue
    one_of(f"{where}.type", block.type, tuple(TYPES))
    if block.type not in TYPES:
      continue
    one_of(f"{where}.at", block.get("at", "end"), CADENCES)
    need(segmentation, f"{where}: the {block.type} evaluator needs a segmentation task")
    unknown = sorted(set(block) - {"type", "at", *FIELDS[block.type]})
    need(not unknown, f"{where}: unknown fields {unknown} (the {block.type} evaluator takes "
         f"{', '.join(('at',) + FIELDS[block.type])})")
    for split in block.get("splits", ()):
      one_of(f"{where}.splits", split, SPLITS)
    if "num_panels" in block:
      need(block.num_panels >= 0, f"{where}.num_panels={block.num_panels} must be >= 0")


def from_config(config: ml_collections.ConfigDict, task, workdir: str) -> dict:
  """{name: (cadence, evaluator)} of config.evals (none when the config has no block)."""
  out = {}
  for name, block in config.get("evals", {}).items():
    fields = {k: block[k] for k in FIELDS[block.type] if k in block}
    if block.type == "panels":
      evaluator = Panels(task, workdir, **fields)
    else:
      evaluator = OriginalSizeMetrics(task, batch_size=config.train.eval_batch_size, **fields)
    out[name] = (block.get("at", "end"), evaluator)
  return out
