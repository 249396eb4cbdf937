"""dncjax.training.run, the run skeleton of both jobs: a checkpoint of another format
(format 1: before the one optimiser chain) is refused on --resume with one line that names
its format and the one expected, and the run's folder is left as it was."""

import json
import pathlib
import re
import shutil
import subprocess
import sys

import jax.numpy as jnp
import pytest

from dncjax import configs
from dncjax.charlm import job as charlm
from dncjax.charlm.config import DataConfig, Options, RunConfig
from dncjax.models.lstm import LSTMConfig
from dncjax.tasks import config as tasks_config, job as tasks
from dncjax.training import checkpoint, loop, run

REPO = pathlib.Path(__file__).resolve().parents[2]
QUIET = Options(sample_length=0, dynamic_eval=False)


def charlm_config(text_file) -> RunConfig:
  return RunConfig(model=LSTMConfig(hidden=8),
                   data=DataConfig(path=str(text_file), batch_size=2, seq_length=8))


@pytest.fixture(scope="module")
def finished(text_file, tmp_path_factory):
  """A finished two-step char-LM run: its checkpoints (checkpoints/ and best/) of format 2."""
  workdir = tmp_path_factory.mktemp("finished")
  charlm.train_and_evaluate(charlm_config(text_file), QUIET, run.RunOptions(
      str(workdir), schedule=loop.Schedule(steps=2, report_interval=1), progress_bar=False),
                            out=lambda line: None)
  return workdir


def as_format_1(workdir: pathlib.Path) -> None:
  """The run's checkpoints as format 1 wrote their metas: format 1, no kind."""
  metas = sorted(workdir.glob("*/*/meta/metadata"))
  assert {p.parts[-4] for p in metas} == {"checkpoints", "best"}
  for path in metas:
    meta = json.loads(path.read_text())
    assert (meta["format"], meta["kind"]) == (run.FORMAT, charlm.KIND) == (2, "char-LM")
    meta["format"] = 1
    del meta["kind"]
    path.write_text(json.dumps(meta))


@pytest.fixture
def old_run(finished, tmp_path):
  workdir = tmp_path / "old"
  shutil.copytree(finished, workdir)
  as_format_1(workdir)
  return workdir


REFUSED = (r"^checkpoint 2 in {folder} is not a dncjax {kind} checkpoint of format 2 "
           r"\(its format is 1\)$")


@pytest.mark.slow
def test_a_format_1_checkpoint_is_refused_on_resume(text_file, old_run, folder_digest):
  before = folder_digest(old_run)
  resume = run.RunOptions(str(old_run), resume=True, schedule=loop.Schedule(steps=4),
                          progress_bar=False)
  with pytest.raises(checkpoint.CheckpointError) as info:
    charlm.train_and_evaluate(charlm_config(text_file), QUIET, resume, out=lambda line: None)
  message = str(info.value)
  assert "\n" not in message and "its format is 1" in message and "format 2" in message
  assert info.match(REFUSED.format(folder=re.escape(str(old_run / "checkpoints")),
                                    kind="char-LM"))
  assert folder_digest(old_run) == before


@pytest.mark.slow
def test_alice_refuses_a_format_1_checkpoint_in_one_line(text_file, old_run, folder_digest):
  before = folder_digest(old_run)
  proc = subprocess.run([sys.executable, "experiments/alice.py", "--data", str(text_file),
                         "--workdir", str(old_run), "--resume", "--steps", "4"], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
  assert proc.stderr.startswith(f"error: checkpoint 2 in {old_run / 'checkpoints'} is not a "
                                f"dncjax char-LM checkpoint of format 2 (its format is 1)")
  assert folder_digest(old_run) == before


def test_the_tasks_job_refuses_a_format_1_checkpoint(tmp_path, folder_digest):
  ckpts = checkpoint.Checkpoints(tmp_path / "checkpoints")
  ckpts.save(2, {"train": {"w": jnp.ones(3)}},
             {"format": 1, "step": 2, "config": tasks_config.RunConfig().to_json()})
  ckpts.close()
  before = folder_digest(tmp_path)
  resume = run.RunOptions(str(tmp_path), resume=True, schedule=loop.Schedule(steps=4),
                          progress_bar=False)
  with pytest.raises(checkpoint.CheckpointError) as info:
    tasks.train_and_evaluate(tasks_config.Options(), resume, configs.Given(),
                             out=lambda line: None)
  assert "\n" not in str(info.value)
  assert info.match(REFUSED.format(folder=re.escape(str(tmp_path / "checkpoints")),
                                    kind="task"))
  assert folder_digest(tmp_path) == before
