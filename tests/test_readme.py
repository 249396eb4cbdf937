"""The README's set-up commands are the ones CI runs."""

import pathlib

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
