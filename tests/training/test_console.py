"""dncjax.training.console and the run skeleton's log.txt: what a run prints is also
appended to <workdir>/log.txt (from the moment the run writes its folder), a resumed run
appends after a new header, a failing run's one-line error ends it, a refused run leaves
the folder as it was, and a job whose lines go elsewhere (a sweep trial) gets no copy."""

import re
import signal
import sys

import pytest

from dncjax.charlm import job as charlm
from dncjax.charlm.config import DataConfig, Options, RunConfig
from dncjax.models.lstm import LSTMConfig
from dncjax.training import checkpoint, console, loop, optim, run, signals

QUIET = Options(sample_length=0, dynamic_eval=False)
HEADER = re.compile(r"^== \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* .+ ==$")


def config(text_file, lr=None) -> RunConfig:
  optimizer = optim.OptimizerConfig() if lr is None else optim.OptimizerConfig(learning_rate=lr)
  return RunConfig(model=LSTMConfig(hidden=8), optim=optimizer,
                   data=DataConfig(path=str(text_file), batch_size=2, seq_length=8))


def train(text_file, workdir, steps, resume=False, lr=None, out=print):
  return charlm.train_and_evaluate(config(text_file, lr), QUIET, run.RunOptions(
      str(workdir), resume=resume, progress_bar=False,
      schedule=loop.Schedule(steps=steps, report_interval=1, eval_every=2)), out=out)


def test_the_copy_keeps_lines_after_commit_and_the_error(tmp_path, capsys):
  path = tmp_path / "log.txt"
  with pytest.raises(ValueError):
    with console.kept(path, command=["alice.py", "--steps", "2"]):
      print("before commit")
      sys.stderr.write("\r 10%|#  \r 20%|## ")  # a progress bar, redrawn...
      sys.stderr.write("\r" + " " * 9 + "\r")     # ...and erased
      console.commit()
      print()
      print("after", end="")
      print(" commit")
      sys.stderr.write("partial")
      raise ValueError("bad value\nsecond line")
  lines = path.read_text().splitlines()
  assert HEADER.match(lines[0]) and lines[0].endswith(" alice.py --steps 2 ==")
  assert lines[1:] == ["before commit", "", "after commit", "partial",
                       "error: bad value"]
  assert capsys.readouterr().out == "before commit\n\nafter commit\n"  # the console as before
  assert not isinstance(sys.stdout, console._Copy)  # pylint: disable=protected-access


def test_nothing_is_written_without_commit(tmp_path):
  with pytest.raises(KeyboardInterrupt):
    with console.kept(tmp_path / "log.txt"):
      print("refused")
      raise KeyboardInterrupt
  with console.kept(tmp_path / "off.txt", enabled=False):
    console.commit()
    print("not kept")
  assert not list(tmp_path.iterdir())
  assert console.ending(signals.Interrupted(signal.SIGTERM)) == "terminated"
  assert console.ending(KeyboardInterrupt()) == "interrupted"


@pytest.mark.slow
def test_a_run_keeps_its_console_and_a_resume_appends(text_file, tmp_path, capsys):
  train(text_file, tmp_path, 2)
  first = (tmp_path / "log.txt").read_text().splitlines()
  printed = capsys.readouterr().out.splitlines()
  assert HEADER.match(first[0]) and first[1:] == printed
  assert any(re.match(r"^ ?\d+: [\d.]+ s, iter 2, [\d.]+ BPC", l) for l in first)
  assert any(l.startswith("  eval at iter 2: dev_bpc") for l in first)
  train(text_file, tmp_path, 4, resume=True)
  lines = (tmp_path / "log.txt").read_text().splitlines()
  assert lines[:len(first)] == first
  resumed = lines[len(first):]
  assert HEADER.match(resumed[0]) and resumed[1].startswith(f"resumed {tmp_path} at iter 2")
  assert any(", iter 4, " in l for l in resumed) and not any(", iter 2, " in l for l in resumed)


@pytest.mark.slow
def test_a_failing_run_ends_its_log_with_the_one_line_error(text_file, tmp_path):
  with pytest.raises(loop.TrainingError) as info:
    train(text_file, tmp_path, 6, lr=3e38)
  lines = (tmp_path / "log.txt").read_text().splitlines()
  assert "NaN" in lines[-1] and lines[-1] == f"error: {console.one_line(info.value)}"
  assert any(", iter 1, " in l for l in lines)


def test_a_refused_run_leaves_the_log_alone(text_file, tmp_path, folder_digest):
  train(text_file, tmp_path, 2)
  before = folder_digest(tmp_path)
  with pytest.raises(checkpoint.CheckpointError):
    train(text_file, tmp_path, 2)  # a fresh run where checkpoints are: refused
  assert folder_digest(tmp_path) == before


def test_a_job_writing_its_own_log_gets_no_second_copy(text_file, tmp_path):
  lines = []

  def to_log(line):  # as a sweep trial keeps its log.txt
    lines.append(line)
    with open(tmp_path / "log.txt", "a") as f:
      f.write(line + "\n")
  train(text_file, tmp_path, 2, out=to_log)
  assert any(", iter 2, " in l for l in lines)
  assert (tmp_path / "log.txt").read_text().splitlines() == lines  # once each, no header
