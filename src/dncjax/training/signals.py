"""Stopping on Ctrl-C or SIGTERM: the first asks for a stop after the current step and a
checkpoint, a second one exits at once."""

from __future__ import annotations

import os
import signal


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
    # The handler runs between two bytecodes of the main thread, which may be inside a
    # write to sys.stderr or to the run's log.txt: writing through those buffered
    # streams again would raise "reentrant call". The notices go to file descriptor 2.
    if self.requested:
      _notice("\naborted without saving\n")
      os._exit(128 + signum)  # pylint: disable=protected-access
    self.signum = signum
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    _notice(f"\n{name}: stopping after this step and saving a checkpoint "
            "(press Ctrl-C again to abort without saving)\n")

  def __exit__(self, *exc):
    for s, handler in self._old.items():
      signal.signal(s, handler)


def _notice(text: str) -> None:
  """Writes `text` to standard error unbuffered (an os.write, safe inside a handler)."""
  try:
    os.write(2, text.encode("utf-8", "replace"))
  except OSError:  # standard error closed: the notice is lost, the stop still happens
    pass
