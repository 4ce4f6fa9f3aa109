"""The library's import structure: nothing in renet_jax imports the entry points
(experiments, launch), and no two of its modules import each other, even through
others or inside a function (read from the source, not by importing it)."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_graph() -> dict[str, set[str]]:
  """{module: the renet_jax modules and entry-point packages it imports}."""
  modules = {}
  for folder, _, names in os.walk(os.path.join(ROOT, "renet_jax")):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        modules[module.removesuffix(".__init__")] = path
  graph = {}
  for module, path in modules.items():
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
      else:
        continue
      found |= {n for n in names if n in modules and n != module}
      found |= {n.split(".")[0] for n in names if n.split(".")[0] in ("experiments", "launch")}
    graph[module] = found
  return graph


def test_the_library_imports_no_entry_point():
  upward = {m: sorted(i & {"experiments", "launch"}) for m, i in _import_graph().items()}
  assert {m: i for m, i in upward.items() if i} == {}


def test_no_import_circle_in_the_library():
  graph = _import_graph()

  def reaches(start, goal):
    seen, stack = set(), [start]
    while stack:
      node = stack.pop()
      if node == goal:
        return True
      if node not in seen:
        seen.add(node)
        stack += graph.get(node, ())
    return False

  circles = sorted((a, b) for a in graph for b in graph[a] if b in graph and reaches(b, a))
  assert circles == []
  # The graph is read: the training loop does import the recurrences and the data.
  assert ({"renet_jax.kernels.recurrence", "renet_jax.data.registry"}
          <= graph["renet_jax.training.train"])


# The package's rooms, in layers: a module imports only modules of its own room or of
# rooms before it (the support modules at the top first, `benchmarks` last).
LAYERS = ("support", "kernels", "nn", "data", "evaluation", "training", "serving",
          "benchmarks")


def _room(module: str) -> str:
  parts = module.split(".")
  if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS):
    return parts[1]
  return "benchmarks" if module == "renet_jax.benchmarks" else "support"


def test_each_room_imports_only_the_rooms_before_it():
  graph = _import_graph()
  rank = {room: k for k, room in enumerate(LAYERS)}
  upward = sorted((m, i) for m, imports in graph.items() for i in imports
                  if i.startswith("renet_jax.") and rank[_room(i)] > rank[_room(m)])
  assert upward == []
  rooms = {_room(m) for m in graph if m != "renet_jax"}
  assert rooms == set(LAYERS)  # every room is there, and nothing outside them
