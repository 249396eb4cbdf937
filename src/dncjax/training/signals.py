"""Stopping on Ctrl-C or SIGTERM: the first asks for a stop after the current step and a
checkpoint, a second one exits at once."""

from __future__ import annotations

import os
import signal
import sys


class Interrupted(KeyboardInterrupt):
  """A run stopped by a signal after saving; `exit_code` is 128 + the signal number
  (130 for Ctrl-C, 143 for SIGTERM), as shells report a process killed by it."""

  def __init__(self, signum: int = signal.SIGINT):
    super().__init__(signal.Signals(signum).name)
    self.exit_code = 128 + int(signum)


class StopSignals:
  """The first Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step
  and save; a second one exits at once (status 128 + signal) without saving. orbax
  writes each checkpoint into a temporary folder and renames it when complete, so the
  latest complete checkpoint survives an abort."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signum: int | None = None

  @property
  def requested(self) -> bool:
    """Whether a first signal has asked the loop to stop."""
    return self.signum is not None

  def __enter__(self):
    self._old = {s: signal.getsignal(s) for s in self.SIGNALS}
    for s in self.SIGNALS:
      signal.signal(s, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.requested:
      print("\naborted without saving", file=sys.stderr, flush=True)
      os._exit(128 + signum)  # pylint: disable=protected-access
    self.signum = signum
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    print(f"\n{name}: stopping after this step and saving a checkpoint "
          "(press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

  def __exit__(self, *exc):
    for s, handler in self._old.items():
      signal.signal(s, handler)
