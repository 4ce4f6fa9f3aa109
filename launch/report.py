r"""Collects a sweep's results into a table and plots.

  python -m launch.report --workdir=runs/sweep_digits [--metric=test_accuracy --goal=max]
  python -m launch.report --paper --workdir=results   # the thesis's numbers beside ours
  python -m launch.report --paper --workdir=results --update=RESULTS.md  # and its table

Writes DIR/report.csv and DIR/report.md (finished runs best first by the sweep's metric,
then the unfinished ones with their logs) and DIR/report-<axis>.png (the metric against
each swept hyperparameter).
"""

import csv
import json
import math
import os

from absl import flags

from launch import paper
from launch import runs as runs_lib
from renet_jax import cli
from renet_jax.errors import ConfigError

_WORKDIR = flags.DEFINE_string("workdir", None, "A launch.sweep directory.")
_METRIC = flags.DEFINE_string("metric", "", "results.json key to rank by; default: the "
                              "sweep's metric, else the runs' selection_metric.")
_GOAL = flags.DEFINE_enum("goal", None, ["max", "min"], "Whether higher is better; "
                          "default: the sweep's goal, else the runs' selection_goal.")
_PAPER = flags.DEFINE_bool("paper", False, "--workdir holds committed run folders "
                           "(results/): print the thesis's numbers, ours and the "
                           "difference (launch/paper.py) instead of a sweep report.")
_UPDATE = flags.DEFINE_string("update", "", "With --paper: also rewrite this Markdown "
                              "file's generated table (RESULTS.md) with the one printed.")
flags.mark_flag_as_required("workdir")


def collect(workdir: str, metric: str = "", goal: str | None = None) -> dict:
  """{"metric", "goal", "axes", "log_axes", "rows"}: one row per run, best first."""
  manifest_path = os.path.join(workdir, "sweep.json")
  if not os.path.exists(manifest_path):
    raise ConfigError(f"No sweep.json in {workdir}: is it a launch.sweep --workdir?")
  with open(manifest_path) as f:
    manifest = json.load(f)
  rows = []
  for entry in manifest["runs"]:
    directory = os.path.join(workdir, entry["name"])
    results = {}
    if os.path.exists(os.path.join(directory, "results.json")):
      with open(os.path.join(directory, "results.json")) as f:
        results = json.load(f)
    rows.append({"run": entry["name"], "status": runs_lib.status(directory),
                 "swept": entry["swept"], "results": results,
                 "log": runs_lib.log_path(directory)})
  finished = [r["results"] for r in rows if r["results"]]
  metric = metric or manifest["sweep"]["metric"] or next(
      (r["selection_metric"] for r in finished), "")
  goal = goal or manifest["sweep"]["goal"] or next(
      (r["selection_goal"] for r in finished if "selection_goal" in r), "max")
  if finished and not any(metric in r for r in finished):
    raise ConfigError(f"No finished run reports {metric!r}; choose --metric from "
                     f"{sorted(k for k, v in finished[0].items() if is_number(v))}.")

  def key(row):
    value = row["results"].get(metric)
    if not is_number(value):
      return (1, 0.0)
    return (0, -value if goal == "max" else value)

  rows.sort(key=key)
  return {"metric": metric, "goal": goal, "axes": manifest["axes"],
          "log_axes": manifest["log_axes"], "rows": rows}


def table(report: dict) -> tuple[list[str], list[list]]:
  metric = report["metric"]
  partner = metric.replace("validation_", "test_", 1)  # the same metric on test
  extra = [partner] if partner != metric else []
  header = (["rank", "run", "status"] + report["axes"] + [metric] + extra
            + ["best_step", "wall_time_s", "log"])
  body = []
  for rank, row in enumerate(report["rows"], 1):
    res = row["results"]
    body.append([rank if res else "", row["run"], row["status"]]
                + [cell_value(row["swept"].get(a)) for a in report["axes"]]
                + [res.get(k, "") for k in [metric] + extra]
                + [res.get("best_step", ""), round(res["wall_time_s"], 1)
                   if "wall_time_s" in res else "", "" if res else row["log"]])
  return header, body


def write_csv(path: str, header, body):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(body)


def markdown(report: dict, header, body) -> str:
  def cell(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "\\|")
  better = "higher" if report["goal"] == "max" else "lower"
  lines = [f"Ranked by {report['metric']} ({better} is better).", "", "| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]
  return "\n".join(lines) + "\n"


def plot(report: dict, axis: str, path: str):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  metric = report["metric"]
  points = [(row["swept"].get(axis), row["results"][metric]) for row in report["rows"]
            if is_number(row["results"].get(metric))]
  fig, ax = plt.subplots(figsize=(5, 3.5))
  numeric = all(is_number(x) and not isinstance(x, bool) for x, _ in points)
  if numeric:
    xs = [x for x, _ in points]
    if axis in report["log_axes"]:
      ax.set_xscale("log")
  else:  # categorical: tuples, strings, booleans, dicts
    labels = list(dict.fromkeys(show(x) for x, _ in points))
    xs = [labels.index(show(x)) for x, _ in points]
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
  ax.scatter(xs, [y for _, y in points])
  if points:  # rows are best first
    ax.scatter(xs[:1], [points[0][1]], marker="*", s=200, color="tab:red", label="best")
    ax.legend()
  ax.set_xlabel(axis)
  ax.set_ylabel(metric)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write(workdir: str, metric: str = "", goal: str | None = None) -> dict:
  """Writes report.csv, report.md and one PNG per swept axis; returns `collect`'s dict
  with the paths under "files"."""
  report = collect(workdir, metric, goal)
  header, body = table(report)
  files = [os.path.join(workdir, "report.csv"), os.path.join(workdir, "report.md")]
  write_csv(files[0], header, body)
  with open(files[1], "w") as f:
    f.write(markdown(report, header, body))
  for axis in report["axes"]:
    files.append(os.path.join(workdir, f"report-{axis}.png"))
    plot(report, axis, files[-1])
  report["files"] = files
  report["markdown"] = markdown(report, header, body)
  return report


def cell_value(value):
  return value if isinstance(value, (int, float)) else show(value)


def show(value) -> str:
  if isinstance(value, list):
    return str(tuple(tuple(v) if isinstance(v, list) else v for v in value))
  if isinstance(value, dict):
    return json.dumps(value, separators=(",", ":"))
  return str(value)


def is_number(value) -> bool:
  return isinstance(value, (int, float)) and not (isinstance(value, float)
                                                  and math.isnan(value))


def main(argv):
  del argv
  if _PAPER.value:
    rows = paper.paper_rows(os.path.abspath(os.path.expanduser(_WORKDIR.value)))
    print(paper.markdown(rows))
    if _UPDATE.value:
      paper.update_file(_UPDATE.value, paper.markdown(rows))
    for run in dict.fromkeys(r["run"] for r in rows):
      first = next(r for r in rows if r["run"] == run)
      print(f"\n{run}: {first['hardware'] or 'hardware not recorded'}\n  {first['command']}")
    return
  report = write(os.path.abspath(os.path.expanduser(_WORKDIR.value)), _METRIC.value,
                 _GOAL.value)
  print(report["markdown"])
  print("wrote " + ", ".join(report["files"]))


if __name__ == "__main__":
  cli.run(main)
