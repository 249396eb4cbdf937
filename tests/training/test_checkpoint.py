"""The orbax wrapper: round trip of a TrainState, replacing a step, clear errors, damaged
and non-finite checkpoints, leftovers of killed saves."""

import errno
import logging
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from orbax.checkpoint._src.path import atomicity

import dncjax
from dncjax.training import checkpoint, checkpoint_errors, optim, train


@pytest.mark.slow
def test_train_state_round_trip_and_step_replacement(tmp_path):
  model = dncjax.make_model("seed_dnc", 5, 5, hidden=4, memory_size=3, word_size=2)
  opt = optim.make(optim.OptimizerConfig("adagrad", clip_norm=1.0))
  ts = train.init_train_state(model, opt, jax.random.key(0), 2)
  ckpts = checkpoint.Checkpoints(tmp_path / "c", keep=2)
  ckpts.save(3, {"train": ts}, {"note": "first"})
  moved = ts._replace(params=jax.tree.map(lambda a: a + 1, ts.params))
  ckpts.save(3, {"train": moved}, {"note": "second"})  # a step left by a killed run
  ckpts.close()
  again = checkpoint.Checkpoints(tmp_path / "c", create=False)
  assert again.restore_meta() == (3, {"note": "second"})
  restored = again.restore_state(3, {"train": ts})["train"]
  assert jax.tree.structure(restored) == jax.tree.structure(ts)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(moved)):
    np.testing.assert_array_equal(a, b)


def test_missing_folder_and_step_are_clear_errors(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint folder"):
    checkpoint.Checkpoints(tmp_path / "none", create=False)
  ckpts = checkpoint.Checkpoints(tmp_path / "empty")
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint in"):
    ckpts.restore_meta()
  ckpts.save(1, {"x": jnp.ones(2)}, {})
  ckpts.wait()
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint for step 7"):
    ckpts.restore_meta(7)


def test_prng_key_round_trip():
  key = jax.random.key(42)
  again = checkpoint.array_to_key(checkpoint.key_to_array(key))
  assert np.array_equal(jax.random.normal(key, (3,)), jax.random.normal(again, (3,)))


def _tree(scale):
  """A small state: float leaves, an integer count and PRNG key data."""
  return {"params": {"core": {"Whh": jnp.arange(6.0).reshape(2, 3) * scale,
                              "by": jnp.full(3, scale, jnp.float32)}},
          "count": jnp.int32(scale), "rng": checkpoint.key_to_array(jax.random.key(scale))}


def _saved(folder, steps=(1, 2, 3), keep=3, nan_at=()):
  ckpts = checkpoint.Checkpoints(folder, keep=keep)
  for step in steps:
    tree = _tree(step)
    if step in nan_at:
      tree["params"]["core"]["Whh"] = tree["params"]["core"]["Whh"].at[0, 1].set(jnp.nan)
    ckpts.save(step, tree, {"format": 1, "step": step})
  ckpts.close()
  return folder


def _damage(step_folder):
  """Truncates every data file of the step's state item (orbax's OCDBT files)."""
  files = [p for p in (step_folder / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files
  for path in files:
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def _files(folder):
  return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
          for p in sorted(folder.rglob("*"))}


def _ours(meta):
  return meta.get("format") == 1


def _assert_equal_trees(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_damaged_latest_step_falls_back_and_is_kept(tmp_path, caplog):
  folder = _saved(tmp_path / "c")
  _damage(folder / "3")
  before = _files(folder)
  said = []
  ckpts = checkpoint.Checkpoints(folder, create=False)
  step, meta, state = ckpts.restore_latest(_tree(0), _ours, "test checkpoint", say=said.append)
  assert (step, meta) == (2, {"format": 1, "step": 2})
  _assert_equal_trees(state, _tree(2))
  assert len(said) == 1 and "\n" not in said[0]
  assert said[0].startswith(f"checkpoint 3 in {folder} is damaged: it does not restore (")
  assert said[0].endswith("using step 2 (the damaged folder is kept)")
  assert "pybind" not in said[0] and "tensorstore_spec" not in said[0] and len(said[0]) < 500
  assert _files(folder) == before and 3 in ckpts.all_steps()
  assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_unreadable_meta_is_passed_over_by_open_latest_and_named(tmp_path):
  folder = _saved(tmp_path / "c")
  (folder / "3" / "meta" / "metadata").write_text("{not json")
  ckpts, step, meta = checkpoint.open_latest(folder, _ours, "test checkpoint")
  assert (step, meta) == (2, {"format": 1, "step": 2})
  said = []
  step, _, state = ckpts.restore_latest(lambda m: _tree(m["step"]), _ours, say=said.append)
  assert step == 2 and said[0].startswith(f"checkpoint 3 in {folder} is damaged: it is unreadable")
  _assert_equal_trees(state, _tree(2))
  assert (folder / "3" / "meta" / "metadata").read_text() == "{not json"


@pytest.mark.slow
def test_no_step_restores_is_one_line_naming_the_steps(tmp_path):
  folder = _saved(tmp_path / "c")
  for step in (1, 2, 3):
    _damage(folder / str(step))
  with pytest.raises(checkpoint.CheckpointError) as info:
    checkpoint.Checkpoints(folder, create=False).restore_latest(_tree(0), say=print)
  message = str(info.value)
  assert message.startswith(f"no checkpoint in {folder} restores: checkpoints 3, 2, 1 in")
  assert "\n" not in message and "pybind" not in message


def test_damaged_step_until_replaced_or_dropped_by_max_to_keep(tmp_path):
  """orbax deletes in save order, the steps found on opening first: a resumed run's save
  of a lower step drops the oldest step, not the damaged newer one, and a save of the
  same step replaces it."""
  folder = _saved(tmp_path / "c", steps=(10, 20, 30))
  _damage(folder / "30")
  damaged = _files(folder / "30")
  copy = tmp_path / "copy"
  shutil.copytree(folder, copy)
  ckpts, step, _ = checkpoint.open_latest(folder, _ours, "test checkpoint")
  assert step == 30  # its meta reads: only its state is damaged
  step, _, state = ckpts.restore_latest(_tree(0), _ours, say=lambda line: None)
  assert step == 20
  ckpts.save(25, state, {"format": 1, "step": 25})
  ckpts.wait()
  assert sorted(ckpts.all_steps()) == [20, 25, 30] and _files(folder / "30") == damaged
  ckpts.save(30, _tree(30), {"format": 1, "step": 30})
  ckpts.close()
  said = []
  step, _, state = checkpoint.Checkpoints(folder, create=False).restore_latest(
      _tree(0), _ours, say=said.append)
  assert step == 30 and not said
  _assert_equal_trees(state, _tree(30))
  ckpts, _, _ = checkpoint.open_latest(copy, _ours, "test checkpoint")
  for step in (21, 22):
    ckpts.save(step, _tree(step), {"format": 1, "step": step})
    ckpts.wait()
  assert sorted(ckpts.all_steps()) == [21, 22, 30]
  ckpts.save(23, _tree(23), {"format": 1, "step": 23})
  ckpts.close()
  assert not (copy / "30").exists()


def test_open_latest_names_the_format_found(tmp_path):
  ckpts = checkpoint.Checkpoints(tmp_path / "c")
  ckpts.save(5, {"x": jnp.ones(2)}, {"format": 2, "config": {}})
  ckpts.close()
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"checkpoint 5 in .* is not a dncjax char-LM checkpoint of format 1 "
                           r"\(its format is 2\)$"):
    checkpoint.open_latest(tmp_path / "c", _ours, "char-LM checkpoint of format 1")


def _leftover_of_killed_save(folder, step, monkeypatch):
  """A save that dies before orbax renames its temporary folder, as a killed process's."""
  async def killed(*args, **kwargs):
    raise OSError("killed")
  with monkeypatch.context() as patch:
    patch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", killed)
    ckpts = checkpoint.Checkpoints(folder, create=False)
    with pytest.raises((OSError, checkpoint.CheckpointError), match="killed"):
      ckpts.save(step, _tree(step), {"format": 1, "step": step})
      ckpts.wait()
    # orbax finishes the leftover's metadata in a thread: wait for it, so that it is final
    ckpts._manager._non_blocking_metadata_store.wait_until_finished()  # pylint: disable=protected-access
  leftovers = [p.name for p in folder.iterdir() if ".orbax-checkpoint-tmp" in p.name]
  assert leftovers and leftovers[0].startswith(f"{step}.")
  return leftovers


def test_leftovers_of_killed_saves_go_on_resume_only(tmp_path, monkeypatch):
  folder = _saved(tmp_path / "c", steps=(1,))
  _leftover_of_killed_save(folder, 2, monkeypatch)
  before = _files(folder)
  assert checkpoint.holds_checkpoints(folder)
  step, _, _ = checkpoint.Checkpoints(folder, create=False).restore_latest(_tree(0))
  assert step == 1 and _files(folder) == before  # reading changes nothing
  ckpts, step, _ = checkpoint.open_latest(folder, _ours, "test checkpoint")
  assert step == 1 and sorted(p.name for p in folder.iterdir()) == ["1"]
  ckpts.close()
  _leftover_of_killed_save(folder, 2, monkeypatch)
  checkpoint.Checkpoints(folder, keep=3).close()  # orbax's own clean-up, with create=True
  assert sorted(p.name for p in folder.iterdir()) == ["1"]


def test_non_finite_checkpoint_is_refused_not_skipped(tmp_path):
  folder = _saved(tmp_path / "c", nan_at=(3,))
  ckpts = checkpoint.Checkpoints(folder, create=False)
  _assert_equal_trees(ckpts.restore_state(2, _tree(0)), _tree(2))
  pattern = (rf"^checkpoint 3 in {folder} holds non-finite values \(NaN/Inf in "
             rf"params\.core\.Whh\): it cannot be used$")
  with pytest.raises(checkpoint.CheckpointError, match=pattern):
    ckpts.restore_state(3, _tree(0))
  with pytest.raises(checkpoint.CheckpointError, match=pattern):
    ckpts.restore_latest(_tree(0), _ours)


def test_the_disk_full_filter_mutes_only_a_failed_saves_noise():
  def record(msg, *args, exc=None):
    return logging.LogRecord("absl", logging.ERROR, __file__, 1, msg, args,
                             (type(exc), exc, None) if exc else None)

  mute = checkpoint_errors.DiskFull()
  shutdown = RuntimeError("cannot schedule new futures after interpreter shutdown")
  assert not mute.filter(record("[thread=%s] _SignalingThread.run() raised an exception: %s",
                                "array_type_handler", shutdown, exc=shutdown))
  assert not mute.filter(record("write failed", exc=OSError(errno.ENOSPC, "No space left")))
  assert mute.filter(record("saved checkpoint %d", 3))
  assert mute.filter(record("raised an exception: %s", RuntimeError("bad"), exc=RuntimeError()))


def test_a_failed_writes_uncollected_future_is_muted_on_asyncios_logger():
  logger, seen = logging.getLogger("asyncio"), []

  class Keep(logging.Handler):
    def emit(self, record):
      seen.append(record.getMessage())

  keep = Keep()
  logger.addHandler(keep)
  try:
    checkpoint_errors.mute_disk_full()
    full = OSError(errno.ENOSPC, "No space left on device")
    logger.error("Future exception was never retrieved", exc_info=(OSError, full, None))
    logger.error("Future exception was never retrieved",
                 exc_info=(ValueError, ValueError("other"), None))
  finally:
    logger.removeHandler(keep)
  assert seen == ["Future exception was never retrieved"]  # only the other error's
