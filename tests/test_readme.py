"""The README's set-up commands are the ones CI runs; every command the README and docs/
show is one the programs accept."""

import importlib
import importlib.util
import pathlib
import re
import shlex

REPO = pathlib.Path(__file__).resolve().parents[1]


def _commands(marker):
  lines = (REPO / "README.md").read_text().splitlines()
  return [l.strip() for l in lines if l.strip().startswith("python3 -m venv") and marker in l]


def test_ci_runs_the_readme_test_command_verbatim():
  (test_command,) = _commands("pytest")
  assert test_command in (REPO / ".ci" / "run").read_text().splitlines()


def test_readme_main_command_runs_alice():
  (main_command,) = _commands("experiments/alice.py")
  assert "pip install" in main_command


def _documented_commands():
  """(script, argv, where) of every `python experiments/X.py ...` in the README and docs/,
  continuation lines joined; commands with placeholders (N, S, ..., $VAR) are left out."""
  out = []
  for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for m in re.finditer(r"python experiments/(\w+)\.py([^`|\n#]*)", text):
      argv = shlex.split(m.group(2))
      if any(a in ("N", "S", "...", "--help") or "..." in a or "$" in a for a in argv):
        continue
      out.append((m.group(1), argv, f"{path.name}: {m.group(0).strip()}"))
  return out


def _example(name: str):
  spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                REPO / "experiments" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_documented_command_parses_and_checks():
  """Each command of the README and docs/ is accepted by its program's parser and its
  settings pass the checks a run makes before it loads JAX."""
  from dncjax import cli  # pylint: disable=import-outside-toplevel
  from dncjax.charlm import config as charlm_config  # pylint: disable=import-outside-toplevel
  from dncjax.commands import alice, sweep  # pylint: disable=import-outside-toplevel
  from dncjax.tasks import config as tasks_config  # pylint: disable=import-outside-toplevel
  commands = _documented_commands()
  assert len(commands) > 20 and {c[0] for c in commands} >= {"alice", "tasks", "sweep"}
  for script, argv, where in commands:
    if not (REPO / "src" / "dncjax" / "commands" / f"{script}.py").exists():
      module = _example(script)  # an example script with a parser() of its own
      try:
        module.parser().parse_args(argv)
      except SystemExit as e:
        raise AssertionError(f"{where}: {e!r}") from None
      continue
    module = importlib.import_module(f"dncjax.commands.{script}")
    try:
      if script == "alice":
        parser, args, preset = alice.parse(argv)
      else:
        parser = module.parser()
        args = parser.parse_args(argv)
      if script == "alice" and not args.resume:
        cli.given(args, parser).apply(preset.config, charlm_config.MODEL_DEFAULTS)
      elif script == "tasks" and not args.resume:
        given = tasks_config.as_run_settings(cli.given(args, parser))
        given.apply(tasks_config.defaults_for(given), tasks_config.MODEL_DEFAULTS)
      elif script == "sweep" and not args.report:
        sweep.make_sweep(args)
    except (SystemExit, ValueError) as e:
      raise AssertionError(f"{where}: {e!r}") from None
