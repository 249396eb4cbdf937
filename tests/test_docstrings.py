"""Every public module-level function and class of src/dncjax, and every public method of
a public class, has a docstring (but those still PENDING in files others were editing)."""

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "dncjax"


def _each(path: str, *names: str) -> set[tuple[str, str]]:
  return {(path, name) for name in names}


# (path under src/dncjax, name) still without a docstring: they sit in files others were
# editing when this test was written (training/loop.py, run.py, records.py, sweeps/report.py,
# members.py, models/core.py, the jobs, cli/__init__.py, commands/*). Document them and
# take them off this list; nothing may be added to it.
PENDING = {
    *_each("charlm/job.py", "CharLM.agreement", "CharLM.on_resume", "CharLM.build", "CharLM.fresh",
           "CharLM.restored", "CharLM.begin", "CharLM.meta", "CharLM.next_batch",
           "CharLM.evaluate", "CharLM.sample_text", "CharLM.summarise", "CharLM.finish",
           "CharLM.close", "error_types"),
    *_each("models/core.py", "Model"),
    *_each("sweeps/members.py", "stack_batches", "PopulationSession.alive",
           "PopulationSession.train", "PopulationSession.stopped", "PopulationSession.save",
           "PopulationSession.finish"),
    *_each("tasks/job.py", "TaskJob.build", "TaskJob.fresh", "TaskJob.begin", "TaskJob.next_batch",
           "TaskJob.evaluate", "TaskJob.summarise", "TaskJob.finish", "error_types"),
    *_each("training/loop.py", "Session.train", "Session.report", "Session.evaluate",
           "Session.save", "Session.stopped", "Session.finish", "LoopResult", "Trainer.train",
           "Trainer.report", "Trainer.evaluate", "Trainer.save", "Trainer.stopped"),
    *_each("training/records.py", "MetricsLog.write", "MetricsLog.read", "NullLog.write",
           "NullLog.read"),
    *_each("training/run.py", "describe_kind", "Job.what", "Job.is_ours", "Job.build", "Job.fresh",
           "Job.restored", "Job.begin", "Job.meta", "Job.next_batch", "Job.evaluate",
           "Job.summarise", "Job.finish", "Job.close"),
}


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
  missing = [f"{path}:{line} {name}" for path, name, line in undocumented()
             if (path, name) not in PENDING]
  assert not missing, "no docstring:\n  " + "\n  ".join(missing)


def test_the_check_finds_a_missing_docstring(tmp_path):
  (tmp_path / "m.py").write_text(
      'def f():\n  """Doc."""\n\n\ndef g():\n  pass\n\n\nclass C:\n  """Doc."""\n\n'
      '  def m(self):\n    pass\n\n  def _private(self):\n    pass\n\n\ndef _h():\n  pass\n')
  assert [(name, line) for _, name, line in undocumented(tmp_path)] == [("g", 5), ("C.m", 12)]
