"""Data-parallel training (dncjax.training.parallel) on two CPU devices (tests/conftest.py forces
them): the same losses as one device, a really sharded state, checkpoints that move
between device counts, two processes with jax.distributed, and one-line errors."""

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

import dncjax
from dncjax.charlm import batches
from dncjax.training import checkpoint, optim, parallel, train

REPO = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("parallel_alice", REPO / "experiments" / "alice.py")
alice = importlib.util.module_from_spec(spec)
spec.loader.exec_module(alice)

TINY = ["--model", "lstm", "--hidden", "8", "--batchsize", "4", "--seqlength", "8",
        "--sample_length", "8", "--report_interval", "1", "--eval_every", "3",
        "--checkpoint_every", "3", "--dropout", "0.1"]  # float32: rtol 1e-5 is float32 rounding
RTOL = 1e-5

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def two_devices():
  if jax.device_count() < 2:
    pytest.skip("needs two devices (XLA_FLAGS=--xla_force_host_platform_device_count=2 on CPU)")


def run(text_file, workdir, devices, steps, *extra):
  alice.main(["--data", str(text_file), "--workdir", str(workdir), *TINY, "--devices",
              str(devices), "--steps", str(steps), *extra])
  return workdir


@pytest.fixture(scope="module")
def assert_same_curve(bpcs):
  """assert_same_curve(a, b, key): the same steps and, to RTOL, the same values of `key`."""
  def assert_same_curve(a, b, key="train_bpc"):
    steps_a, values_a = zip(*bpcs(a, key))
    steps_b, values_b = zip(*bpcs(b, key))
    assert steps_a == steps_b
    np.testing.assert_allclose(values_a, values_b, rtol=RTOL)
  return assert_same_curve


@pytest.fixture(scope="module")
def one(text_file, tmp_path_factory):
  return run(text_file, tmp_path_factory.mktemp("one"), 1, 6)


@pytest.fixture(scope="module")
def two(text_file, tmp_path_factory):
  return run(text_file, tmp_path_factory.mktemp("two"), 2, 6)


def test_sharded_train_step_matches_one_device_and_stays_sharded(tmp_path):
  model = dncjax.make_model("lstm", 20, 20, hidden=8)
  opt = optim.make(optim.OptimizerConfig("adagrad"))
  step = train.make_train_step(model, opt, dropout=0.1)
  batcher = batches.lane_batcher(np.arange(400) % 20, 4, 8)
  mesh = parallel.make_mesh(2, 4)
  single = train.init_train_state(model, opt, jax.random.key(0), 4)
  sharded = parallel.shard_train_state(single, mesh)
  lanes = batcher.init(0)
  for _ in range(5):
    lanes, batch = batcher.next(lanes)
    single, m1 = step(single, batch)
    sharded, m2 = step(sharded, parallel.shard_batch(batch, mesh))
    np.testing.assert_allclose(m2["loss"], m1["loss"], rtol=RTOL)
  compiled = step._cache_size()
  for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):  # float32 rounding
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * np.abs(b).max())  # of the leaf
  for leaf in jax.tree.leaves(sharded.model_state):  # lanes split: 2 of 4 on each device
    assert leaf.sharding.spec == PartitionSpec("data") and len(leaf.sharding.device_set) == 2
    assert {s.data.shape[0] for s in leaf.addressable_shards} == {2}
  for leaf in jax.tree.leaves((sharded.params, sharded.opt_state, sharded.key)):
    assert leaf.is_fully_replicated and len(leaf.sharding.device_set) == 2
  # a checkpoint of the sharded state restores on one device and back onto the mesh
  ckpts = checkpoint.Checkpoints(tmp_path / "c")
  ckpts.save(5, {"train": sharded}, {})
  ckpts.wait()
  fresh = train.init_train_state(model, opt, jax.random.key(1), 4)
  on_one = ckpts.restore_state(5, {"train": fresh})["train"]
  on_two = ckpts.restore_state(5, {"train": parallel.shard_train_state(fresh, mesh)})["train"]
  ckpts.close()
  for a, b, c in zip(jax.tree.leaves(on_one), jax.tree.leaves(on_two), jax.tree.leaves(sharded)):
    assert len(a.sharding.device_set) == 1 and b.sharding == c.sharding
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, c)
  lanes, batch = batcher.next(lanes)
  step(on_two, parallel.shard_batch(batch, mesh))
  assert step._cache_size() == compiled  # the restored state needs no new compilation


def test_two_devices_train_as_one(one, two, assert_same_curve):
  assert_same_curve(one, two)
  assert_same_curve(one, two, "dev_bpc")
  r1, r2 = (json.loads((w / "results.json").read_text()) for w in (one, two))
  assert r1["step"] == r2["step"] == 6 and r1["best_step"] == r2["best_step"]
  for key in ("dynamic_dev_bpc", "tail_bpc", "dynamic_tail_bpc"):
    assert r2[key] == pytest.approx(r1[key], rel=RTOL)
  assert (two / "samples.txt").read_text().count("---- iter 6") == 1
  assert checkpoint.Checkpoints(two / "checkpoints", create=False).all_steps() == [3, 6]


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_checkpoint_moves_between_device_counts(text_file, one, two, tmp_path, first, then,
                                                bpcs, assert_same_curve):
  run(text_file, tmp_path, first, 3)
  run(text_file, tmp_path, then, 6, "--resume")
  assert [s for s, _ in bpcs(tmp_path, "train_bpc")] == list(range(1, 7))
  assert_same_curve(tmp_path, one)
  assert_same_curve(tmp_path, two)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_resume_a_one_device_run(text_file, one, tmp_path, bpcs,
                                                assert_same_curve):
  """Two local processes (one CPU device each, gloo collectives) pick up a one-device
  checkpoint at iter 3 and finish the run; process 0 alone writes the run's files."""
  run(text_file, tmp_path, 1, 3)
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
         "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1"}  # x64 as here: it changes dropout
  cmd = [sys.executable, "experiments/alice.py", "--data", str(text_file), "--workdir",
         str(tmp_path), *TINY, "--steps", "6", "--resume", "--coordinator",
         f"127.0.0.1:{_free_port()}", "--num_processes", "2"]
  procs = [subprocess.Popen(cmd + ["--process_id", str(i)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in (0, 1)]
  try:
    outputs = [p.communicate(timeout=600)[0] for p in procs]
  finally:
    for p in procs:  # jax.distributed catches SIGTERM: kill
      if p.poll() is None:
        p.kill()
  assert [p.returncode for p in procs] == [0, 0], outputs
  assert "data parallel: 2 lanes on each of 2 devices (2 process(es))" in outputs[0]
  assert "iter" not in outputs[1]
  assert [s for s, _ in bpcs(tmp_path, "train_bpc")] == list(range(1, 7))
  assert_same_curve(tmp_path, one)
  assert_same_curve(tmp_path, one, "dev_bpc")
  assert (tmp_path / "samples.txt").read_text().count("---- iter 6") == 1
  assert checkpoint.Checkpoints(tmp_path / "checkpoints", create=False).latest_step() == 6


BAD = [  # (flags, words of the error, resume the finished two-device run?)
    (["--devices", "3"], ["only 2 device(s)", "jax.device_count() = 2",
                          "XLA_FLAGS=--xla_force_host_platform_device_count=N"], False),
    (["--devices", "3"], ["only 2 device(s)"], True),
    (["--devices", "2", "--batchsize", "3"], ["batch size 3 is not divisible by 2"], False),
    (["--devices", "0"], ["positive integer or 'all'"], True),
    (["--coordinator", "127.0.0.1:1234"], ["all three of --coordinator"], True),
    (["--num_processes", "2", "--process_id", "0"], ["all three of --coordinator"], False),
]


@pytest.mark.parametrize("flags, words, resume", BAD)
def test_bad_device_flags_are_one_line_and_leave_checkpoints_alone(text_file, two, tmp_path,
                                                                  flags, words, resume,
                                                                  folder_digest):
  workdir = two if resume else tmp_path / "fresh"
  before = folder_digest(two)
  proc = subprocess.run(
      [sys.executable, "experiments/alice.py", "--data", str(text_file), "--workdir",
       str(workdir), *TINY, "--steps", "9", *(["--resume"] if resume else []), *flags],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
  assert proc.stderr.startswith("error: ") and all(w in proc.stderr for w in words), proc.stderr
  assert folder_digest(two) == before
  assert not (tmp_path / "fresh").exists()
