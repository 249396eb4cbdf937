"""Faults a careless user or a hostile environment injects, in one place: diverging runs,
two runs in one workdir, signals at awkward moments, bad values, damaged checkpoints, a
full disk, pipes for data, and every one must end in a clear line with nothing lost."""

import hashlib
import importlib.util
import json
import math
import os
import pathlib
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from dncjax import charlm, checkpoint, loop
from tests.conftest import REPO

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


def digest(folder):
  h = hashlib.sha256()
  for path in sorted(pathlib.Path(folder).rglob("*")):
    if path.is_file():
      h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
  return h.hexdigest()


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
  return {r["step"]: r[key] for r in loop.read_metrics(workdir / "metrics.jsonl") if key in r}


# ---------------------------------------------------------------- 1. the NaN guard


def test_nan_guard_saves_only_finite_parameters(text_file, tmp_path):
  with pytest.raises(charlm.TrainingError, match="NaN") as info:
    alice_main(["--data", text_file, "--workdir", tmp_path, *DIVERGING, "--steps", "300",
                "--checkpoint_every", "1", "--eval_every", "2"])
  good = int(str(info.value).split("last good checkpoint is iter ")[1].split()[0])
  _, model, ts, _, meta = charlm.restore_trained(tmp_path)
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
    return {"val_bpc": 2.0 if step < 4 else math.nan}

  saved = []
  result = loop.run(step_fn=lambda s, b: (s, {"loss": 1.0}), state=state, next_batch=lambda: 0,
                    start_step=0, config=loop.LoopConfig(steps=10, eval_every=2,
                                                         checkpoint_every=2),
                    items_per_step=1, log=loop.MetricsLog(tmp_path / "m.jsonl"),
                    save=lambda step, s, e: saved.append(step), evaluate=evaluate,
                    print_fn=lambda line: None)
  assert result.reason == "nan" and "val_bpc" in result.detail and result.step == 4
  assert saved == [2]  # the step whose evaluation was NaN is not saved


def test_sample_refuses_nonfinite_parameters(text_file, tmp_path, capsys):
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "2"])
  ckpts = checkpoint.Checkpoints(tmp_path / "checkpoints")
  config, model, ts, vocab, meta = charlm.restore_trained(tmp_path)
  bad = ts._replace(params={k: v * np.nan for k, v in ts.params.items()})
  rng = checkpoint.key_to_array(__import__("jax").random.key(0))
  ckpts.save(3, {"train": bad, "rng": rng}, {**meta, "step": 3})
  ckpts.close()
  proc = script("sample", "--workdir", tmp_path, "--length", "5")
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
  assert "non-finite" in err and out == ""


# ---------------------------------------------------------------- 2. one run per workdir


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
  steps = [r["step"] for r in loop.read_metrics(tmp_path / "metrics.jsonl") if "train_bpc" in r]
  assert steps == sorted(set(steps))  # one writer: no duplicate records


# ---------------------------------------------------------------- 3. Ctrl-C after a checkpoint


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
  val = records(tmp_path, "val_bpc")
  assert step == 4 and 4 in val  # the stop's evaluation at the checkpointed step
  assert meta["best"] == best_meta["best"] == {"val_bpc": min(val.values()),
                                               "step": best_step}
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "8", "--resume"])
  results = json.loads((tmp_path / "results.json").read_text())
  best_step, best_meta = checkpoint.Checkpoints(tmp_path / "best", create=False).restore_meta()
  assert (results["best_step"], results["best_val_bpc"]) == (best_step,
                                                             best_meta["best"]["val_bpc"])
  assert results["best_val_bpc"] == min(records(tmp_path, "val_bpc").values())


# ---------------------------------------------------------------- 6. bad values, early


BAD_VALUES = [
    (["--dynamic_eval", "--dynamic_lr", "nan"], "--dynamic_lr"),
    (["--dynamic_eval", "--dynamic_lr", "inf"], "--dynamic_lr"),
    (["--dynamic_eval", "--dynamic_decay", "nan"], "--dynamic_decay"),
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


def test_bad_seed_is_one_line_naming_the_flag(tmp_path):
  proc = script("alice", "--workdir", tmp_path, "--seed", "-1", "--steps", "1")
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 2 and err.count("\n") == 1 and "--seed" in err, err


def test_no_validation_writes_strict_json(text_file, tmp_path):
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "2",
              "--val_fraction", "0"])
  text = (tmp_path / "results.json").read_text()
  results = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
  assert results["best_val_bpc"] is None


# ---------------------------------------------------------------- 7. faults as one line


def test_sigterm_saves_and_exits_143(text_file, tmp_path):
  proc = script("alice", "--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "100000",
                "--eval_every", "0")
  wait_for(proc, "iter 2,")
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 143 and "Traceback" not in err, err
  step, meta = checkpoint.Checkpoints(tmp_path / "checkpoints", create=False).restore_meta()
  assert step >= 2 and meta["step"] == step and "--resume" in out


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


def test_corrupt_latest_checkpoint_falls_back_and_is_kept(text_file, tmp_path, capsys):
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "8",
              "--checkpoint_every", "4", "--eval_every", "0"])
  damaged = tmp_path / "checkpoints" / "8"
  for f in (damaged / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(f.read_bytes()[:3])  # truncated chunks, as a full disk or a crash leaves
  before = digest(damaged)
  capsys.readouterr()
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "10", "--resume"])
  out = capsys.readouterr().out
  assert "checkpoint 8 in" in out and "is damaged" in out and "using step 4" in out
  assert "resumed" in out and "at iter 4" in out
  assert digest(tmp_path / "checkpoints" / "8.damaged") == before  # never deleted
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


def test_deleted_metrics_log_is_warned_about_on_resume(text_file, tmp_path, capsys):
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "2"])
  (tmp_path / "metrics.jsonl").unlink()
  capsys.readouterr()
  alice_main(["--data", text_file, "--workdir", tmp_path, *TINY, "--steps", "3", "--resume"])
  assert "metrics.jsonl is missing" in capsys.readouterr().out


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
