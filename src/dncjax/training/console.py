"""A run's console kept in its folder: <workdir>/log.txt, as a sweep trial keeps its lines.

Inside `kept(path)`, whatever is written to sys.stdout and sys.stderr still reaches the
console and is also appended to `path`, line by line, after a header naming the command
and the time. Nothing is written before `commit()`, which the run skeleton calls once the
run writes its folder (a run refused earlier, e.g. by a checkpoint it cannot resume,
leaves the folder as it was); the lines held until then go first. An exception that
ends the block is recorded as the one line `cli.run` prints for it ("error: ...",
"interrupted"). A line redrawn with carriage returns (a progress bar) is kept as it was
last drawn, an erased one not at all.
"""

from __future__ import annotations

import contextlib
import datetime
import pathlib
import shlex
import sys
import threading

_active: list["_Log"] = []  # the logs of the `kept` blocks now open, innermost last


def one_line(e: BaseException, limit: int = 300) -> str:
  """The first line of an exception's message (at most `limit` characters)."""
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  text = lines[0] if lines else type(e).__name__
  return text if len(text) <= limit else text[:limit - 3] + "..."


def ending(e: BaseException) -> str | None:
  """The line a run that `e` ended is recorded with (as the console shows it)."""
  if isinstance(e, KeyboardInterrupt):  # signals.Interrupted: 143 after SIGTERM
    return "terminated" if getattr(e, "exit_code", 130) == 143 else "interrupted"
  if isinstance(e, SystemExit):
    return None if e.code in (0, None) else f"exit status {e.code}"
  return f"error: {one_line(e)}"


class _Log:
  """The lines for `path`: held until `commit`, appended (and flushed) after it."""

  def __init__(self, path: pathlib.Path, header: str):
    self.path, self.held, self.file, self.closed = path, [header], None, False
    self.lock = threading.RLock()

  def line(self, text: str) -> None:
    with self.lock:
      if self.closed:
        return
      if self.file is None:
        self.held.append(text)
      else:
        self.file.write(text + "\n")
        self.file.flush()

  def commit(self) -> None:
    with self.lock:
      if self.file is None and not self.closed:
        self.file = open(self.path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
        for text in self.held:
          self.line(text)
        self.held = []

  def close(self) -> None:
    with self.lock:
      self.closed = True
      if self.file is not None:
        self.file.close()


class _Copy:
  """A text stream that writes to `stream` and sends each finished line to `log`; every
  other attribute (isatty, fileno, encoding) is the stream's."""

  def __init__(self, stream, log: _Log):
    self._stream, self._log, self._partial = stream, log, ""

  def write(self, text: str) -> int:
    written = self._stream.write(text)
    with self._log.lock:
      *lines, partial = (self._partial + text).split("\n")
      self._partial = partial[partial.rfind("\r", 0, len(partial) - 1) + 1:]
      for line in lines:
        self._send(line)
    return written

  def _send(self, line: str) -> None:
    shown = line.rstrip("\r").rsplit("\r", 1)[-1].rstrip()
    if shown or "\r" not in line:  # an empty line is kept, an erased one is not
      self._log.line(shown)

  def flush(self) -> None:
    self._stream.flush()

  def finish(self) -> None:
    """Sends the unfinished line, if any."""
    with self._log.lock:
      if self._partial:
        self._send(self._partial)
      self._partial = ""

  def __getattr__(self, name):
    return getattr(self._stream, name)


def header(command: list[str] | None = None) -> str:
  """`== <local time> <command> ==`, the command being this process's by default."""
  now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
  return f"== {now} {shlex.join(sys.argv if command is None else command)} =="


@contextlib.contextmanager
def kept(path: str | pathlib.Path, enabled: bool = True, command: list[str] | None = None):
  """Copies sys.stdout and sys.stderr to `path` (appending) inside the block, from its
  `commit()` on; with `enabled` False, does nothing."""
  if not enabled:
    yield
    return
  log = _Log(pathlib.Path(path), header(command))
  streams = sys.stdout, sys.stderr
  copies = _Copy(streams[0], log), _Copy(streams[1], log)
  sys.stdout, sys.stderr = copies
  _active.append(log)
  last = None
  try:
    yield
  except BaseException as e:
    last = ending(e)
    raise
  finally:
    for copy in copies:
      copy.finish()
    if sys.stdout is copies[0] and sys.stderr is copies[1]:  # unless replaced meanwhile
      sys.stdout, sys.stderr = streams
    if last is not None:
      log.line(last)
    _active.remove(log)
    log.close()


def commit() -> None:
  """Starts writing the log of the innermost open `kept` block (if any) to its file."""
  if _active:
    _active[-1].commit()
