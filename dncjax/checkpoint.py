"""Checkpoints on disk with orbax's CheckpointManager (current `args=` API).

A checkpoint is a step folder holding two items:
  state  the arrays (params, optimiser state, recurrent state, RNG key), StandardSave
  meta   JSON: the full config, vocabulary, data pointers and RNG state, elapsed time ...
orbax writes each step into a temporary folder and renames it when complete, so a
process killed while saving leaves the previous step as the latest restorable one.
Restoring reads `meta` first, so the caller can rebuild the model and optimiser from the
saved config and hand `restore_state` a template of the right structure. Arrays are
stored whole, however they were sharded, so a run saved on N devices restores on M. In a
multi-host run every process calls save and restore on the same (shared) folder; orbax
coordinates them and writes each shard once.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint that is missing, unreadable or does not fit: one-line message."""


class Checkpoints:
  """The numbered checkpoints of one folder (e.g. workdir/checkpoints)."""

  def __init__(self, directory: str | pathlib.Path, keep: int | None = 3, create: bool = True):
    self.directory = pathlib.Path(directory).absolute()
    if not create and not self.directory.is_dir():
      raise CheckpointError(f"no checkpoint folder at {self.directory}")
    # on several hosts, two managers saving the same step at once (a run's latest and
    # best checkpoints) would share orbax's barrier names: prefix them with the folder
    multiprocessing = ocp.options.MultiprocessingOptions(
        barrier_sync_key_prefix=self.directory.name)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                           cleanup_tmp_directories=create,
                                           multiprocessing_options=multiprocessing)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Writes `step`, replacing a checkpoint of that step left by a killed run (e.g. a
    best-validation checkpoint newer than the latest one a resumed run started from)."""
    if step in self._manager.all_steps():
      self._manager.wait_until_finished()
      self._manager.delete(step)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore_meta(self, step: int | None = None) -> tuple[int, dict]:
    """(step, meta) of `step` (default: the latest)."""
    step = self._step(step)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many kinds on damaged folders
      raise CheckpointError(f"checkpoint {step} in {self.directory} is unreadable "
                            f"({type(e).__name__}: {_first_line(e)})") from None
    return step, restored.meta

  def restore_state(self, step: int, template: Any) -> Any:
    """The arrays of `step`, in the structure, shapes and dtypes of `template`; a leaf of
    `template` spread over several devices (or hosts) is restored straight into its
    sharding, whatever devices wrote it (each process reads only its own shards)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    except Exception as e:
      raise CheckpointError(f"checkpoint {step} in {self.directory} does not restore "
                            f"({type(e).__name__}: {_first_line(e)})") from None
    # on one device orbax returns committed arrays, on which jitted functions compiled
    # for fresh (uncommitted) arrays would compile again: hand back plain uncommitted ones
    return jax.tree.map(lambda got, like: got if _spread(like) else jax.device_put(np.asarray(got)),
                        restored.state, template)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def _step(self, step: int | None) -> int:
    if step is None:
      step = self.latest_step()
      if step is None:
        raise CheckpointError(f"no checkpoint in {self.directory}")
    elif step not in self.all_steps():
      raise CheckpointError(f"no checkpoint for step {step} in {self.directory}")
    return step


def _spread(leaf: Any) -> bool:
  """A jax.Array on more than one device (a sharded or replicated global array)."""
  return isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1


def holds_checkpoints(folder: pathlib.Path) -> bool:
  return folder.is_dir() and Checkpoints(folder, create=False).latest_step() is not None


def refuse_existing(*folders: pathlib.Path) -> None:
  """A fresh run must not write over a run's checkpoints: CheckpointError if any holds some."""
  for folder in folders:
    if holds_checkpoints(folder):
      raise CheckpointError(f"{folder} already holds checkpoints: pass --resume to continue "
                            f"that run, or choose another --workdir")


def open_latest(folder: pathlib.Path, is_ours, what: str) -> tuple[Checkpoints, int, dict]:
  """(checkpoints, latest step, its meta) for --resume; `is_ours(meta)` says the checkpoint
  is of the kind `what` names (e.g. 'char-LM checkpoint of format 1')."""
  if not folder.is_dir():
    raise CheckpointError(f"--resume: no checkpoint folder at {folder}")
  ckpts = Checkpoints(folder, create=False)
  step, meta = ckpts.restore_meta()
  if not is_ours(meta):
    raise CheckpointError(f"checkpoint {step} in {folder} is not a dncjax {what}")
  return ckpts, step, meta


def check_agrees(folder: pathlib.Path, pairs) -> None:
  """CheckpointError listing each (name, given, saved) of `pairs` where given != saved."""
  clashes = [f"{k}={v!r} (checkpoint: {saved!r})" for k, v, saved in pairs if v != saved]
  if clashes:
    raise CheckpointError(f"--resume: the checkpoint in {folder} was trained with another "
                          f"config: " + "; ".join(clashes))


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return text[0][:200] if text else ""


def key_to_array(key: jax.Array) -> np.ndarray:
  """A typed PRNG key as its raw uint32 data (savable as an ordinary array)."""
  return np.asarray(jax.random.key_data(key))


def array_to_key(data) -> jax.Array:
  return jax.random.wrap_key_data(np.asarray(data, np.uint32))
