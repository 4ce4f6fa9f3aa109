r"""Cells compared on the same recipe, from committed run folders `<task>/<cell>/seed<k>`.

  python -m launch.compare_cells --workdir=results/parallel_cells [--baseline=gru]

Per task and cell: the seeds' test metric (mean and range), the epochs run, the
training-step seconds per epoch (the train rows' `step_s` over the epochs they cover:
compilation included, evaluation and checkpoints not), the mean of the seeds' best
validation metric, and the epochs and training-step
seconds a run took to first reach the baseline cell's mean best validation metric
(each seed's, then their median; "not reached" where a seed never did). The metric is
test accuracy for classification and mean IoU for segmentation, validation for the
"reach" columns.
"""

import os
import statistics

from absl import app, flags

from renet_jax import cli, files



def metric_name(results: dict) -> str:
  return "mean_iou" if "test_mean_iou" in results else "accuracy"


def load_run(folder: str) -> dict:
  """results.json and the metrics.jsonl rows of one run."""
  rows = files.read_jsonl(os.path.join(folder, "metrics.jsonl"))
  return {"results": files.read_json(os.path.join(folder, "results.json")), "rows": rows}


def reached(run: dict, metric: str, target: float) -> tuple[float, float] | None:
  """(epoch, training-step seconds) of the first validation row at or above `target`."""
  step_s = 0.0
  for row in run["rows"]:
    if row["split"] == "train":
      step_s += row.get("step_s", 0.0)
    elif row["split"] == "validation" and row.get(metric, -1) >= target:
      return row["epoch"], step_s
  return None


def seconds_per_epoch(run: dict) -> float:
  train = [r for r in run["rows"] if r["split"] == "train"]
  return sum(r.get("step_s", 0.0) for r in train) / max(train[-1]["epoch"], 1e-9)


def _seed_runs(folder: str) -> list[dict]:
  return [load_run(os.path.join(folder, s)) for s in sorted(os.listdir(folder))
          if os.path.isfile(os.path.join(folder, s, "results.json"))]


def compare(workdir: str, baseline: str = "gru", also: dict | None = None) -> list[dict]:
  """One row per (task, cell), the baseline cell first. `also`: {(task, cell): folder of
  seed<k> runs} kept elsewhere."""
  also = also or {}
  out = []
  for task in sorted(set(os.listdir(workdir)) | {t for t, _ in also}):
    task_dir = os.path.join(workdir, task)
    folders = {cell: os.path.join(task_dir, cell) for cell in (
        sorted(os.listdir(task_dir)) if os.path.isdir(task_dir) else [])}
    folders.update({cell: folder for (t, cell), folder in also.items() if t == task})
    runs = {c: _seed_runs(f) for c, f in folders.items() if os.path.isdir(f)}
    runs = {c: r for c, r in runs.items() if r}
    if baseline not in runs:
      continue
    metric = metric_name(runs[baseline][0]["results"])
    best = lambda run: max(row[metric] for row in run["rows"] if row["split"] == "validation")
    target = statistics.mean(best(r) for r in runs[baseline])
    for cell in [baseline] + sorted(set(runs) - {baseline}):
      test = [r["results"][f"test_{metric}"] for r in runs[cell]]
      hits = [reached(r, metric, target) for r in runs[cell]]
      got = [h for h in hits if h is not None]
      out.append({
          "task": task, "cell": cell, "seeds": len(test), "metric": metric,
          "test_mean": statistics.mean(test), "test_min": min(test), "test_max": max(test),
          "best_validation": statistics.mean(best(r) for r in runs[cell]),
          "epochs": statistics.mean(r["results"]["epochs"] for r in runs[cell]),
          "step_s_per_epoch": statistics.mean(seconds_per_epoch(r) for r in runs[cell]),
          "target": target, "reached": f"{len(got)}/{len(hits)}",
          "epochs_to_target": statistics.median(h[0] for h in got) if got else None,
          "step_s_to_target": statistics.median(h[1] for h in got) if got else None})
  return out


def markdown(rows: list[dict], baseline: str) -> str:
  lines = [f"| task | cell | seeds | test metric (mean, range) | best validation (mean) | "
           f"epochs | training s / epoch | reached {baseline}'s validation | epochs to it | "
           "training s to it |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    pct = lambda v: f"{100 * v:.2f}"
    to = lambda v, f: "-" if v is None else f.format(v)
    lines.append(
        f"| {r['task']} | {r['cell']} | {r['seeds']} | {r['metric']} {pct(r['test_mean'])} "
        f"({pct(r['test_min'])}-{pct(r['test_max'])}) | {pct(r['best_validation'])} | "
        f"{r['epochs']:.1f} | "
        f"{r['step_s_per_epoch']:.1f} | {r['reached']} ({pct(r['target'])}) | "
        f"{to(r['epochs_to_target'], '{:.1f}')} | {to(r['step_s_to_target'], '{:.0f}')} |")
  return "\n".join(lines)


def define_flags():
  """The entry point's flags, defined only when it runs (launch.report, imported beside
  this module by the tests, has a --workdir of its own)."""
  flags.DEFINE_string("workdir", None, "Folder of <task>/<cell>/seed<k> runs.")
  flags.DEFINE_string("baseline", "gru", "The cell the others must reach.")
  flags.DEFINE_multi_string(
      "also", [], "TASK/CELL=FOLDER: that cell's seed<k> runs from another folder, e.g. "
      "weizmann_horse-vgg/gru=results/weizmann_horse-vgg-images.")


def main(argv):
  del argv
  workdir, baseline = flags.FLAGS.workdir, flags.FLAGS.baseline
  if not workdir or not os.path.isdir(workdir):
    raise app.UsageError(f"--workdir={workdir!r} is not a folder of runs.")
  also = {}
  for spec in flags.FLAGS.also:
    key, _, folder = spec.partition("=")
    task, _, cell = key.partition("/")
    if not (task and cell and os.path.isdir(folder)):
      raise app.UsageError(f"--also={spec!r}: expected TASK/CELL=FOLDER of seed<k> runs.")
    also[task, cell] = folder
  print(markdown(compare(workdir, baseline, also), baseline))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
