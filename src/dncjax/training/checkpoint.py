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

Damage and leftovers:
  * `restore_latest` falls back from a damaged newest step (a truncated or overwritten
    file) to the newest older one that restores, and deletes nothing. A resuming run
    (`set_aside=True`) renames the damaged folder `<step>.damaged`, so that neither its
    own save of that step nor orbax's max_to_keep (which deletes in save order, the
    steps found on opening first) removes it. A step whose floats are not all finite is
    refused, never skipped (`check_finite`, from `finite.py`).
  * The temporary folders of killed saves (`<step>.orbax-checkpoint-tmp-*`) are removed
    when a folder is opened to write (`create` or `clean`, as `open_latest` does for
    --resume); opened only to read (sampling, reports), a folder is never changed.

CheckpointError and the muting of orbax's noise around failures are in
`checkpoint_errors.py`; both they and the NaN/Inf checks are importable from here.
"""

from __future__ import annotations

import contextlib
import pathlib
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from dncjax.training import checkpoint_errors as errors
from dncjax.training.checkpoint_errors import CheckpointError
from dncjax.training.finite import check_finite

__all__ = ["CheckpointError", "Checkpoints", "array_to_key", "check_agrees", "holds_checkpoints",
           "key_to_array", "open_latest", "refuse_existing"]


class Checkpoints:
  """The numbered checkpoints of one folder (e.g. workdir/checkpoints).

  `create` makes the folder; `clean` (default: `create`) removes the temporary folders
  of killed saves on opening. With neither, nothing in the folder is changed until `save`."""

  def __init__(self, directory: str | pathlib.Path, keep: int | None = 3, create: bool = True,
               clean: bool | None = None):
    self.directory = pathlib.Path(directory).absolute()
    if not create and not self.directory.is_dir():
      raise CheckpointError(f"no checkpoint folder at {self.directory}")
    clean = create if clean is None else clean
    # on several hosts, two managers saving the same step at once (a run's latest and
    # best checkpoints) would share orbax's barrier names: prefix them with the folder
    multiprocessing = ocp.options.MultiprocessingOptions(
        barrier_sync_key_prefix=self.directory.name)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                           cleanup_tmp_directories=clean,
                                           multiprocessing_options=multiprocessing)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))
    if clean:  # orbax cleans in a background thread: be done before going on
      getattr(self._manager, "_maybe_await_cleanup_tmp_directory", lambda: None)()

  def latest_step(self) -> int | None:
    """The newest saved step, or None when the folder holds none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The saved steps."""
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Writes `step`, replacing a checkpoint of that step left by a killed run (e.g. a
    best-validation checkpoint newer than the latest one a resumed run started from)."""
    with self._saving():
      if step in self._manager.all_steps():
        self._manager.wait_until_finished()
        self._manager.delete(step)
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  @contextlib.contextmanager
  def _saving(self):
    """Turns a failed (possibly background) save into one CheckpointError; a full disk
    is said plainly, and orbax's own tracebacks of it are muted."""
    errors.mute_disk_full()
    errors.mute_leftovers()
    try:
      yield
    except Exception as e:  # orbax and tensorstore raise many kinds
      if errors.DiskFull.names(e):
        raise CheckpointError(f"no space left on the device of {self.directory}: a checkpoint "
                              f"could not be written (the complete ones are kept); free some "
                              f"space, then continue with --resume") from None
      raise CheckpointError(f"saving a checkpoint in {self.directory} failed "
                            f"({errors.reason(e, self.directory)})") from None

  def restore_meta(self, step: int | None = None) -> tuple[int, dict]:
    """(step, meta) of `step` (default: the latest)."""
    step = self._step(step)
    meta, failure = errors.attempt(lambda: self._manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta, self.directory)
    if failure is None and not isinstance(meta, dict):
      failure = f"its meta is a {type(meta).__name__}, not a JSON object"
    if failure is not None:
      raise CheckpointError(f"checkpoint {step} in {self.directory} is unreadable ({failure})")
    return step, meta

  def restore_state(self, step: int, template: Any) -> Any:
    """The arrays of `step`, in the structure, shapes and dtypes of `template`; a leaf of
    `template` spread over several devices (or hosts) is restored straight into its
    sharding, whatever devices wrote it (each process reads only its own shards).
    CheckpointError if a float in them is NaN or Inf (`check_finite`)."""
    state = self._read_state(step, template)
    check_finite(state, f"checkpoint {step} in {self.directory}")
    return state

  def restore_latest(self, template: Any, is_ours: Callable[[dict], bool] | None = None,
                     what: str = "checkpoint", say: Callable[[str], Any] = print,
                     set_aside: bool = False) -> tuple[int, dict, Any]:
    """(step, meta, state) of the newest step whose meta and state both restore; the
    steps above it that do not are named on one line through `say`, and left on disk.
    `template` is the state's template, or a function of the step's meta giving it;
    `is_ours(meta)` says the checkpoint is of the kind `what` names (see `open_latest`).
    CheckpointError if no step restores, if a meta is not ours or if the chosen state
    holds NaN or Inf (a diverged run is refused, not skipped). With `set_aside` (a run
    about to write here) each damaged step folder is renamed `<step>.damaged`, out of
    the way of the run's own saves and of max_to_keep, and kept."""
    damaged = []
    for step, meta in self._metas(is_ours, what, damaged):
      like = template(meta) if callable(template) else template
      try:
        state = self._read_state(step, like)
      except CheckpointError as e:
        damaged.append((step, str(e)))
        continue
      check_finite(state, f"checkpoint {step} in {self.directory}")
      if damaged:
        kept = "kept"
        if set_aside:
          aside = [self._set_aside(bad) for bad, _ in damaged]
          kept = f"kept as {', '.join(p.name for p in aside)}"
        say(f"{_damage(damaged, self.directory)}: using step {step} (the damaged "
            f"folder{'s are' if len(damaged) > 1 else ' is'} {kept})")
      return step, meta, state
    if not damaged:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    raise CheckpointError(f"no checkpoint in {self.directory} restores: "
                          f"{_damage(damaged, self.directory)}")

  def _metas(self, is_ours, what: str, damaged: list):
    """(step, meta) of each step whose meta reads, newest first; the others are added to
    `damaged` as (step, why); CheckpointError at a meta that `is_ours` refuses."""
    for step in sorted(self.all_steps(), reverse=True):
      try:
        _, meta = self.restore_meta(step)
      except CheckpointError as e:
        damaged.append((step, str(e)))
        continue
      if is_ours is not None and not is_ours(meta):
        raise CheckpointError(_refusal(self.directory, step, meta, what))
      yield step, meta

  def _set_aside(self, step: int) -> pathlib.Path:
    """Renames the folder of `step` to a free `<step>.damaged[.k]`; returns the new path."""
    target, k = self.directory / f"{step}.damaged", 1
    while target.exists():
      target, k = self.directory / f"{step}.damaged.{k}", k + 1
    (self.directory / str(step)).rename(target)
    self._manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until background saves finish; a failed one is a CheckpointError."""
    with self._saving():
      self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for background saves (as `wait`), then closes the manager."""
    with self._saving():
      self._manager.wait_until_finished()
    self._manager.close()

  def _read_state(self, step: int, template: Any) -> Any:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    restored, failure = errors.attempt(lambda: self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))), self.directory)
    if failure is not None:
      raise CheckpointError(f"checkpoint {step} in {self.directory} does not restore ({failure})")
    # on one device orbax returns committed arrays, on which jitted functions compiled
    # for fresh (uncommitted) arrays would compile again: hand back plain uncommitted ones
    return jax.tree.map(lambda got, like: got if _spread(like) else jax.device_put(np.asarray(got)),
                        restored.state, template)

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
  """Whether `folder` is a checkpoint folder holding at least one step."""
  return folder.is_dir() and Checkpoints(folder, create=False).latest_step() is not None


def refuse_existing(*folders: pathlib.Path) -> None:
  """A fresh run must not write over a run's checkpoints: CheckpointError if any holds some."""
  for folder in folders:
    if holds_checkpoints(folder):
      raise CheckpointError(f"{folder} already holds checkpoints: pass --resume to continue "
                            f"that run, or choose another --workdir")


def open_latest(folder: pathlib.Path, is_ours, what: str) -> tuple[Checkpoints, int, dict]:
  """(checkpoints, newest step whose meta reads, its meta) for --resume, the folder
  cleaned of the temporary folders of killed saves; `is_ours(meta)` says the checkpoint
  is of the kind `what` names (e.g. 'char-LM checkpoint of format 1'). A step whose meta
  does not read is passed over here and named by `Checkpoints.restore_latest`."""
  if not folder.is_dir():
    raise CheckpointError(f"--resume: no checkpoint folder at {folder} (nothing to resume: "
                          f"leave out --resume to start a run there)")
  ckpts = Checkpoints(folder, create=False, clean=True)
  damaged = []
  for step, meta in ckpts._metas(is_ours, what, damaged):  # pylint: disable=protected-access
    return ckpts, step, meta
  if not damaged:
    raise CheckpointError(f"no checkpoint in {ckpts.directory}")
  raise CheckpointError(f"no checkpoint in {ckpts.directory} can be read: "
                        f"{_damage(damaged, ckpts.directory)}")


def _refusal(folder: pathlib.Path, step: int, meta: dict, what: str) -> str:
  found = (f"its format is {meta['format']!r}" if "format" in meta
           else "it names no format")
  return f"checkpoint {step} in {folder} is not a dncjax {what} ({found})"


def check_agrees(folder: pathlib.Path, pairs) -> None:
  """CheckpointError listing each (name, given, saved) of `pairs` where given != saved."""
  clashes = [f"{k}={v!r} (checkpoint: {saved!r})" for k, v, saved in pairs if v != saved]
  if clashes:
    raise CheckpointError(f"--resume: the checkpoint in {folder} was trained with another "
                          f"config: " + "; ".join(clashes))


def _damage(damaged: list[tuple[int, str]], folder: pathlib.Path) -> str:
  """'checkpoint 12 in X is damaged: it does not restore (why)', or for several
  'checkpoints 12, 10 in X are damaged: 12 is unreadable (why)'."""
  steps = ", ".join(str(step) for step, _ in damaged)
  step, message = damaged[0]
  why = message.split(f" in {folder} ", 1)[-1]  # 'is unreadable (...)' / 'does not restore (...)'
  if len(damaged) == 1:
    return f"checkpoint {step} in {folder} is damaged: it {why}"
  return f"checkpoints {steps} in {folder} are damaged: {step} {why}"


def key_to_array(key: jax.Array) -> np.ndarray:
  """A typed PRNG key as its raw uint32 data (savable as an ordinary array)."""
  return np.asarray(jax.random.key_data(key))


def array_to_key(data) -> jax.Array:
  """Inverse of `key_to_array`: the typed PRNG key of raw uint32 key data."""
  return jax.random.wrap_key_data(np.asarray(data, np.uint32))
