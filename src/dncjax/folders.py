"""The user cache folder: where the corpus, compiled programs and built kernels are kept.

  $XDG_CACHE_HOME/dncjax, or ~/.cache/dncjax

Nothing here imports JAX.
"""

from __future__ import annotations

import os
from pathlib import Path


def user_cache() -> Path:
  """$XDG_CACHE_HOME/dncjax, or ~/.cache/dncjax."""
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base) / "dncjax"
