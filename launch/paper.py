r"""The thesis's numbers beside ours, from committed run folders.

  python -m launch.report --paper --workdir=results

Each folder under --workdir is one run's small outputs (results.json, config.json,
metrics.jsonl, command.txt, hardware.txt, learning_curve.png, panels/). The run's
config names its row of the thesis (dataset, VGG front end or not, class balancing);
the table gives, per metric the thesis reports, the thesis's number, ours on the test
split (in percent, as the thesis writes them) and ours minus the thesis's. Figure/ground
rows also show the foreground IoU and, when images were resized for the model, the
metrics at the images' own resolution; moving_digits_seg rows the mean IoU on all and
on occluded pixels.
"""

import os

from renet_jax import files
from renet_jax.errors import ConfigError

# (dataset, vgg, class balancing) -> {results.json test metric: the thesis's number}.
# Thesis Table 4.1 (Weizmann Horse, Oxford Flowers 17), 4.2 (CamVid), 3.2 (ReNet).
PAPER = {
    ("weizmann_horse", True, False): {"accuracy": 96.8, "mean_iou": 91.6},
    ("oxford_flowers17_seg", True, False): {"accuracy": 98.0},
    ("camvid", True, False): {"mean_iou": 58.8, "accuracy": 88.7,
                              "mean_class_accuracy": 68.1},
    ("camvid", True, True): {"mean_iou": 53.7, "accuracy": 83.5,
                             "mean_class_accuracy": 73.2},
    ("mnist", False, False): {"error": 0.45},
    ("cifar10", False, False): {"error": 12.35},
    ("svhn", False, False): {"error": 2.38},
}
NAMES = {"accuracy": "global acc", "mean_iou": "avg IoU", "mean_class_accuracy":
         "avg class acc", "error": "test error", "occluded_mean_iou": "avg IoU occluded"}


def row_key(config: dict) -> tuple[str, bool, bool]:
  model = config["model"].get(config["model"]["name"], {})
  return (config["data"]["name"], bool(model.get("vgg", False)),
          bool(config.get("loss", {}).get("class_balancing", False)))


def paper_rows(results_dir: str) -> list[dict]:
  """One row per (run folder, metric): run, metric, thesis, ours, difference, at
  (training or original resolution), epochs, command, hardware."""
  if not os.path.isdir(results_dir):
    raise ConfigError(f"--workdir={results_dir} is not a folder of run results")
  rows = []
  for name in sorted(os.listdir(results_dir)):
    folder = os.path.join(results_dir, name)
    if not os.path.isfile(os.path.join(folder, "results.json")):
      continue
    results = files.read_json(os.path.join(folder, "results.json"))
    config = files.read_json(os.path.join(folder, "config.json"))
    key = row_key(config)
    paper = PAPER.get(key, {})
    info = {"run": name, "epochs": results.get("epochs"),
            "stopped_by": results.get("stopped_by"),
            "command": _text(folder, "command.txt"), "hardware": _text(folder, "hardware.txt")}
    metrics = dict(paper) or {"accuracy": None}
    if key[0] in ("weizmann_horse", "oxford_flowers17_seg"):
      metrics.setdefault("mean_iou", None)
      metrics["class_iou.foreground"] = None
    if key[0] == "moving_digits_seg":  # no thesis row; memory shows on occluded pixels
      metrics.update(mean_iou=None, occluded_mean_iou=None)
    for prefix, at in (("test_", "training size"), ("test_original_size_", "original size")):
      for metric, thesis in metrics.items():
        ours = _get(results, prefix + metric)
        if ours is None:
          continue
        ours *= 100
        rows.append({**info, "metric": NAMES.get(metric, metric.replace(
            "class_iou.", "IoU ")), "at": at, "thesis": thesis, "ours": ours,
            "difference": None if thesis is None else ours - thesis})
  return rows


def _get(results: dict, key: str):
  head, _, tail = key.partition(".")
  value = results.get(head)
  if tail and isinstance(value, dict):
    value = value.get(tail)
  return value if isinstance(value, (int, float)) else None


def _text(folder, name):
  path = os.path.join(folder, name)
  return open(path).read().strip() if os.path.exists(path) else ""


def markdown(rows: list[dict]) -> str:
  fmt = lambda v: "-" if v is None else f"{v:.2f}"
  lines = ["| run | metric (test) | at | thesis | ours | ours - thesis | epochs |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    diff = "-" if r["difference"] is None else f"{r['difference']:+.2f}"
    epochs = "-" if r["epochs"] is None else f"{r['epochs']:.1f} ({r['stopped_by']})"
    lines.append(f"| {r['run']} | {r['metric']} | {r['at']} | {fmt(r['thesis'])} | "
                 f"{r['ours']:.2f} | {diff} | {epochs} |")
  return "\n".join(lines)
