"""RESULTS.md's thesis table is what `launch.report --paper --workdir=results` prints from
the committed run folders, and no committed command names one machine's paths."""

import os
import re

import pytest

from launch import paper
from renet_jax.errors import ConfigError

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_results_md_table_is_generated_from_the_run_folders():
  with open(os.path.join(ROOT, "RESULTS.md")) as f:
    block = paper.generated_block(f.read())
  assert block == paper.markdown(paper.paper_rows(os.path.join(ROOT, "results")))


def test_update_rewrites_only_the_generated_block(tmp_path):
  path = tmp_path / "R.md"
  path.write_text(f"# R\n\ntext\n{paper.BEGIN}\nold\ntable\n{paper.END}\nafter\n")
  paper.update_file(str(path), "| new |")
  assert path.read_text() == f"# R\n\ntext\n{paper.BEGIN}\n| new |\n{paper.END}\nafter\n"
  path.write_text("no markers")
  with pytest.raises(ConfigError, match="no generated table"):
    paper.update_file(str(path), "| new |")


def test_no_machine_paths_in_results():
  machine = re.compile(r"(/work/|/root/|/home/|~/)")
  texts = {"RESULTS.md": open(os.path.join(ROOT, "RESULTS.md")).read()}
  for folder, _, names in os.walk(os.path.join(ROOT, "results")):
    if "command.txt" in names:
      path = os.path.join(folder, "command.txt")
      texts[os.path.relpath(path, ROOT)] = open(path).read()
  found = {name: machine.findall(text) for name, text in texts.items()
           if machine.search(text)}
  assert not found, found
