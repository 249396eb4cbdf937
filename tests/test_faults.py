"""Faults a careless user or a hostile environment injects, in one place: a gradient check
that must be able to fail, diverging runs, two runs in one workdir, signals at awkward
moments, grid sweeps over several workers, passwords in storage URLs, bad values, damaged
checkpoints, a full disk, pipes for data. Each must end in a clear line with nothing lost."""

import contextlib
import importlib.util
import json
import math
import os
import pathlib
import signal
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optuna
import pytest

from dncjax import models
import dncjax
from dncjax.charlm import job as charlm, restore
from dncjax.training import checkpoint
from dncjax import cli
from dncjax.training import loop
from dncjax.training.records import MetricsLog, read_metrics
from dncjax.sweeps import errors as sweep_errors, space, storage as sweep_storage, study as sweep
from dncjax.sweeps import report as sweep_report, trials as sweep_trials, workers as sweep_workers

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY = ["--model", "seed_dnc", "--hidden", "8", "--memory_size", "4", "--word_size", "4",
        "--batchsize", "2", "--seqlength", "8", "--sample_length", "0", "--report_interval", "1",
        "--no-dynamic_eval", "--fp64"]
DIVERGING = ["--model", "dnc", "--hidden", "16", "--memory_size", "8", "--word_size", "8",
             "--read_heads", "1", "--batchsize", "4", "--seqlength", "16", "--lr", "1e30",
             "--sample_length", "0", "--no-dynamic_eval"]


def _load(name):
  spec = importlib.util.spec_from_file_location(f"faults_{name}", REPO / "experiments" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


alice, sample = _load("alice"), _load("sample")


def alice_main(argv):
  return alice.main([str(a) for a in argv])


def sample_main(argv):
  return sample.main([str(a) for a in argv])


def script(name, *args, **kw):
  return subprocess.Popen([sys.executable, f"experiments/{name}.py", *map(str, args)], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(proc, text):
  """Reads the process's stdout until a line holds `text` (the event, not a time)."""
  seen = []
  while True:
    line = proc.stdout.readline()
    if not line and proc.poll() is not None:
      raise AssertionError(f"ended before {text!r}: {''.join(seen)} {proc.stderr.read()}")
    seen.append(line)
    if text in line:
      return "".join(seen)


def records(workdir, key):
  return {r["step"]: r[key] for r in read_metrics(workdir / "metrics.jsonl") if key in r}


# ---------------------------------------------------------------- 1. the NaN guard


@pytest.mark.slow
def test_nan_guard_saves_only_finite_parameters(text_file, tmp_path):
  with pytest.raises(loop.TrainingError, match="NaN") as info:
    alice_main(["--data", text_file, "--workdir", tmp_path, *DIVERGING, "--steps", "300",
                "--checkpoint_every", "1", "--eval_every", "2"])
  good = int(str(info.value).split("last good checkpoint is iter ")[1].split()[0])
  _, model, ts, _, meta = restore.restore_trained(tmp_path)
  assert meta["step"] == good
  for tree in (ts.params, ts.opt_state, ts.model_state):
    assert all(np.isfinite(np.asarray(x)).all() for x in _floats(tree))
  assert sample_main(["--workdir", str(tmp_path), "--length", "20"]) == 0


def _floats(tree):
  import jax
  return [x for x in jax.tree.leaves(tree) if np.issubdtype(np.asarray(x).dtype, np.floating)]


def test_nonfinite_validation_stops_the_run(tmp_path):
  state = {"w": np.ones(2)}

  def evaluate(state, step):
    return {"dev_bpc": 2.0 if step < 4 else math.nan}

  saved = []
  result = loop.run(step_fn=lambda s, b: (s, {"loss": 1.0}), state=state, next_batch=lambda: 0,
                    start_step=0, config=loop.Schedule(steps=10, eval_every=2,
                                                         checkpoint_every=2),
                    items_per_step=1, log=MetricsLog(tmp_path / "m.jsonl"),
                    save=lambda step, s, e: saved.append(step), evaluate=evaluate,
                    print_fn=lambda line: None)
  assert result.reason == "nan" and "dev_bpc" in result.detail and result.step == 4
  assert saved == [2]  # the step whose evaluation was NaN is not saved


@pytest.mark.slow
def test_sample_refuses_nonfinite_parameters(text_file, tmp_path, capsys):
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "2"])
  ckpts = checkpoint.Checkpoints(tmp_path / "checkpoints")
  config, model, ts, vocab, meta = restore.restore_trained(tmp_path)
  bad = ts._replace(params={k: v * np.nan for k, v in ts.params.items()})
  rng = checkpoint.key_to_array(__import__("jax").random.key(0))
  ckpts.save(3, {"train": bad, "rng": rng}, {**meta, "step": 3})
  ckpts.close()
  proc = script("sample", "--workdir", tmp_path, "--length", "5")
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
  assert "non-finite" in err and out == ""


# ---------------------------------------------------------------- 2. one run per workdir


@pytest.mark.slow
def test_a_second_run_in_a_busy_workdir_is_refused(text_file, tmp_path):
  first = script("alice", "--data", text_file, "--workdir", tmp_path, *TINY,
                 "--steps", "100000", "--eval_every", "0", "--checkpoint_every", "2")
  try:
    wait_for(first, "iter 1,")
    second = script("alice", "--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "5",
                    "--resume")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"pid {first.pid}" in err and socket.gethostname() in err
    assert first.poll() is None  # the first run goes on
  finally:
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=300)
  assert first.returncode == 130
  steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if "train_bpc" in r]
  assert steps == sorted(set(steps))  # one writer: no duplicate records


# ---------------------------------------------------------------- 3. Ctrl-C after a checkpoint


@pytest.mark.slow
def test_ctrl_c_right_after_a_checkpoint_keeps_the_best_record(text_file, tmp_path, monkeypatch):
  save, pressed = checkpoint.Checkpoints.save, []

  def save_then_ctrl_c(self, step, state, meta):
    save(self, step, state, meta)
    if self.directory.name == "checkpoints" and step == 4 and not pressed:
      pressed.append(step)
      os.kill(os.getpid(), signal.SIGINT)  # as if pressed just after this save

  monkeypatch.setattr(checkpoint.Checkpoints, "save", save_then_ctrl_c)
  with pytest.raises(KeyboardInterrupt):
    alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "50",
                "--eval_every", "3", "--checkpoint_every", "2"])
  monkeypatch.undo()
  best_step, best_meta = checkpoint.Checkpoints(tmp_path / "best", create=False).restore_meta()
  step, meta = checkpoint.Checkpoints(tmp_path / "checkpoints", create=False).restore_meta()
  dev = records(tmp_path, "dev_bpc")
  assert step == 4 and 4 in dev  # the stop's evaluation at the checkpointed step
  assert meta["best"] == best_meta["best"] == {"dev_bpc": min(dev.values()),
                                               "step": best_step}
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "8", "--resume"])
  results = json.loads((tmp_path / "results.json").read_text())
  best_step, best_meta = checkpoint.Checkpoints(tmp_path / "best", create=False).restore_meta()
  assert (results["best_step"], results["best_dev_bpc"]) == (best_step,
                                                             best_meta["best"]["dev_bpc"])
  assert results["best_dev_bpc"] == min(records(tmp_path, "dev_bpc").values())


# ---------------------------------------------------------------- 6. bad values, early


BAD_VALUES = [
    (["--dynamic_eval", "--dynamic_lr", "nan"], "--dynamic_lr"),
    (["--dynamic_eval", "--dynamic_lr", "inf"], "--dynamic_lr"),
    (["--dynamic_eval", "--dynamic_decay", "nan"], "--dynamic_decay"),
    (["--dynamic_eps", "0"], "--dynamic_eps"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--eps", "-1"], "--eps"),
    (["--clip_norm", "inf"], "--clip_norm"),
    (["--init_scale", "nan"], "init_scale"),
    (["--forget_bias", "nan"], "forget_bias"),
    (["--temperature", "inf"], "--temperature"),
    (["--eval_lanes", "100000"], "--eval_lanes"),
    (["--eval_lanes", "0"], "--eval_lanes"),
    (["--seed", str(2**70)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--val_fraction", "1"], "--val_fraction"),
    (["--dev_fraction", "-0.1"], "--dev_fraction"),
    (["--dev_fraction", "0.9"], "--dev_fraction 0.9 and --val_fraction 0.1"),
    (["--dropout", "nan"], "--dropout"),
    (["--overlap", "1"], "--overlap"),
    (["--target_bpc", "nan"], "--target_bpc"),
    (["--sample_length", "-1"], "--sample_length"),
]


@pytest.mark.parametrize("flags, name", BAD_VALUES, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_values_are_refused_before_any_compile(text_file, tmp_path, monkeypatch, flags, name):
  def compiled(*args, **kwargs):
    raise AssertionError("the run began (parameters created) before the bad value was seen")

  monkeypatch.setattr(charlm, "initial_run_state", compiled)
  with pytest.raises((ValueError,) + charlm.error_types()) as info:
    alice_main(["--data", text_file, "--workdir", tmp_path / "w", *TINY, "--steps", "3", *flags])
  message = str(info.value)
  assert name in message and "\n" not in message, message
  assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.slow
def test_bad_seed_is_one_line_naming_the_flag(tmp_path):
  proc = script("alice", "--workdir", tmp_path, "--seed", "-1", "--steps", "1")
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 2 and err.count("\n") == 1 and "--seed" in err, err


@pytest.mark.slow
def test_no_held_out_text_writes_strict_json(text_file, tmp_path):
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "2",
              "--val_fraction", "0", "--dev_fraction", "0"])
  text = (tmp_path / "results.json").read_text()
  results = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
  assert results["best_dev_bpc"] is None and "tail_bpc" not in results


# ---------------------------------------------------------------- 7. faults as one line


@pytest.mark.slow
def test_sigterm_saves_and_exits_143(text_file, tmp_path):
  proc = script("alice", "--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "100000",
                "--eval_every", "0")
  wait_for(proc, "iter 2,")
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 143 and "Traceback" not in err, err
  step, meta = checkpoint.Checkpoints(tmp_path / "checkpoints", create=False).restore_meta()
  assert step >= 2 and meta["step"] == step and "--resume" in out


@pytest.mark.slow
def test_two_ctrl_c_abort_quietly_and_keep_the_last_checkpoint(text_file, tmp_path):
  proc = script("alice", "--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "100000",
                "--eval_every", "0", "--checkpoint_every", "1")
  wait_for(proc, "iter 3,")
  proc.send_signal(signal.SIGINT)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130 and "Traceback" not in err, err
  step, _ = checkpoint.Checkpoints(tmp_path / "checkpoints", create=False).restore_meta()
  assert step >= 1


@pytest.mark.slow
def test_out_of_memory_model_is_refused_in_one_line(tmp_path):
  proc = script("alice", "--workdir", tmp_path, "--model", "lstm", "--hidden", "100000",
                "--steps", "1")
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 2 and err.count("\n") == 1 and "--hidden" in err, err


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_data_that_is_not_a_file_is_refused(tmp_path, kind):
  path = tmp_path / "pipe" if kind == "fifo" else pathlib.Path("/dev/zero")
  if kind == "fifo":
    os.mkfifo(path)
  with pytest.raises(charlm.error_types()[0], match="not a regular file"):
    alice_main(["--data", path, "--workdir", tmp_path / "w", *TINY, "--steps", "1"])


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_and_is_kept(text_file, tmp_path, capsys,
                                                          folder_digest):
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "8",
              "--checkpoint_every", "4", "--eval_every", "0"])
  damaged = tmp_path / "checkpoints" / "8"
  for f in (damaged / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(f.read_bytes()[:3])  # truncated chunks, as a full disk or a crash leaves
  before = folder_digest(damaged)
  capsys.readouterr()
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "10", "--resume"])
  out = capsys.readouterr().out
  assert "checkpoint 8 in" in out and "is damaged" in out and "using step 4" in out
  assert "resumed" in out and "at iter 4" in out
  assert folder_digest(tmp_path / "checkpoints" / "8.damaged") == before  # never deleted
  step, meta = checkpoint.Checkpoints(tmp_path / "checkpoints", create=False).restore_meta()
  assert step == 10 and meta["step"] == 10


def test_ctrl_c_while_loading_is_quiet(tmp_path):
  proc = subprocess.Popen([sys.executable, "-X", "importtime", "experiments/alice.py",
                           "--workdir", str(tmp_path), "--steps", "1"], cwd=REPO,
                          stderr=subprocess.PIPE, text=True)
  for line in proc.stderr:  # -X importtime reports each import as it completes
    if line.split("|")[-1].strip() == "jax":
      break
  proc.send_signal(signal.SIGINT)  # while dncjax, orbax, optax ... are still loading
  err = proc.stderr.read()
  assert proc.wait(timeout=300) == 130 and "Traceback" not in err, err
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_deleted_metrics_log_is_warned_about_on_resume(text_file, tmp_path, capsys):
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "2"])
  (tmp_path / "metrics.jsonl").unlink()
  capsys.readouterr()
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "3", "--resume"])
  assert "metrics.jsonl is missing" in capsys.readouterr().out


@pytest.mark.slow
def test_disk_full_is_one_line_and_keeps_the_last_checkpoint(text_file, tmp_path):
  disk = tmp_path / "disk"
  disk.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)],
                    capture_output=True).returncode:
    pytest.skip("cannot mount a small tmpfs here (needs root)")
  try:
    proc = script("alice", "--data", text_file, "--workdir", disk, *TINY, "--steps", "100000",
                  "--eval_every", "0", "--checkpoint_every", "1", "--keep", "100")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 2 and err.count("\n") == 1, err
    assert "no space left" in err.lower() and "Traceback" not in err
    step, _ = checkpoint.Checkpoints(disk / "checkpoints", create=False).restore_meta()
    assert step >= 1
  finally:
    subprocess.run(["umount", str(disk)], check=False)


# ---------------------------------------------------------------- 8. defaults agree


@pytest.mark.slow
def test_resume_accepts_a_flag_equal_to_the_model_default(text_file, tmp_path):
  lstm = ["--model", "lstm", "--hidden", "8", "--batchsize", "2", "--seqlength", "8",
          "--sample_length", "0", "--no-dynamic_eval"]
  alice_main(["--data", text_file, "--workdir", tmp_path, *lstm, "--steps", "2"])
  alice_main(["--data", text_file, "--workdir", tmp_path, "--steps", "3", "--resume",
              "--variant", "seed", "--forget_bias", "1.0"])
  assert json.loads((tmp_path / "results.json").read_text())["step"] == 3
  with pytest.raises(checkpoint.CheckpointError, match="variant='textbook'"):
    alice_main(["--data", text_file, "--workdir", tmp_path, "--steps", "4", "--resume",
                "--variant", "textbook"])


# ---------------------------------------------------------------- 0. an honest gradient check



def _load_gradcheck_cli():
  spec = importlib.util.spec_from_file_location("gradcheck_cli",
                                                REPO / "experiments" / "gradcheck.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


GRADCHECK = _load_gradcheck_cli()
GRAD_TINY = {"hidden": 4, "word_size": 3, "read_heads": 2}  # memory_size: the model's default
SPARSE_TINY = {"memory_size": 16, "sparse_k": 4}  # the sparse cores' default N is 128


def _gradcheck_argv(name):
  argv = ["--model", name, "--vocab", "5", "--batchsize", "4", "--seqlength", "10",
          "--num_checks", "3"]
  tiny = {**GRAD_TINY, **(SPARSE_TINY if "sparse_k" in models.takes(name) else {})}
  for flag, value in tiny.items():
    if flag in models.takes(name):
      argv += [f"--{flag}", str(value)]
  return argv


def _through(forward, backward):
  """y -> forward(y) on the way in; the cotangent g -> backward(g) on the way back."""
  @jax.custom_vjp
  def planted(y):
    return forward(y)

  planted.defvjp(lambda y: (forward(y), None), lambda _, g: (backward(g),))
  return planted


def _plant(monkeypatch, wrap_output):
  """Every model the CLI builds runs `step` with its output y through `wrap_output` (its
  recur/readout split dropped, so the window loss runs `step` itself)."""
  build = dncjax.build

  def planted_model(config):
    model = build(config)

    def step(params, state, x):
      state, y = model.step(params, state, x)
      return state, wrap_output(y)

    return model._replace(step=step, recur=None, readout=None)

  monkeypatch.setattr(dncjax, "build", planted_model)  # what the gradcheck command builds with


def _verdict(capsys, argv):
  code = GRADCHECK.main(argv)
  lines = capsys.readouterr().out.strip().splitlines()
  return code, lines[-1], "\n".join(lines)


PLANTS = {
    "gradient x1.5": (lambda y: y, lambda g: 1.5 * g),
    "NaN forward": (lambda y: y * jnp.nan, lambda g: g),
    "NaN backward": (lambda y: y, lambda g: g * jnp.nan),
}  # without a plant every model passes: tests/training/test_gradcheck.py


@pytest.mark.slow
@pytest.mark.parametrize("plant", PLANTS)
@pytest.mark.parametrize("name", dncjax.model_names())
def test_gradcheck_fails_a_planted_fault(name, plant, capsys, monkeypatch):
  _plant(monkeypatch, _through(*PLANTS[plant]))
  code, verdict, out = _verdict(capsys, _gradcheck_argv(name))
  assert code == 1 and verdict.startswith("FAIL"), out
  assert ("NaN" in verdict) == plant.startswith("NaN"), verdict
  assert plant.startswith("NaN") or "relative error" in verdict, verdict  # not for want of signal


# ---------------------------------------------------------------- 4-6. sweeps

SWEEP_SCRIPT = REPO / "experiments" / "sweep.py"
SWEEP_TINY = ("--set", "model=lstm", "--set", "hidden=8", "--set", "batch_size=4",
              "--set", "seq_length=8")
GRID = ("--param", "lr=0.05,0.1,0.2", "--sampler", "grid")



def sweep_command(workdir, text_file, *extra):
  return [sys.executable, str(SWEEP_SCRIPT), "--workdir", str(workdir), *SWEEP_TINY, "--data",
          str(text_file), "--steps", "2", "--eval_every", "2", "--report_interval", "50",
          *extra]


def run_main(argv) -> int:
  """What `python experiments/sweep.py ARGV` exits with, run in this process."""
  handler = signal.getsignal(signal.SIGINT)  # the script may set its own
  try:
    spec = importlib.util.spec_from_file_location("sweep_script", SWEEP_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as e:
      cli.run(lambda: module.main(argv), charlm.error_types() + (sweep_errors.SweepError,))
  finally:
    signal.signal(signal.SIGINT, handler)
  return e.value.code


def counted(workdir, storage=None, name=None):
  study = optuna.load_study(study_name=name or pathlib.Path(workdir).name,
                            storage=storage or f"sqlite:///{pathlib.Path(workdir) / 'study.db'}")
  return sweep_trials.live_trials(study)


# ------------------------------------------------------------------------ grid sweeps


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_sweep_grid_queued_twice_by_two_machines_runs_once(tmp_path):
  """Two folders on one storage, as two machines: both queue the grid, both ask; a worker
  that dies has its point retried; every point runs exactly once all the same."""
  storage = f"sqlite:///{tmp_path / 'shared.db'}"
  fixed = tuple(sorted(space.parse_fixed(t) for t in SWEEP_TINY[1::2]))
  specs = [sweep.Sweep(str(tmp_path / host), space.Space((space.Param.parse("lr=0.05,0.1,0.2"),
                                                          space.Param.parse("seed=0,1")), fixed),
                       sweep.Budget(steps=2), sampler="grid", storage=storage, study="joint")
           for host in ("a", "b")]
  studies = []
  for spec in specs:
    spec.path.mkdir()
    studies.append(sweep.open_study(spec))
  sweep_trials.queue_grid(specs[0], studies[0])
  for i, point in enumerate(specs[1].space.grid_points()):  # b queues as a does: at once
    studies[1].enqueue_trial(point, user_attrs={sweep_trials.GRID_ATTR: i})
  assert len(studies[0].get_trials(deepcopy=False)) == 12
  ran, died = [], None
  locks = [str(tmp_path / f"w{i}.lock") for i in range(2)]
  with contextlib.ExitStack() as alive:  # the two workers hold their locks
    for lock in locks:
      alive.enter_context(sweep_trials.file_lock(pathlib.Path(lock)))
    while True:
      asked = [sweep_workers._ask(spec, study, lock, i)  # pylint: disable=protected-access
               for i, (spec, study, lock) in enumerate(zip(specs, studies, locks))]
      if not any(asked):
        break
      for study, trials in zip(studies, asked):
        for trial, values in trials:
          if died is None:  # its worker is gone: failed and queued again, same point
            died = values
            sweep_trials.fail_and_retry(study, trial.number, "worker died")
            continue
          ran.append(tuple(values.values()))
          study.tell(trial, 1.0)
  live = sweep_trials.live_trials(studies[0])
  assert sorted(ran) == [(lr, seed) for lr in (0.05, 0.1, 0.2) for seed in (0, 1)]
  assert len(live) == 6 and all(t.state.name == "COMPLETE" for t in live)
  retried = [t for t in live if t.system_attrs.get("retry_history")]
  assert len(retried) == 1 and retried[0].params == {"learning_rate": died["learning_rate"],
                                                     "seed": died["seed"]}
  assert len(sweep_report.rows(studies[0], specs[0])) == 6
  every = studies[0].get_trials(deepcopy=False)  # 12 queued, one retry; the copies unrun
  assert len(every) == 13 and sum(sweep_trials.DISCARDED in t.user_attrs for t in every) == 6


# ------------------------------------------------------------------------ storage URLs


BAD_URLS = [
    ("postgresql://alice:S3cretPass@127.0.0.1:notaport/db", ("S3cretPass",)),  # bad port
    ("postgresql://alice:S3c@ret@127.0.0.1/db", ("S3c", "ret@")),  # @ in the password
    ("foodb://alice:S3cretPass@127.0.0.1/db", ("S3cretPass",)),  # unknown dialect
    ("mysql://alice:S3cretPass@127.0.0.1/db", ("S3cretPass",)),  # missing driver
]


@pytest.mark.slow
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
  with pytest.raises(sweep_errors.SweepError) as e:
    sweep_storage.open_storage(url)
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
    (("lr=0.05,0.1",), ("dev_fraction=0",), "development split"),
])
def test_sweep_bad_settings_fail_before_any_trial(tmp_path, text_file, params, fixed,
                                                  message):
  params = tuple(map(space.Param.parse, params))
  fixed = tuple(sorted(f for f in map(space.parse_fixed, SWEEP_TINY[1::2] + fixed)
                       if f[0] not in [p.name for p in params]))
  spec = sweep.Sweep(str(tmp_path / "bad"), space.Space(params, fixed),
                     sweep.Budget(steps=2), sampler="random", data=str(text_file))
  with pytest.raises(space.SpaceError, match=message) as e:
    sweep_workers.run(spec, out=lambda line: None)
  assert "\n" not in str(e.value)
  assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_sweep_bad_setting_exits_2_in_one_line(tmp_path, text_file):
  r = subprocess.run(sweep_command(tmp_path / "bad", text_file, "--param", "lr=0.05,0.1",
                                   "--set", "dropout=2"),
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
  assert "dropout must be" in r.stderr and "2" in r.stderr and not r.stdout
  assert not (tmp_path / "bad").exists()


def test_sweep_all_trials_failed_exits_nonzero(tmp_path, text_file, monkeypatch, capsys):
  def diverge(*args, **kwargs):
    raise loop.TrainingError("the loss became NaN/Inf at iter 1")
  monkeypatch.setattr(charlm, "train_and_evaluate", diverge)
  workdir = tmp_path / "failing"
  argv = sweep_command(workdir, text_file, "--param", "lr=0.05,0.1", "--sampler", "grid")[2:]
  assert run_main(argv) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "all 2 trials failed" in err and "NaN/Inf" in err
  assert len((workdir / "results.csv").read_text().splitlines()) == 3
