"""Sweep faults: grid points run once by any number of workers, storage URLs never show
their passwords, bad settings fail in one line before any trial, all-failed sweeps fail."""

import contextlib
import importlib.util
import pathlib
import signal
import subprocess
import sys

import optuna
import pytest

from dncjax import charlm, cli, space, sweep, sweep_report
from tests.conftest import REPO

SCRIPT = REPO / "experiments" / "sweep.py"
TINY = ("--set", "model=lstm", "--set", "hidden=8", "--set", "batch_size=4",
        "--set", "seq_length=8")
GRID = ("--param", "lr=0.05,0.1,0.2", "--sampler", "grid")


def sweep_command(workdir, text_file, *extra):
  return [sys.executable, str(SCRIPT), "--workdir", str(workdir), *TINY, "--data",
          str(text_file), "--steps", "2", "--eval_every", "2", "--report_interval", "50",
          *extra]


def run_main(argv) -> int:
  """What `python experiments/sweep.py ARGV` exits with, run in this process."""
  handler = signal.getsignal(signal.SIGINT)  # the script may set its own
  try:
    spec = importlib.util.spec_from_file_location("sweep_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as e:
      cli.run(lambda: module.main(argv), charlm.error_types() + (sweep.SweepError,))
  finally:
    signal.signal(signal.SIGINT, handler)
  return e.value.code


def counted(workdir, storage=None, name=None):
  study = optuna.load_study(study_name=name or pathlib.Path(workdir).name,
                            storage=storage or f"sqlite:///{pathlib.Path(workdir) / 'study.db'}")
  return sweep.live_trials(study)


# ------------------------------------------------------------------------ grid sweeps


def test_sweep_grid_two_workers_run_each_point_once(tmp_path, text_file):
  workdir = tmp_path / "grid2"
  r = subprocess.run(sweep_command(workdir, text_file, *GRID, "--workers", "2"),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr
  live = counted(workdir)
  assert sorted(t.params["learning_rate"] for t in live) == [0.05, 0.1, 0.2]
  assert all(t.state.name == "COMPLETE" for t in live)
  assert len({t.user_attrs["workdir"] for t in live}) == 3
  assert len((workdir / "results.csv").read_text().splitlines()) == 4


def test_sweep_grid_one_worker_finishes_cleanly(tmp_path, text_file):
  workdir = tmp_path / "grid1"
  argv = sweep_command(workdir, text_file, "--param", "lr=0.05,0.1", "--sampler", "grid",
                       "--pruner", "none")[2:]
  assert run_main(argv) == 0
  live = counted(workdir)
  assert sorted(t.params["learning_rate"] for t in live) == [0.05, 0.1]
  assert all(t.state.name == "COMPLETE" for t in live)
  assert len((workdir / "results.csv").read_text().splitlines()) == 3
  assert run_main(argv) == 0  # full: nothing more to run
  assert len(counted(workdir)) == 2


def test_sweep_grid_queued_twice_by_two_machines_runs_once(tmp_path):
  """Two folders on one storage, as two machines: both queue the grid, both ask; a worker
  that dies has its point retried; every point runs exactly once all the same."""
  storage = f"sqlite:///{tmp_path / 'shared.db'}"
  fixed = tuple(sorted(space.parse_fixed(t) for t in TINY[1::2]))
  specs = [sweep.Sweep(str(tmp_path / host), space.Space((space.Param.parse("lr=0.05,0.1,0.2"),
                                                          space.Param.parse("seed=0,1")), fixed),
                       sweep.Budget(steps=2), sampler="grid", storage=storage, study="joint")
           for host in ("a", "b")]
  studies = []
  for spec in specs:
    spec.path.mkdir()
    studies.append(sweep.open_study(spec))
  sweep.queue_grid(specs[0], studies[0])
  for i, point in enumerate(specs[1].space.grid_points()):  # b queues as a does: at once
    studies[1].enqueue_trial(point, user_attrs={sweep.GRID_ATTR: i})
  assert len(studies[0].get_trials(deepcopy=False)) == 12
  ran, died = [], None
  locks = [str(tmp_path / f"w{i}.lock") for i in range(2)]
  with contextlib.ExitStack() as alive:  # the two workers hold their locks
    for lock in locks:
      alive.enter_context(sweep.file_lock(pathlib.Path(lock)))
    while True:
      asked = [sweep._ask(spec, study, lock, i)  # pylint: disable=protected-access
               for i, (spec, study, lock) in enumerate(zip(specs, studies, locks))]
      if not any(asked):
        break
      for study, trials in zip(studies, asked):
        for trial, values in trials:
          if died is None:  # its worker is gone: failed and queued again, same point
            died = values
            sweep.fail_and_retry(study, trial.number, "worker died")
            continue
          ran.append(tuple(values.values()))
          study.tell(trial, 1.0)
  live = sweep.live_trials(studies[0])
  assert sorted(ran) == [(lr, seed) for lr in (0.05, 0.1, 0.2) for seed in (0, 1)]
  assert len(live) == 6 and all(t.state.name == "COMPLETE" for t in live)
  retried = [t for t in live if t.system_attrs.get("retry_history")]
  assert len(retried) == 1 and retried[0].params == {"learning_rate": died["learning_rate"],
                                                     "seed": died["seed"]}
  assert len(sweep_report.rows(studies[0], specs[0])) == 6
  every = studies[0].get_trials(deepcopy=False)  # 12 queued, one retry; the copies unrun
  assert len(every) == 13 and sum(sweep.DISCARDED in t.user_attrs for t in every) == 6


# ------------------------------------------------------------------------ storage URLs


BAD_URLS = [
    ("postgresql://alice:S3cretPass@127.0.0.1:notaport/db", ("S3cretPass",)),  # bad port
    ("postgresql://alice:S3c@ret@127.0.0.1/db", ("S3c", "ret@")),  # @ in the password
    ("foodb://alice:S3cretPass@127.0.0.1/db", ("S3cretPass",)),  # unknown dialect
    ("mysql://alice:S3cretPass@127.0.0.1/db", ("S3cretPass",)),  # missing driver
]


def test_sweep_storage_errors_hide_passwords(tmp_path, text_file):
  procs = []
  for i, (url, _) in enumerate(BAD_URLS):
    for extra in (("--param", "lr=0.05,0.1"), ("--report",)):
      procs.append(subprocess.Popen(
          sweep_command(tmp_path / f"s{i}", text_file, "--storage", url, *extra),
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  for i, p in enumerate(procs):
    out, err = p.communicate(timeout=300)
    url, secrets = BAD_URLS[i // 2]
    assert p.returncode == 2, (url, err)
    assert err.count("\n") == 1 and "cannot open the study storage" in err, (url, err)
    for secret in secrets:
      assert secret not in out + err, (url, err)


@pytest.mark.parametrize("url, shown", [
    ("postgresql://alice:S3c%40ret@127.0.0.1:1/db", "postgresql://alice:***@127.0.0.1:1/db"),
    ("alice:S3c%40ret@127.0.0.1/db", "alice:***@127.0.0.1/db"),
    ("postgresql://127.0.0.1/db?password=S3c%40ret", "postgresql://127.0.0.1/db?password=***"),
])
def test_sweep_storage_error_texts_are_scrubbed(monkeypatch, url, shown):
  def refuse(*args, **kwargs):
    raise ValueError(f"Could not parse URL from string {url!r} (password 'S3c@ret')")
  monkeypatch.setattr(optuna.storages, "RDBStorage", refuse)
  with pytest.raises(sweep.SweepError) as e:
    sweep.open_storage(url)
  assert "S3c" not in str(e.value) and shown in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------ bad settings


@pytest.mark.parametrize("text, message", [
    ("lr=-inf:inf", "not a finite number"),
    ("lr=0.1:inf:log", "not a finite number"),
    ("lr=nan", "not a finite number"),
    ("lr=0.1,nan", "not a finite number"),
    ("lr=nan:1", "not a finite number"),
    ("hidden=8:1e400", "is not an int"),
    ("lr=-1:1:log", "log range needs low > 0"),
    ("lr=1:0.1", "empty or inverted range"),
])
def test_sweep_bad_ranges_are_one_line_errors(text, message):
  with pytest.raises(space.SpaceError, match=message) as e:
    space.Param.parse(text)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("params, fixed, message", [
    (("lr=0.05,0.1",), ("dropout=2",), "dropout must be"),
    (("lr=-0.1:0.5",), (), "(learning_rate|--lr) must be positive"),
    (("dropout=0:1",), (), "dropout must be"),
    (("batch_size=4,0",), (), "(batch_size|--batchsize) must be positive"),
    (("clip_norm=none,0",), (), "clip_norm must be positive"),
    (("seq_length=8,100000",), (), "seq_length"),
    (("lr=0.05,0.1",), ("val_fraction=0",), "validation split"),
])
def test_sweep_bad_settings_fail_before_any_trial(tmp_path, text_file, params, fixed,
                                                  message):
  params = tuple(map(space.Param.parse, params))
  fixed = tuple(sorted(f for f in map(space.parse_fixed, TINY[1::2] + fixed)
                       if f[0] not in [p.name for p in params]))
  spec = sweep.Sweep(str(tmp_path / "bad"), space.Space(params, fixed),
                     sweep.Budget(steps=2), sampler="random", data=str(text_file))
  with pytest.raises(space.SpaceError, match=message) as e:
    sweep.run(spec, out=lambda line: None)
  assert "\n" not in str(e.value)
  assert not (tmp_path / "bad").exists()


def test_sweep_bad_setting_exits_2_in_one_line(tmp_path, text_file):
  r = subprocess.run(sweep_command(tmp_path / "bad", text_file, "--param", "lr=0.05,0.1",
                                   "--set", "dropout=2"),
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
  assert "dropout must be" in r.stderr and "2" in r.stderr and not r.stdout
  assert not (tmp_path / "bad").exists()


def test_sweep_all_trials_failed_exits_nonzero(tmp_path, text_file, monkeypatch, capsys):
  def diverge(*args, **kwargs):
    raise charlm.TrainingError("the loss became NaN/Inf at iter 1")
  monkeypatch.setattr(charlm, "train_and_evaluate", diverge)
  workdir = tmp_path / "failing"
  argv = sweep_command(workdir, text_file, "--param", "lr=0.05,0.1", "--sampler", "grid")[2:]
  assert run_main(argv) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "all 2 trials failed" in err and "NaN/Inf" in err
  assert len((workdir / "results.csv").read_text().splitlines()) == 3
