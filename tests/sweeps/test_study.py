"""Sweeps on Optuna: workers on SQLite, resume after kills, bad input (search spaces:
test_space.py)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import optuna
import pytest

from dncjax.charlm import restore
from dncjax.configs import to_json
from dncjax.models.lstm import LSTMConfig
from dncjax.sweeps import errors as sweep_errors, space, study as sweep, trials as sweep_trials
from dncjax.sweeps import report as sweep_report, workers as sweep_workers

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = ("--set", "model=lstm", "--set", "hidden=8", "--set", "batch_size=4",
        "--set", "seq_length=8")


def tiny_sweep(workdir, params=("lr=0.01:0.5:log",), steps=8, trials=4, **kw) -> sweep.Sweep:
  fixed = tuple(sorted(space.parse_fixed(t) for t in TINY[1::2]))
  return sweep.Sweep(str(workdir), space.Space(tuple(map(space.Param.parse, params)), fixed),
                     sweep.Budget(steps=steps, eval_every=4, report_interval=4),
                     trials=trials, **{"sampler": "random", **kw})


def command(workdir, *extra, steps=8, trials=4, eval_every=4):
  return [sys.executable, str(REPO / "experiments" / "sweep.py"), "--workdir", str(workdir),
          "--param", "lr=0.01:0.5:log", *TINY, "--steps", str(steps), "--trials", str(trials),
          "--eval_every", str(eval_every), "--report_interval", "50", "--sampler", "random",
          *extra]


def trials_of(workdir):
  s = optuna.load_study(study_name=pathlib.Path(workdir).name,
                        storage=f"sqlite:///{pathlib.Path(workdir).absolute() / 'study.db'}")
  return s.get_trials(deepcopy=False)


@pytest.mark.slow
def test_two_workers_record_every_trial_once(tmp_path):
  spec = tiny_sweep(tmp_path / "two", trials=5)
  sweep_workers.run(spec, workers=2, out=lambda line: None)
  trials = trials_of(spec.path)
  assert len(trials) == 5 and sorted(t.number for t in trials) == list(range(5))
  assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
             for t in trials)
  folders = [t.user_attrs["workdir"] for t in trials]
  assert len(set(folders)) == 5
  assert {t.user_attrs["worker"] for t in trials} <= {1, 2}
  for t in trials:  # each trial's run really trained, for its budget unless pruned
    result = json.loads((spec.path / t.user_attrs["workdir"] / "results.json").read_text())
    assert result["step"] == (8 if t.state.name == "COMPLETE" else t.user_attrs["step"])
    assert "tail_bpc" not in result  # trials are chosen on the development split alone
    config = json.loads((spec.path / t.user_attrs["workdir"] / "config.json").read_text())
    assert config["optim"]["learning_rate"] == pytest.approx(t.params["learning_rate"])
    assert config["model"] == to_json(LSTMConfig(hidden=8))
  complete = [t for t in trials if t.state.name == "COMPLETE"]
  assert all(t.value == pytest.approx(
      min(v for v in t.intermediate_values.values())) for t in complete)
  # a second run of the same sweep finds it full and adds nothing
  sweep_workers.run(spec, workers=2, out=lambda line: None)
  assert len(trials_of(spec.path)) == 5
  # the report: ranked table, plots, a link to the best trial with its checkpoint
  table = sweep_report.write(optuna.load_study(study_name="two", storage=spec.storage_url()),
                             spec)
  assert [r["rank"] for r in table] == [1, 2, 3, 4, 5]
  done = [r["dev_bpc"] for r in table if r["state"] == "complete"]
  assert done == sorted(done)
  csv_lines = (spec.path / "results.csv").read_text().splitlines()
  assert len(csv_lines) == 6 and csv_lines[0].startswith("rank,trial,state,dev_bpc")
  assert (spec.path / "params.png").stat().st_size > 0
  assert (spec.path / "curves.png").stat().st_size > 0
  best = spec.path / "best_trial"
  assert best.resolve() == (spec.path / table[0]["workdir"]).resolve()
  assert (best / "best").is_dir() and (best / "checkpoints").is_dir()
  _, _, _, meta = restore.restore_for_sampling(best, best=True)  # what sample.py loads
  assert meta["step"] == table[0]["best_step"]
  assert meta["best"]["dev_bpc"] == pytest.approx(table[0]["dev_bpc"])
  # the rebuilt sweep (for --report) is the same search
  rebuilt, _ = sweep.existing(str(spec.path))
  assert rebuilt.signature() == spec.signature()


@pytest.mark.slow
def test_another_search_under_the_same_name_is_refused(tmp_path):
  spec = tiny_sweep(tmp_path / "s", trials=1)
  sweep_workers.run(spec, out=lambda line: None)
  before = (spec.path / "study.db").read_bytes()
  other = tiny_sweep(tmp_path / "s", params=("lr=0.01:0.9:log",), trials=1)
  with pytest.raises(sweep_errors.SweepError, match="made for another search") as e:
    sweep_workers.run(other, out=lambda line: None)
  assert "\n" not in str(e.value)
  longer = tiny_sweep(tmp_path / "s", steps=16, trials=1)
  with pytest.raises(sweep_errors.SweepError, match="budget"):
    sweep_workers.run(longer, out=lambda line: None)
  assert (spec.path / "study.db").read_bytes() == before
  assert [t.state.name for t in trials_of(spec.path)] == ["COMPLETE"]


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-dir/x/study.db",
                                 "postgresql://user:secret@127.0.0.1:1/db", "not a url"])
def test_unreachable_storage_is_one_line(tmp_path, url):
  with pytest.raises(sweep_errors.SweepError, match="cannot open the study storage") as e:
    sweep_workers.run(tiny_sweep(tmp_path / "s", storage=url), out=lambda line: None)
  assert "\n" not in str(e.value) and "secret" not in str(e.value)


def _wait_for_checkpoint(folder, proc, timeout=600):
  end = time.monotonic() + timeout
  while time.monotonic() < end and proc.poll() is None:
    ckpts = folder / "checkpoints"
    if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
      return
    time.sleep(0.05)
  raise AssertionError(f"no checkpoint in {folder} (exit {proc.poll()})")


@pytest.mark.slow
def test_killed_sweep_resumes_its_trial_from_the_checkpoint(tmp_path):
  workdir = tmp_path / "killed"
  cmd = command(workdir, "--pruner", "none", steps=1500, trials=2, eval_every=100)
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  _wait_for_checkpoint(workdir / "trials" / "0000", proc)
  proc.kill()
  proc.wait()
  [t] = trials_of(workdir)
  assert t.state.name == "RUNNING"  # as the dead worker left it
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr
  assert "retrying 1 interrupted" in done.stdout
  trials = {t.number: t for t in trials_of(workdir)}
  assert trials[0].state.name == "FAIL" and trials[0].user_attrs["stopped_by"] == "worker died"
  retry = [t for t in trials.values() if t.system_attrs.get("retry_history") == [0]]
  assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
  assert retry[0].params == trials[0].params
  assert retry[0].user_attrs["workdir"] == "trials/0000"
  assert len(sweep_trials.live_trials(optuna.load_study(
      study_name="killed", storage=f"sqlite:///{workdir / 'study.db'}"))) == 2
  log = (workdir / "trials" / "0000" / "log.txt").read_text()
  assert "resumed" in log  # from the checkpoint, not from scratch
  result = json.loads((workdir / "trials" / "0000" / "results.json").read_text())
  assert result["step"] == 1500


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_and_resumes(tmp_path):
  workdir = tmp_path / "ctrlc"
  cmd = command(workdir, "--pruner", "none", "--workers", "2", steps=1200, trials=3,
                eval_every=100)
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)
  _wait_for_checkpoint(workdir / "trials" / "0001", proc)
  os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err
  assert "run the same command again to resume" in err
  states = [t.state.name for t in trials_of(workdir)]
  assert "RUNNING" not in states and states.count("WAITING") >= 1
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr
  study = optuna.load_study(study_name="ctrlc", storage=f"sqlite:///{workdir / 'study.db'}")
  live = sweep_trials.live_trials(study)
  assert len(live) == 3 and all(t.state.name == "COMPLETE" for t in live)
  for t in live:
    assert json.loads((workdir / t.user_attrs["workdir"] / "results.json").read_text())[
        "step"] == 1200


@pytest.mark.slow
def test_command_line_errors_are_one_line(tmp_path):
  bad = command(tmp_path / "bad", "--param", "foo=1,2")
  r = subprocess.run(bad, capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and r.stderr.count("\n") == 1
  assert "unknown hyperparameter 'foo'" in r.stderr
  r = subprocess.run([sys.executable, str(REPO / "experiments" / "sweep.py"), "--workdir",
                      str(tmp_path / "none"), "--report"], capture_output=True, text=True,
                     timeout=120)
  assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no sweep in" in r.stderr


@pytest.mark.slow
def test_population_sweep_trains_trials_together(tmp_path):
  spec = tiny_sweep(tmp_path / "pop", params=("lr=0.01:0.5:log", "seed=0,1"), trials=4,
                    population=2, pruner="none")
  sweep_workers.run(spec, out=lambda line: None)
  trials = trials_of(spec.path)
  assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
  for t in trials:
    folder = spec.path / t.user_attrs["workdir"]
    result = json.loads((folder / "results.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert result["population"]["size"] == 2 and result["step"] == 8
    assert t.value == pytest.approx(result["best_dev_bpc"])
    assert (config["optim"]["learning_rate"], config["seed"]) == (
        pytest.approx(t.params["learning_rate"]), t.params["seed"])
  with pytest.raises(ValueError, match="keep array shapes.*not: forget_bias"):
    tiny_sweep(tmp_path / "bad", params=("forget_bias=0.5,1",), population=2)


@pytest.mark.slow
def test_two_machines_share_one_storage(tmp_path):
  """Two sweep folders (as on two machines) join one study through --storage and --study."""
  storage = f"sqlite:///{tmp_path / 'shared.db'}"
  procs = [subprocess.Popen(command(tmp_path / host, "--storage", storage, "--study", "joint",
                                    "--pruner", "none", trials=4),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for host in ("host_a", "host_b")]
  for p in procs:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
  study = optuna.load_study(study_name="joint", storage=storage)
  live = sweep_trials.live_trials(study)
  # each machine hands out trials under its own lock: at most one extra trial per extra machine
  assert 4 <= len(live) <= 5 and all(t.state.name == "COMPLETE" for t in live)
  ran = {host: {t.user_attrs["workdir"] for t in live
                if (tmp_path / host / t.user_attrs["workdir"] / "results.json").exists()}
         for host in ("host_a", "host_b")}
  assert not ran["host_a"] & ran["host_b"]  # every trial ran on exactly one machine
  assert len(ran["host_a"]) + len(ran["host_b"]) == len(live)
