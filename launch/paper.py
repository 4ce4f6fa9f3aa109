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
    ("svhn_cropped", False, False): {"error": 2.38},
}
NAMES = {"accuracy": "global acc", "mean_iou": "avg IoU", "mean_class_accuracy":
         "avg class acc", "error": "test error", "occluded_mean_iou": "avg IoU occluded"}


def row_key(config: dict) -> tuple[str, bool, bool]:
  model = config["model"].get(config["model"]["name"], {})
  return (config["data"]["name"], bool(model.get("vgg", False)),
          bool(config.get("loss", {}).get("class_balancing", False)))


def run_folders(results_dir: str) -> list[str]:
  """Every folder under `results_dir` (at any depth) that holds a run's results.json and
  config.json, as paths relative to it, sorted."""
  found = []
  for root, dirs, names in os.walk(results_dir):
    dirs.sort()
    if "results.json" in names and "config.json" in names:
      found.append(os.path.relpath(root, results_dir))
  return sorted(found)


def data_label(results: dict) -> str:
  """"<version>, <train>/<validation>/<test>" from the run's provenance."""
  data = results.get("provenance", {}).get("data")
  if not data:
    return "not recorded"
  sizes = "/".join(str(data["splits"][s]["examples"]) for s in ("train", "validation", "test")
                   if s in data["splits"])
  return f"{data['version']}, {sizes}"


def _fingerprint(results: dict) -> str | None:
  return results.get("provenance", {}).get("data", {}).get("sha256")


def paper_rows(results_dir: str) -> list[dict]:
  """One row per (run folder, metric): run, metric, thesis, ours, difference, at
  (training or original resolution), epochs, data (version and split sizes), command,
  hardware. A run whose prepared data's fingerprint differs from that of most runs of
  its dataset is marked in "data" ("differs"); a folder of seed runs (`<group>/seed<k>`)
  adds a row per metric with their mean ("<group> (mean of k)") and spread."""
  if not os.path.isdir(results_dir):
    raise ConfigError(f"--workdir={results_dir} is not a folder of run results")
  runs = [(name, files.read_json(os.path.join(results_dir, name, "results.json")),
           files.read_json(os.path.join(results_dir, name, "config.json")))
          for name in run_folders(results_dir)]
  usual = {}  # dataset -> the fingerprint most of its runs share
  for dataset in {config["data"]["name"] for _, _, config in runs}:
    prints = [_fingerprint(r) for _, r, c in runs
              if c["data"]["name"] == dataset and _fingerprint(r)]
    if prints:
      usual[dataset] = max(sorted(set(prints)), key=prints.count)
  rows = []
  for name, results, config in runs:
    folder = os.path.join(results_dir, name)
    key = row_key(config)
    data = data_label(results)
    if _fingerprint(results) and _fingerprint(results) != usual.get(key[0]):
      data += " (differs)"
    info = {"run": name, "epochs": results.get("epochs"),
            "stopped_by": results.get("stopped_by"), "data": data,
            "command": _text(folder, "command.txt"), "hardware": _text(folder, "hardware.txt")}
    rows += [{**info, **metric} for metric in _metric_rows(key, results)]
  return rows + _seed_means(rows)


def _metric_rows(key, results) -> list[dict]:
  paper = PAPER.get(key, {})
  metrics = dict(paper) or {"accuracy": None}
  if key[0] in ("weizmann_horse", "oxford_flowers17_seg"):
    metrics.setdefault("mean_iou", None)
    metrics["class_iou.foreground"] = None
  if key[0] == "moving_digits_seg":  # no thesis row; memory shows on occluded pixels
    metrics.update(mean_iou=None, occluded_mean_iou=None)
  out = []
  for prefix, at in (("test_", "training size"), ("test_original_size_", "original size")):
    for metric, thesis in metrics.items():
      ours = _get(results, prefix + metric)
      if ours is None and metric == "error":
        accuracy = _get(results, prefix + "accuracy")
        ours = None if accuracy is None else 1 - accuracy
      if ours is None:
        continue
      ours *= 100
      out.append({"metric": NAMES.get(metric, metric.replace("class_iou.", "IoU ")),
                  "at": at, "thesis": thesis, "ours": ours,
                  "difference": None if thesis is None else ours - thesis})
  return out


def _seed_means(rows: list[dict]) -> list[dict]:
  """Per group of seed runs `<group>/seed<k>` and metric: the mean (with "spread", the
  range over the seeds)."""
  groups = {}
  for r in rows:
    group, _, leaf = r["run"].rpartition("/")
    if group and leaf.startswith("seed"):
      groups.setdefault((group, r["metric"], r["at"]), []).append(r)
  out = []
  for (group, metric, at), members in groups.items():
    if len(members) < 2:
      continue
    values = [m["ours"] for m in members]
    mean = sum(values) / len(values)
    thesis = members[0]["thesis"]
    epochs = [m["epochs"] for m in members if m["epochs"] is not None]
    stops = sorted({m["stopped_by"] for m in members})
    datas = sorted({m["data"] for m in members})
    out.append({"run": f"{group} (mean of {len(members)})", "metric": metric, "at": at,
                "thesis": thesis, "ours": mean,
                "difference": None if thesis is None else mean - thesis,
                "spread": max(values) - min(values),
                "epochs": sum(epochs) / len(epochs) if epochs else None,
                "stopped_by": "/".join(stops), "data": "; ".join(datas),
                "command": members[0]["command"], "hardware": members[0]["hardware"]})
  return out


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
  lines = ["| run | metric (test) | at | thesis | ours | ours - thesis | epochs | data |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    diff = "-" if r["difference"] is None else f"{r['difference']:+.2f}"
    ours = f"{r['ours']:.2f}" + (f" (range {r['spread']:.2f})" if "spread" in r else "")
    epochs = "-" if r["epochs"] is None else f"{r['epochs']:.1f} ({r['stopped_by']})"
    lines.append(f"| {r['run']} | {r['metric']} | {r['at']} | {fmt(r['thesis'])} | "
                 f"{ours} | {diff} | {epochs} | {r['data']} |")
  return "\n".join(lines)


BEGIN = "<!-- launch.report --paper --workdir=results: begin -->"
END = "<!-- launch.report --paper --workdir=results: end -->"


def generated_block(text: str) -> str:
  """The part of a Markdown file between BEGIN and END; ConfigError if there is none."""
  if BEGIN not in text or END not in text:
    raise ConfigError(f"no generated table in the file: it needs the lines {BEGIN!r} and "
                      f"{END!r} around the table")
  return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n")


def update_file(path: str, table: str):
  """Rewrites the generated block of the Markdown file `path` with `table`."""
  with open(path) as f:
    text = f.read()
  old = generated_block(text)
  files.write_atomic(path, lambda tmp: open(tmp, "w").write(
      text.replace(BEGIN + "\n" + old, BEGIN + "\n" + table, 1)))
