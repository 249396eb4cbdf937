"""experiments/flax_recall.py: --help answers before JAX loads; a few steps write orbax
checkpoints, and --resume restores the latest and goes on from it."""

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "flax_recall.py"
TINY = ["--bits", "3", "--max-length", "3", "--batch-size", "2", "--hidden", "4",
        "--memory-size", "4", "--word-size", "3", "--report-every", "1", "--checkpoint-every", "2"]


def _run(*argv):
  proc = subprocess.run([sys.executable, str(SCRIPT), *argv], cwd=REPO, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout


def test_help_answers():
  assert "--workdir" in _run("--help")


@pytest.mark.slow
def test_a_short_run_checkpoints_and_resumes(tmp_path):
  out = _run("--steps", "3", "--workdir", str(tmp_path), *TINY)
  assert "step 3: loss" in out and "final bit errors per sequence" in out
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "3"]
  out = _run("--steps", "4", "--workdir", str(tmp_path), "--resume", *TINY)
  assert "resumed from step 3" in out and "step 3: loss" not in out and "step 4: loss" in out
  assert "4" in {p.name for p in (tmp_path / "checkpoints").iterdir()}
