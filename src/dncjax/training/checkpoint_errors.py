"""How a checkpoint's failures reach the user: as one CheckpointError line.

`reason` gives the one-line cause of an orbax or tensorstore exception and `attempt`
runs a read, turning its failure into that line. orbax's own noise around failures is
muted: the logged tracebacks of saves that found the disk full (`mute_disk_full`) and the
reports of the reads a failed restore leaves behind (`mute_leftovers`).
"""

from __future__ import annotations

import errno
import gc
import logging
import pathlib
import re
import sys
from typing import Any, Callable


class CheckpointError(RuntimeError):
  """A checkpoint that is missing, unreadable or does not fit: one-line message."""


_NOISE = re.compile(r"\s*(\[(tensorstore_spec|source locations)=|See full TensorStore details).*$")


def reason(e: BaseException, folder: pathlib.Path | None = None, limit: int = 240) -> str:
  """'Type: message' of the innermost cause of `e`, on one line: orbax's wrappers, pybind
  reprs and tensorstore specs stripped, paths inside `folder` made relative to it."""
  chain, seen = [e], {id(e)}
  while True:
    last = chain[-1]
    inner = last.__cause__ or (None if last.__suppress_context__ else last.__context__)
    if inner is None or id(inner) in seen:
      break
    chain.append(inner)
    seen.add(id(inner))
  for x in reversed(chain):
    lines = str(x).strip().splitlines()
    if lines:
      text = _NOISE.sub("", lines[0]).strip()
      if text:
        break
  else:
    x, text = e, ""
  if folder is not None:
    text = text.replace(f"{folder}/", "").replace(str(folder), ".")
  if len(text) > limit:
    text = text[:limit * 2 // 3] + " ... " + text[-(limit // 3):]
  name = type(x).__name__
  return f"{name}: {text}" if text and name != "Exception" else text or name


def attempt(read: Callable[[], Any], folder: pathlib.Path) -> tuple[Any, str | None]:
  """(read(), None), or (None, why it failed, in one line)."""
  mute_leftovers()
  try:
    return read(), None
  except Exception as e:  # orbax raises many kinds on damaged folders
    failure = reason(e, folder)
  gc.collect()  # the failed read's tasks, reported now, muted
  return None, failure


class _DropLeftovers(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    text = str(record.msg)
    return not ("exception was never retrieved" in text.split("\n", 1)[0]
                and ("tensorstore" in text or "orbax" in text))


class DiskFull(logging.Filter):
  """Drops orbax's logged tracebacks of writes that failed for want of space."""

  @staticmethod
  def names(e: BaseException | None) -> bool:
    """Whether `e` or an exception in its chain (cause or context) names a full
    disk (ENOSPC, or 'No space left')."""
    while e is not None:
      if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left" in str(e):
        return True
      e = e.__cause__ or e.__context__
    return False

  def filter(self, record: logging.LogRecord) -> bool:
    """False (drop the record) when it is about, or carries, a full disk, or is a failed
    save's thread that outlived the program (it can no longer schedule work)."""
    error = record.exc_info[1] if record.exc_info else None
    text = record.getMessage()
    return not ("No space left" in text or "after interpreter shutdown" in text
                or self.names(error))


def mute_disk_full() -> None:
  """Adds a `DiskFull` filter (once) to absl's logger, where orbax logs its failed saves,
  and to asyncio's, which reports a failed write's future whose error nobody retrieved
  ('Future exception was never retrieved') when it is collected."""
  for name in ("absl", "asyncio"):
    logger = logging.getLogger(name)
    if not any(isinstance(f, DiskFull) for f in logger.filters):
      logger.addFilter(DiskFull())


def mute_leftovers() -> None:
  """Mutes, from now on, the reports of the reads a failed orbax restore leaves behind:
  asyncio's 'exception was never retrieved' tracebacks of their tensorstore errors, and
  the 'Event loop is closed' of those that complete after their event loop ended."""
  logger = logging.getLogger("asyncio")
  if not any(isinstance(f, _DropLeftovers) for f in logger.filters):
    logger.addFilter(_DropLeftovers())
  previous = sys.unraisablehook
  if getattr(previous, "dncjax_mute", False):
    return

  def hook(unraisable):
    if not (unraisable.exc_type is RuntimeError
            and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  hook.dncjax_mute = True
  sys.unraisablehook = hook
