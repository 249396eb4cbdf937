"""experiments/alice.py end to end on tiny settings: exact resume, SIGKILL while saving,
NaN stop, sampling, and one-line errors that leave existing checkpoints untouched."""

import csv
import importlib.util
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from dncjax.charlm import data, evaluate, job as charlm, restore
from dncjax.training import checkpoint, loop, train

REPO = pathlib.Path(__file__).resolve().parents[2]

TINY = ["--model", "seed_dnc", "--hidden", "8", "--memory_size", "4", "--word_size", "4",
        "--batchsize", "2", "--seqlength", "8", "--sample_length", "16", "--report_interval", "1",
        "--eval_every", "3", "--no-dynamic_eval", "--fp64", "--dropout", "0.1",
        "--weight_drop", "0.2"]


def _load(name):
  spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


alice, sample, dynamic_eval = _load("alice"), _load("sample"), _load("dynamic_eval")


def run(text_file, workdir, *extra):
  return alice.main(["--data", str(text_file), "--workdir", str(workdir), *TINY, *extra])


@pytest.fixture(scope="module")
def straight(text_file, tmp_path_factory):
  """8 iterations in one go (float64), checkpoints every 4."""
  workdir = tmp_path_factory.mktemp("straight")
  run(text_file, workdir, "--steps", "8", "--checkpoint_every", "4")
  return workdir


@pytest.mark.slow
def test_resume_continues_exactly(text_file, straight, tmp_path, bpcs):
  run(text_file, tmp_path, "--steps", "4", "--checkpoint_every", "4")
  assert checkpoint.Checkpoints(tmp_path / "checkpoints", create=False).latest_step() == 4
  run(text_file, tmp_path, "--steps", "8", "--resume")
  assert bpcs(tmp_path, "train_bpc") == bpcs(straight, "train_bpc")  # identical in float64
  assert [s for s, _ in bpcs(tmp_path, "train_bpc")] == list(range(1, 9))
  resumed = dict(bpcs(tmp_path, "dev_bpc"))  # (+ the evaluation that ended the first leg)
  assert {s: resumed[s] for s, _ in bpcs(straight, "dev_bpc")} == dict(bpcs(straight, "dev_bpc"))
  a = restore.restore_for_sampling(straight)[1]
  b = restore.restore_for_sampling(tmp_path)[1]
  assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_the_average_is_evaluated_kept_in_best_and_resumed(text_file, tmp_path, bpcs):
  one, two = tmp_path / "one", tmp_path / "two"
  run(text_file, one, "--steps", "6", "--average", "0.7", "--score_tail")
  run(text_file, two, "--steps", "3", "--average", "0.7", "--no-score_tail")
  run(text_file, two, "--steps", "6", "--resume")  # --average 0.7 from the checkpoint
  assert bpcs(two, "train_bpc") == bpcs(one, "train_bpc")
  assert dict(bpcs(two, "dev_bpc")) == dict(bpcs(one, "dev_bpc"))
  config, model, ts, vocab, meta = restore.restore_trained(one)  # the latest, iter 6
  static_eval = evaluate.make_static_eval(model)
  corpus = data.load(config.data)
  dev = evaluate.stack_validation(corpus.dev_ids, config.data.seq_length, 1)
  assert config.average == 0.7 and ts.params is ts.opt_state[1].average
  average_bpc = evaluate.static_bpc(static_eval, ts.params, dev)
  assert dict(bpcs(one, "dev_bpc"))[6] == average_bpc
  _, optimizer = charlm.build_model(config, vocab.size)
  template = {"train": train.init_train_state(model, optimizer, jax.random.key(0), 2),
              "rng": checkpoint.key_to_array(jax.random.key(0))}
  ckpts = checkpoint.Checkpoints(one / "checkpoints", create=False)
  raw = ckpts.restore_state(6, template)["train"].params  # the iterate p_6 itself
  ckpts.close()
  assert abs(evaluate.static_bpc(static_eval, raw, dev) - average_bpc) > 1e-6
  results = json.loads((one / "results.json").read_text())
  best = restore.restore_for_sampling(one, best=True)[1]
  assert results["dev_bpc"] == pytest.approx(evaluate.static_bpc(static_eval, best, dev),
                                             abs=1e-12)  # best/ holds what was evaluated
  assert results["best_dev_bpc"] == min(dict(bpcs(one, "dev_bpc")).values())


@pytest.mark.slow
def test_run_writes_its_outputs(straight, bpcs):
  names = {p.name for p in straight.iterdir()}
  assert {"checkpoints", "best", "metrics.jsonl", "samples.txt", "metrics.png", "results.json",
          "config.json"} <= names
  results = json.loads((straight / "results.json").read_text())
  assert results["step"] == 8 and results["stopped_by"] == "steps"
  best_step, best_bpc = min(bpcs(straight, "dev_bpc"), key=lambda r: r[1])
  assert results["best_step"] == best_step and results["best_dev_bpc"] == best_bpc
  assert (results["scored_step"], results["scored_checkpoint"]) == (best_step, "best/")
  assert results["dev_bpc"] == pytest.approx(best_bpc, abs=1e-12)  # the state scored is best/'s
  assert np.isfinite(results["tail_bpc"]) and "dynamic_tail_bpc" not in results
  assert checkpoint.Checkpoints(straight / "best", create=False).latest_step() == best_step
  assert (straight / "metrics.png").read_bytes()[:4] == b"\x89PNG"
  assert "---- iter 3" in (straight / "samples.txt").read_text()


@pytest.mark.slow
def test_sample_script_restores_and_generates(straight, capsys):
  assert sample.main(["--workdir", str(straight), "--length", "40", "--prime", "Al"]) == 0
  text = capsys.readouterr().out.rstrip("\n")
  assert text.startswith("Al") and len(text) == 42


@pytest.mark.slow
def test_dynamic_evaluation_scores_before_learning(text_file, tmp_path):
  adagrad = ("--dynamic_rule", "adagrad", "--dynamic_seq_length", "none")  # training's windows
  run(text_file, tmp_path, "--steps", "3", "--dynamic_eval", "--dynamic_lr", "1e-12", *adagrad)
  results = json.loads((tmp_path / "results.json").read_text())
  # a vanishing learning rate changes nothing: dynamic == static evaluation, on either split
  for split in ("dev", "tail"):
    assert results[f"dynamic_{split}_bpc"] == pytest.approx(results[f"{split}_bpc"], rel=1e-9)
  run(text_file, tmp_path / "adapt", "--steps", "3", "--dynamic_eval", "--dynamic_lr", "0.5",
      *adagrad)
  adapted = json.loads((tmp_path / "adapt" / "results.json").read_text())
  for split in ("dev", "tail"):
    assert adapted[f"dynamic_{split}_bpc"] < results[f"dynamic_{split}_bpc"]


@pytest.mark.slow
def test_dynamic_eval_script_grid(straight, capsys, tmp_path, folder_digest):
  before = folder_digest(straight)
  table = tmp_path / "grid.csv"
  assert dynamic_eval.main(["--workdir", str(straight), "--best", "--rule", "adagrad", "rms",
                            "--lr", "1e-12", "0.05", "--decay", "0.5", "--seq_length", "8", "4",
                            "--csv", str(table)]) == 0
  out = capsys.readouterr().out
  static = float(re.search(r"static dev ([0-9.]+) BPC", out).group(1))
  results = json.loads((straight / "results.json").read_text())
  assert static == pytest.approx(results["best_dev_bpc"], abs=1e-6)  # restored == trained
  rows = list(csv.DictReader(table.open()))
  assert len(rows) == 8  # 2 windows x (adagrad x 2 rates + rms x 2 rates x 1 decay)
  bpc = [float(r["dynamic_dev_bpc"]) for r in rows]
  assert bpc == sorted(bpc)
  statics = {r["seq_length"]: float(r["static_dev_bpc"]) for r in rows}
  assert statics["8"] == pytest.approx(static, abs=1e-6)  # the training window
  assert statics["4"] != statics["8"]  # seed_dnc truncates its memory at window ends
  for r in rows:  # a vanishing rate learns nothing: each window scored as statically
    if float(r["lr"]) == 1e-12:
      assert float(r["dynamic_dev_bpc"]) == pytest.approx(statics[r["seq_length"]], rel=1e-9)
  assert min(bpc) < min(statics.values())  # and learning from the text it reads helps
  # then the tail, once, with the setting best on the development split
  best = rows[0]
  shown = re.search(r"best on the development split: (\w+), S (\d+), lr ([0-9.e-]+)", out)
  assert shown.groups() == (best["rule"], best["seq_length"], f"{float(best['lr']):.4g}")
  tail = re.search(r"tail \(scored once\): static ([0-9.]+) BPC, dynamic ([0-9.]+) BPC", out)
  assert float(tail.group(1)) == pytest.approx(results["tail_bpc"], abs=1e-6)
  config, model, ts, _, _ = restore.restore_trained(straight, best=True)
  corpus = data.load(config.data)
  expected = evaluate.dynamic_bpc(model, config, corpus.tail_ids(), corpus.train_ids,
                                  ts.params, ts.opt_state, best["rule"], float(best["lr"]),
                                  float(best["decay"]), int(best["seq_length"]),
                                  eps=float(best["eps"]))
  assert float(tail.group(2)) == pytest.approx(expected, abs=1e-6)
  assert folder_digest(straight) == before


@pytest.mark.slow
@pytest.mark.parametrize("flags, message", [
    (["--lr", "0"], "--lr must be positive"),
    (["--decay", "-1"], "--decay must be >= 0"),
    (["--eps", "0"], "--eps must be positive"),
    (["--rule", "sgd"], "invalid choice"),
    (["--workdir", "{tmp}/none"], "no checkpoint folder")])
def test_dynamic_eval_script_errors(straight, tmp_path, flags, message):
  flags = [f.format(tmp=tmp_path) for f in flags]
  proc = subprocess.run([sys.executable, "experiments/dynamic_eval.py", "--workdir",
                         str(straight), *flags], cwd=REPO, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode != 0 and proc.stderr.count("\n") == 1, proc.stderr
  assert message in proc.stderr and "Traceback" not in proc.stderr


BAD = [  # (flags, message, resume into the finished run?)
    (["--data", "{tmp}/missing.txt"], "no such file", False),
    (["--data", "{empty}"], "empty", False),
    (["--data", "{binary}"], "not UTF-8", False),
    (["--data", "{short}"], "fewer than", False),
    (["--hidden", "0"], "hidden must be a positive integer", False),
    (["--batchsize", "-2"], "must be positive", False),
    (["--prime", "Ω"], "not in the vocabulary", False),
    (["--temperature", "0"], "temperature must be positive", False),
    (["--average", "1"], "--average must be in [0, 1), got 1.0", False),
    (["--average", "0.9"], "another config", True),
    (["--dynamic_eval", "--dynamic_seq_length", "5000"], "fewer than the 5001", False),
    (["--model", "rnn", "--memory_size", "3"], "--memory_size does not apply to model 'rnn'",
     False),
    (["--data", "{missing}"], "no such file", True),
    (["--hidden", "16"], "another config", True),
    (["--data", "{other}"], "vocabulary", True),
    (["--prime", "Ω"], "not in the vocabulary", True),
    ([], "already holds checkpoints", None),
]


@pytest.mark.slow
@pytest.mark.parametrize("flags, message, resume", BAD)
def test_bad_input_is_one_line_and_leaves_checkpoints_alone(text_file, straight, tmp_path,
                                                           flags, message, resume,
                                                           folder_digest):
  (tmp_path / "empty.txt").write_text("")
  (tmp_path / "binary.txt").write_bytes(b"Alice \xff\xfe was")
  (tmp_path / "short.txt").write_text("Alice")
  (tmp_path / "other.txt").write_text(text_file.read_text()[:3000] + "~" * 500)
  paths = dict(tmp=tmp_path, empty=tmp_path / "empty.txt", binary=tmp_path / "binary.txt",
               short=tmp_path / "short.txt", other=tmp_path / "other.txt",
               missing=tmp_path / "missing.txt")
  flags = [f.format(**paths) for f in flags]
  workdir = straight if resume is not False else tmp_path / "fresh"
  before = folder_digest(straight)
  argv = ["--workdir", str(workdir), *TINY, "--steps", "9"] + (["--resume"] if resume else [])
  if "--data" not in flags:
    argv += ["--data", str(text_file)]
  with pytest.raises((ValueError, OSError) + charlm.error_types()) as info:
    alice.main(argv + flags)
  assert message.lower() in str(info.value).lower() and "\n" not in str(info.value)
  assert folder_digest(straight) == before
  assert not (tmp_path / "fresh" / "checkpoints").exists()


@pytest.mark.slow
def test_resume_without_checkpoint_and_corrupt_checkpoint(text_file, straight, tmp_path,
                                                           folder_digest):
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
    run(text_file, tmp_path / "fresh", "--resume", "--steps", "2")
  broken = tmp_path / "broken"
  (broken / "checkpoints").mkdir(parents=True)
  os.system(f"cp -r {straight}/checkpoints/8 {broken}/checkpoints/8")
  for f in (broken / "checkpoints" / "8" / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(b"\0" * 7)
  before = folder_digest(broken)
  with pytest.raises(checkpoint.CheckpointError, match="checkpoint 8"):
    run(text_file, broken, "--resume", "--steps", "9")
  assert folder_digest(broken) == before


def test_cli_errors_exit_nonzero_with_one_line(tmp_path):
  proc = subprocess.run([sys.executable, "experiments/alice.py", "--data", str(tmp_path / "nope"),
                         "--workdir", str(tmp_path / "w")], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
  assert "nope" in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(text_file, tmp_path):
  with pytest.raises(loop.TrainingError, match="NaN"):
    alice.main(["--data", str(text_file), "--workdir", str(tmp_path), "--model", "rnn",
                "--hidden", "8", "--batchsize", "2", "--seqlength", "8", "--lr", "3e38",
                "--steps", "20", "--checkpoint_every", "1", "--sample_length", "0"])
  ckpts = checkpoint.Checkpoints(tmp_path / "checkpoints", create=False)
  step, meta = ckpts.restore_meta()
  assert 0 < step < 20 and meta["step"] == step


def _steps_on_disk(folder):
  """(complete steps, steps being saved) in a checkpoint folder: orbax writes a step into
  `<step>.orbax-checkpoint-tmp*` and renames it to `<step>` once complete."""
  names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
  done = {int(n) for n in names if n.isdigit()}
  saving = {int(n.split(".")[0]) for n in names
            if ".orbax-checkpoint-tmp" in n and n.split(".")[0].isdigit()}
  return done, saving


def _poll(proc, log, condition, what, deadline=300.0):
  """Waits (up to `deadline` seconds) until `condition()` holds while `proc` runs."""
  end = time.monotonic() + deadline
  while not condition():
    assert proc.poll() is None, f"alice.py ended before {what}:\n{log.read_text()}"
    assert time.monotonic() < end, f"no {what} in {deadline} s:\n{log.read_text()}"
    time.sleep(0.002)


@pytest.mark.slow
def test_sigkill_while_saving_leaves_a_restorable_checkpoint(text_file, tmp_path):
  folder = tmp_path / "checkpoints"
  cmd = [sys.executable, "experiments/alice.py", "--data", str(text_file), "--workdir",
         str(tmp_path), *TINY, "--steps", "100000", "--checkpoint_every", "1", "--keep", "2",
         "--eval_every", "0", "--sample_length", "0"]
  rng = np.random.default_rng(0)
  for attempt in range(3):
    start = max(_steps_on_disk(folder)[0], default=0)
    log = tmp_path / f"leg{attempt}.log"
    with log.open("w") as out:
      proc = subprocess.Popen(cmd + (["--resume"] if attempt else []), cwd=REPO, stdout=out,
                              stderr=subprocess.STDOUT)
    try:
      # this leg's first complete save, however late it comes
      _poll(proc, log, lambda: max(_steps_on_disk(folder)[0], default=0) > start,
            "complete checkpoint")
      # then kill it while one of its next few saves is under way
      saved = max(_steps_on_disk(folder)[0]) + int(rng.integers(0, 3))
      _poll(proc, log, lambda: max(_steps_on_disk(folder)[1], default=0) > saved,
            "later save")
    finally:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
    ckpts = checkpoint.Checkpoints(folder, create=False)
    step, _ = ckpts.restore_meta()
    _, params, _, _ = restore.restore_for_sampling(tmp_path)
    assert step > start and all(np.isfinite(v).all() for v in params.values())


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_130(text_file, tmp_path):
  proc = subprocess.Popen([sys.executable, "experiments/alice.py", "--data", str(text_file),
                           "--workdir", str(tmp_path), *TINY, "--steps", "100000",
                           "--eval_every", "0", "--sample_length", "0"], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  line = ""
  while "iter 2," not in line:
    line = proc.stdout.readline()
    assert line or proc.poll() is None, "alice.py ended before training"
  proc.send_signal(signal.SIGINT)
  output = proc.communicate(timeout=300)[0]
  assert proc.returncode == 130 and "--resume" in output
  step, meta = checkpoint.Checkpoints(tmp_path / "checkpoints", create=False).restore_meta()
  assert step >= 2 and meta["step"] == step
