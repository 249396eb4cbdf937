"""Steps a model's unroll may replace while it is traced: `history.py` keeps the temporal
links of the DNC (`links.link_step`) and of the SDNC (`sparse.link_step`) in one buffer by
tracing the model's step inside `override`."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable

_local = threading.local()  # .overrides: this thread's {name: [steps, innermost last]}


def _overrides(name: str) -> list:
  if not hasattr(_local, "overrides"):
    _local.overrides = {}
  return _local.overrides.setdefault(name, [])


@contextlib.contextmanager
def override(name: str, step: Callable):
  """Within the block, in this thread, `current(name)` is `step` (at trace time: what is
  traced inside the block calls it)."""
  _overrides(name).append(step)
  try:
    yield
  finally:
    _overrides(name).pop()


def current(name: str) -> Callable | None:
  """The innermost step `override` set for `name` in this thread, or None."""
  steps = _overrides(name)
  return steps[-1] if steps else None
