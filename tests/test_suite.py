"""The suite itself: markers are strict, `slow` is registered, and the fast subset
(python -m pytest -m "not slow") still reaches every package."""

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PARTS = ["tests/models/", "tests/training/", "tests/charlm/", "tests/tasks/", "tests/sweeps/",
         "tests/test_cli.py", "tests/test_configs.py", "tests/test_architecture.py"]


def _pytest(*args, cwd=REPO):
  return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                        cwd=cwd, capture_output=True, text=True, timeout=600)


def test_slow_is_registered_and_markers_are_strict(pytestconfig):
  assert any(line.startswith("slow:") for line in pytestconfig.getini("markers"))
  assert "--strict-markers" in pytestconfig.getini("addopts")


def test_a_misspelt_marker_fails_the_run(tmp_path):
  (tmp_path / "test_typo.py").write_text(
      "import pytest\n\n\n@pytest.mark.slwo\ndef test_x():\n  pass\n")
  proc = _pytest("-q", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
                 str(tmp_path / "test_typo.py"), cwd=tmp_path)
  assert proc.returncode != 0 and "'slwo' not found in `markers`" in proc.stdout, proc.stdout


@pytest.mark.slow
def test_the_fast_subset_reaches_every_package():
  proc = _pytest("--collect-only", "-q", "-m", "not slow")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  ids = [line for line in proc.stdout.splitlines() if "::" in line]
  assert [part for part in PARTS if not any(i.startswith(part) for i in ids)] == []
