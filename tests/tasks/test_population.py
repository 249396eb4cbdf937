"""experiments/tasks.py --seeds K (dncjax.tasks.population): each member trains as the
single run of its seed, a signal saves every member and --resume goes on exactly, a
diverging member stops alone, and each member's folder reads as a run's."""

import importlib.util
import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from dncjax.tasks import job as tasks, population, report
from dncjax.training import checkpoint, signals

REPO = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("tasks_script", REPO / "experiments" / "tasks.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

TINY = ["--hidden", "8", "--memory_size", "6", "--word_size", "4", "--bits", "3",
        "--max_length", "3", "--batchsize", "2", "--eval_sequences", "4",
        "--report_interval", "1", "--eval_every", "3", "--checkpoint_every", "3",
        "--optimizer", "adam", "--lr", "0.01", "--seed", "3",  # float32
        "--curriculum", "--curriculum_threshold", "100"]  # levels 1, 2, 3 from iters 0, 3, 6
SEEDS, STEPS = [3, 4, 5], 6
UNTIMED = ("time", "seq_per_s")


def run(workdir, *extra):
  return script.main(["--workdir", str(workdir), *TINY, *extra])


def logged(workdir) -> list[dict]:
  """metrics.jsonl without its timings."""
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  return [{k: v for k, v in json.loads(l).items() if k not in UNTIMED} for l in lines]


def results(workdir) -> dict:
  return json.loads((pathlib.Path(workdir) / "results.json").read_text())


def assert_close(a, b, rtol=1e-5):
  assert set(a) == set(b)
  for k in a:
    np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=rtol, atol=1e-6)


@pytest.fixture(scope="module")
def pop(tmp_path_factory):
  """The population of SEEDS, trained for STEPS iterations in one program."""
  workdir = tmp_path_factory.mktemp("pop")
  run(workdir, "--steps", str(STEPS), "--seeds", str(len(SEEDS)))
  return workdir


@pytest.mark.slow
def test_each_member_trains_as_the_single_run_of_its_seed(pop, tmp_path):
  seed = SEEDS[-1]
  run(tmp_path, "--steps", str(STEPS), "--seed", str(seed))
  mine = population.member_folder(pop, seed)
  theirs, ours = logged(tmp_path), logged(mine)
  assert [sorted(r) for r in ours] == [sorted(r) for r in theirs]  # the same records
  for a, b in zip(ours, theirs):
    assert_close(a, b)
  assert [r["curriculum_level"] for r in ours if "curriculum_level" in r] == [1, 2]
  assert results(mine)["curriculum_reached"] == results(tmp_path)["curriculum_reached"]
  _, params, config, step = tasks.restore(mine)
  _, params_alone, _, _ = tasks.restore(tmp_path)
  assert config.seed == seed and step == STEPS
  assert_close(params, params_alone)
  moved = [float(np.abs(np.asarray(params["Why"]) - np.asarray(p["Why"])).max())
           for p in (params_alone, tasks.restore(population.member_folder(pop, SEEDS[0]))[1])]
  assert moved[0] < 1e-5 < moved[1]  # seeds differ: the match is not by chance


@pytest.mark.slow
def test_a_signal_saves_every_member_and_resume_goes_on_exactly(pop, tmp_path, monkeypatch):
  batch_at, sent = tasks.batch_at, []

  def interrupting(config, step, level=None):  # SIGINT while iteration 3's batches are drawn
    if step == 2 and not sent:
      sent.append(os.kill(os.getpid(), signal.SIGINT))
    return batch_at(config, step, level)

  monkeypatch.setattr(tasks, "batch_at", interrupting)
  with pytest.raises(signals.Interrupted) as info:
    run(tmp_path, "--steps", str(STEPS), "--seeds", str(len(SEEDS)))
  assert info.value.exit_code == 130
  for seed in SEEDS:
    mine = population.member_folder(tmp_path, seed)
    assert results(mine)["stopped_by"] == "interrupted" and results(mine)["step"] == 3
    assert checkpoint.Checkpoints(mine / "checkpoints", create=False).latest_step() == 3
  monkeypatch.setattr(tasks, "batch_at", batch_at)
  run(tmp_path, "--steps", str(STEPS), "--seeds", str(len(SEEDS)), "--resume")
  for seed in SEEDS:
    mine, straight = population.member_folder(tmp_path, seed), population.member_folder(pop, seed)
    assert logged(mine) == logged(straight)  # one program, the same inputs: identical
    a, b = tasks.restore(mine)[1], tasks.restore(straight)[1]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert results(mine)["step"] == STEPS and results(mine)["stopped_by"] == "steps"


@pytest.mark.slow
def test_a_diverging_member_stops_alone(pop, tmp_path, monkeypatch, capsys):
  batch_at = tasks.batch_at

  def poisoned(config, step, level=None):  # seed 4's inputs are NaN from iteration 2 on
    seqs = batch_at(config, step, level)
    if config.seed == SEEDS[1] and step >= 1:
      seqs = seqs._replace(inputs=np.full_like(seqs.inputs, np.nan))
    return seqs

  monkeypatch.setattr(tasks, "batch_at", poisoned)
  run(tmp_path, "--steps", "4", "--seeds", str(len(SEEDS)))
  bad = population.member_folder(tmp_path, SEEDS[1])
  assert results(bad)["stopped_by"] == "nan" and results(bad)["step"] == 1
  assert [r["step"] for r in logged(bad)] == [1]
  assert tasks.restore(bad)[3] == 1  # frozen at its last good state, and saved there
  assert "seed 4: loss became nan at iter 2: frozen at iter 1" in capsys.readouterr().out
  for seed in (SEEDS[0], SEEDS[2]):  # the others train on as in the population without it
    mine = population.member_folder(tmp_path, seed)
    assert results(mine)["step"] == 4
    straight = [r for r in logged(population.member_folder(pop, seed)) if r["step"] <= 3]
    assert logged(mine)[:len(straight)] == straight
  run(tmp_path, "--steps", "5", "--seeds", str(len(SEEDS)), "--resume")  # it stays stopped
  assert results(bad)["stopped_by"] == "nan" and results(bad)["step"] == 1
  assert results(population.member_folder(tmp_path, SEEDS[0]))["step"] == 5
  assert "behind the population's iter 4: it stays stopped (nan)" in capsys.readouterr().out


@pytest.mark.slow
def test_members_read_as_runs_and_resume_checks_the_population(pop):
  assert json.loads((pop / "population.json").read_text()) == {"seeds": SEEDS}
  assert (pop / "log.txt").read_text().count("population of 3 seeds (3 .. 5)") == 1
  for i, seed in enumerate(SEEDS):
    mine = population.member_folder(pop, seed)
    assert {"checkpoints", "config.json", "metrics.jsonl", "results.json", "loss.png",
            "bit_errors.png"} <= {p.name for p in mine.iterdir()}
    assert json.loads((mine / "config.json").read_text())["seed"] == seed
    assert results(mine)["population"] == {"index": i, "seeds": SEEDS}
    assert report.run_report(mine)["iters"] == STEPS
  with pytest.raises(checkpoint.CheckpointError, match=r"seeds \[3, 4, 5\], not --seeds 2"):
    run(pop, "--steps", "7", "--seeds", "2", "--resume")
  with pytest.raises(checkpoint.CheckpointError, match="starts at seed 3, not --seed 0"):
    script.main(["--workdir", str(pop), "--steps", "7", "--seeds", "3", "--resume", "--seed",
                 "0"])
  with pytest.raises(checkpoint.CheckpointError, match="seed3/checkpoints already holds"):
    run(pop, "--steps", "7", "--seeds", "3")


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "0"], "error: --seeds must be a positive integer, got 0"),
    (["--seed", str(2**32 - 2), "--seeds", "3"],
     "error: --seeds 3 from --seed 4294967294 goes past the largest seed, 2**32 - 1"),
])
def test_bad_seeds_are_one_line_before_jax_loads(tmp_path, flags, message):
  done = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "experiments" / "tasks.py"),
                         "--workdir", str(tmp_path / "run"), *flags], capture_output=True,
                        text=True, cwd=tmp_path)
  lines = [l for l in done.stderr.splitlines() if not l.startswith("import time:")]
  imported = {m.group(1).strip().split(".")[0] for l in done.stderr.splitlines()
              if (m := re.match(r"import time:\s+\d+ \|\s+\d+ \|(.*)$", l))}
  assert done.returncode == 2 and lines == [message]
  assert "jax" not in imported and "dncjax" in imported
  assert not (tmp_path / "run").exists()
