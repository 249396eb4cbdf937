"""The user cache folder, and JAX's persistent compilation cache in it.

A run compiles its training step, its evaluation and its initialisation; on a loaded CPU
that is tens of seconds before the first iteration. JAX can keep compiled programs on
disk and load them in a later process that compiles the same program (same model,
shapes, JAX version and machine), so a second run of a config starts at once.

  user cache    $XDG_CACHE_HOME/dncjax, or ~/.cache/dncjax (also where the corpus goes)
  compile cache $DNCJAX_CACHE_DIR if set, else <user cache>/jax
  off           DNCJAX_COMPILE_CACHE=0 (or off, false, no)

`enable()` switches it on once per process; the run skeleton and populations call it
before they build anything. Nothing here imports JAX until `enable` runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from dncjax.folders import user_cache

DIR_VARIABLE = "DNCJAX_CACHE_DIR"
SWITCH_VARIABLE = "DNCJAX_COMPILE_CACHE"
_OFF = ("0", "off", "false", "no")
_enabled: list[Path | None] = []  # what `enable` chose, once it has run in this process


def cache_dir() -> Path | None:
  """Where compiled programs are kept, or None when DNCJAX_COMPILE_CACHE turns it off."""
  if os.environ.get(SWITCH_VARIABLE, "").strip().lower() in _OFF:
    return None
  given = os.environ.get(DIR_VARIABLE)
  return Path(given).expanduser() if given else user_cache() / "jax"


def enable(out=print) -> Path | None:
  """Points JAX's persistent compilation cache at `cache_dir()` (every program, however
  small or quick to compile, is kept) and says where, once per process; returns the folder
  (None: off). A folder that cannot be created leaves the cache off, with a warning."""
  if _enabled:
    return _enabled[0]
  import jax  # pylint: disable=import-outside-toplevel
  folder = cache_dir()
  if folder is not None:
    try:
      folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      out(f"warning: no compilation cache ({e.strerror}: {folder})")
      folder = None
  if folder is None:
    _enabled.append(None)
    return None
  jax.config.update("jax_compilation_cache_dir", str(folder))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  _enabled.append(folder)
  out(f"compilation cache: {folder} ({SWITCH_VARIABLE}=0 turns it off)")
  return folder
