"""The layers of ARCHITECTURE.md hold: no module imports a layer above its own, and
the jobs do not import each other (but sweeps, which runs the char-LM job)."""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
SRC = REPO / "src"
LAYERS = [  # lowest first; a module may import its own layer and those below
    {"dncjax.checks", "dncjax.pytrees", "dncjax.fields", "dncjax.folders"},
    {"dncjax.models"},
    {"dncjax.flax"},
    {"dncjax.configs"},
    {"dncjax.training"},
    {"dncjax.cli"},
    {"dncjax.charlm", "dncjax.tasks", "dncjax.sweeps"},
    {"dncjax.commands"},
]
JOBS_MAY_IMPORT = {"dncjax.sweeps": {"dncjax.charlm"}}


def _unit(name: str) -> str:
  """The package or shared module a dotted module name belongs to ('dncjax.training')."""
  parts = name.split(".")
  return ".".join(parts[:2])


def _layer(unit: str) -> int:
  return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _imports(path: pathlib.Path) -> set[str]:
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dncjax"):
      if node.module == "dncjax":  # from dncjax import x: the units x
        out |= {f"dncjax.{a.name}" for a in node.names}
      else:
        out.add(_unit(node.module))
    elif isinstance(node, ast.Import):
      out |= {_unit(a.name) for a in node.names if a.name.startswith("dncjax.")}
  return out


def test_no_module_imports_a_layer_above_its_own():
  bad = []
  for path in sorted((SRC / "dncjax").rglob("*.py")):
    if path == SRC / "dncjax" / "__init__.py":
      continue  # the package's own re-exports of the model API
    name = ".".join(path.relative_to(SRC).with_suffix("").parts)
    unit = _unit(name)
    for other in _imports(path) - {unit}:
      above = _layer(other) > _layer(unit)
      sideways = (_layer(other) == _layer(unit) and other != unit
                  and other not in JOBS_MAY_IMPORT.get(unit, set()))
      if above or sideways:
        bad.append(f"{path.relative_to(REPO)} imports {other}")
  assert not bad, bad


def test_every_package_has_a_layer():
  units = {_unit(".".join(p.relative_to(SRC).with_suffix("").parts))
           for p in (SRC / "dncjax").rglob("*.py")} - {"dncjax.__init__"}
  assert units == set().union(*LAYERS)
