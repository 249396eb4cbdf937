"""experiments/tasks.py end to end on tiny settings (exact resume, one-line errors), the
restore of a task run (dncjax.tasks.job), and reading runs back (dncjax.tasks.report,
experiments/tasks_report.py)."""

import dataclasses
import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dncjax.tasks import config as tasks_config, generators, job as tasks, report
from dncjax.training import checkpoint

REPO = pathlib.Path(__file__).resolve().parents[2]

spec = importlib.util.spec_from_file_location("tasks_script", REPO / "experiments" / "tasks.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)


TINY = ["--hidden", "8", "--memory_size", "6", "--word_size", "4", "--read_heads", "1",
        "--bits", "3", "--max_length", "3", "--batchsize", "2", "--eval_sequences", "4",
        "--eval_length", "4", "--report_interval", "1", "--eval_every", "3", "--optimizer",
        "adam", "--lr", "0.01", "--fp64"]


def run(workdir, *extra):
  return script.main(["--workdir", str(workdir), *TINY, *extra])


def records(workdir, key):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [(r["step"], r[key]) for r in map(json.loads, lines) if key in r]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("straight")
  run(workdir, "--steps", "6")
  return workdir


@pytest.mark.slow
def test_straight_run_outputs(straight):
  assert [s for s, _ in records(straight, "train_loss")] == list(range(1, 7))
  assert [s for s, _ in records(straight, "eval_len4_bit_errors")] == [3, 6]
  results = json.loads((straight / "results.json").read_text())
  assert results["step"] == 6 and results["stopped_by"] == "steps"
  assert {"train_bit_errors", "eval_bit_errors", "eval_len4_bit_errors", "eval_perfect",
          "eval_len4_perfect"} <= set(results)
  assert (straight / "loss.png").stat().st_size and (straight / "bit_errors.png").stat().st_size
  model, params, config, step = tasks.restore(straight)
  assert step == 6 and config.task.max_length == 3 and model.config.memory_size == 6


@pytest.mark.slow
def test_resume_continues_exactly(straight, tmp_path):
  run(tmp_path, "--steps", "3")
  run(tmp_path, "--steps", "6", "--resume")
  for key in ("train_loss", "train_bit_errors", "eval_loss", "eval_len4_loss"):
    assert records(tmp_path, key) == records(straight, key)  # float64: identical
  a, b = tasks.restore(straight)[1], tasks.restore(tmp_path)[1]
  assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_errors(straight, tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="already holds checkpoints"):
    run(straight, "--steps", "7")
  with pytest.raises(checkpoint.CheckpointError, match="another config.*hidden=9"):
    run(straight, "--steps", "7", "--resume", "--hidden", "9")
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint folder"):
    run(tmp_path / "none", "--steps", "1", "--resume")
  with pytest.raises(ValueError, match="min_length 5 > max_length 3"):
    run(tmp_path, "--min_length", "5")
  with pytest.raises(ValueError, match="does not apply to model 'lstm'"):
    script.main(["--model", "lstm", "--memory_size", "4", "--workdir", str(tmp_path)])
  with pytest.raises(ValueError, match="--eval_length must be positive"):
    run(tmp_path, "--eval_length", "4", "0")
  with pytest.raises(SystemExit):
    script.main(["--task", "sort"])


def test_one_line_error_and_exit_status(tmp_path):
  done = subprocess.run([sys.executable, str(REPO / "experiments" / "tasks.py"), "--workdir",
                         str(tmp_path), "--batchsize", "0"], capture_output=True, text=True)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == ["error: --batchsize must be a positive integer, "
                                              "got 0"]


# ----- experiments/tasks_report.py ---------------------------------------------------------

spec = importlib.util.spec_from_file_location("tasks_report",
                                              REPO / "experiments" / "tasks_report.py")
report_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report_script)


@pytest.mark.slow
def test_run_report_summarises_the_metrics_and_only_reads(straight):
  log = (straight / "metrics.jsonl").read_bytes()
  errors = records(straight, "eval_len4_bit_errors")  # at iterations 3 and 6
  whole = report.run_report(straight)  # length: the run's longest evaluation length, 4
  assert (whole["length"], whole["iters"], whole["evaluations"]) == (4, 6, 2)
  values = [v for _, v in errors]
  assert whole["end"] == values[-1] and whole["mean"] == pytest.approx(np.mean(values))
  assert whole["median"] == pytest.approx(np.median(values))
  assert whole["below"] == sum(v < 0.05 for v in values)
  late = report.run_report(straight, length=4, since=4, target=1e9)
  assert late["evaluations"] == 1 and late["mean"] == values[-1] and late["below"] == 1
  perfect = records(straight, "eval_len4_perfect")[-1][1]
  assert late["perfect"] == perfect
  assert (straight / "metrics.jsonl").read_bytes() == log  # reading left the log alone
  with pytest.raises(report.ReportError, match="no evaluation at length 9"):
    report.run_report(straight, length=9)
  with pytest.raises(report.ReportError, match="iteration 7 or later"):
    report.run_report(straight, since=7)


def test_options_label_names_what_changed_but_the_seed():
  d = tasks_config.RunConfig()  # experiments/tasks.py's defaults
  assert report.options_label(d, d) == "copy"
  changed = tasks_config.RunConfig(
      task=generators.TaskConfig("copy", max_length=12),
      model=dataclasses.replace(d.model, hidden=128, link_sharpness=True),
      optim=d.optim, seed=4)
  assert report.options_label(changed, d) == "copy max_length=12 hidden=128 link_sharpness"


@pytest.mark.slow
def test_report_cli_groups_runs_and_fails_in_one_line(straight, tmp_path, capsys):
  copy = tmp_path / "seed5"  # the same run under another seed: one group of two
  copy.mkdir()
  config = json.loads((straight / "config.json").read_text())
  (copy / "config.json").write_text(json.dumps({**config, "seed": 5}))
  (copy / "metrics.jsonl").write_bytes((straight / "metrics.jsonl").read_bytes())
  assert report_script.main([str(straight), str(copy), "--markdown"]) == 0
  out = capsys.readouterr().out
  assert out.count("### copy") == 1 and "| seed5 | 5 | 6 |" in out
  assert "2 runs; at the end: mean" in out and "0.05; mean of means" in out
  # A run without --eval_length: its training-length evaluations.
  rows = [{k: v for k, v in json.loads(l).items() if not k.startswith("eval_len")}
          for l in (straight / "metrics.jsonl").read_text().splitlines()]
  (copy / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  plain = report.run_report(copy)
  assert plain["length"] is None and plain["end"] == records(straight, "eval_bit_errors")[-1][1]
  done = subprocess.run([sys.executable, str(REPO / "experiments" / "tasks_report.py"),
                         str(tmp_path / "none")], capture_output=True, text=True)
  assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
  assert "holds no task run's config.json" in done.stderr
