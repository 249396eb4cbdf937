"""Every public module-level function and class of src/dncjax, and every public method of
a public class, has a docstring."""

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "dncjax"


def _public(nodes):
  return [n for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
          and not n.name.startswith("_")]


def undocumented(root: pathlib.Path = SRC) -> list[tuple[str, str, int]]:
  """(path under `root`, name, line) of each public module-level function or class, and each
  public method of a public class, that has no docstring."""
  out = []
  for path in sorted(root.rglob("*.py")):
    rel = path.relative_to(root).as_posix()
    for node in _public(ast.parse(path.read_text()).body):
      if ast.get_docstring(node) is None:
        out.append((rel, node.name, node.lineno))
      if isinstance(node, ast.ClassDef):
        out += [(rel, f"{node.name}.{sub.name}", sub.lineno) for sub in _public(node.body)
                if not isinstance(sub, ast.ClassDef) and ast.get_docstring(sub) is None]
  return out


def test_every_public_function_class_and_method_has_a_docstring():
  missing = [f"{path}:{line} {name}" for path, name, line in undocumented()]
  assert not missing, "no docstring:\n  " + "\n  ".join(missing)


def test_the_check_finds_a_missing_docstring(tmp_path):
  (tmp_path / "m.py").write_text(
      'def f():\n  """Doc."""\n\n\ndef g():\n  pass\n\n\nclass C:\n  """Doc."""\n\n'
      '  def m(self):\n    pass\n\n  def _private(self):\n    pass\n\n\ndef _h():\n  pass\n')
  assert [(name, line) for _, name, line in undocumented(tmp_path)] == [("g", 5), ("C.m", 12)]
