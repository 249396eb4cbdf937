"""An exclusive lock on a run's workdir, so that two processes never train in one folder.

`lock(folder)` takes a non-blocking flock on the folder itself and, once it holds it,
writes the holder (pid, host, start time) into `<folder>/.lock`; a second process is
refused at once, with a one-line WorkdirBusy naming the holder, and leaves every file of
the folder as it was. The holder removes `.lock` when it leaves, so a run that ends (or
fails) leaves no trace of the lock. The OS drops a flock when its holder dies, however it
dies, so the `.lock` a killed run leaves behind is simply taken over (rewritten by the
new holder). One process may hold the locks of several workdirs at once (a population).
flock works across hosts on NFS (Linux emulates it with NFS locks); where a file system
refuses locks altogether, the run goes on unlocked and says so.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import pathlib
import socket
import sys
from typing import Any, Callable, Iterator

from dncjax.training import checkpoint

LOCK_FILE = ".lock"


class WorkdirBusy(checkpoint.CheckpointError):
  """The workdir is locked by another process (or by another `lock` of this one): one line."""


@contextlib.contextmanager
def lock(folder: str | pathlib.Path, what: str = "run",
         say: Callable[[str], Any] = lambda line: print(line, file=sys.stderr)
         ) -> Iterator[pathlib.Path]:
  """Holds `folder` (created if need be) exclusively while inside; yields the folder.
  `what` names the holder's job in the lock file (e.g. 'run', 'population member 3');
  `say` tells of a file system without locks. `.lock` is removed on leaving, and the
  folder too if this call created it and it is still empty."""
  folder = pathlib.Path(folder)
  created = not folder.exists()
  folder.mkdir(parents=True, exist_ok=True)
  fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
  info = folder / LOCK_FILE
  try:
    locked = _try_lock(fd, folder, say)
    if locked:
      since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
      info.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": since, "what": what}) + "\n")
    try:
      yield folder
    finally:
      if locked:
        info.unlink(missing_ok=True)  # while still held: no one reads a gone holder as current
        if created:  # a run that failed before writing anything leaves no empty folder
          with contextlib.suppress(OSError):
            folder.rmdir()
        fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def _try_lock(fd: int, folder: pathlib.Path, say: Callable[[str], Any]) -> bool:
  """True once locked; False on a file system without locks; WorkdirBusy if held."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except BlockingIOError:
    raise WorkdirBusy(f"{folder} is in use by {holder(folder)}: wait for it to end or "
                      f"choose another --workdir") from None
  except OSError as e:
    if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
      raise
    say(f"warning: {folder} cannot be locked ({os.strerror(e.errno)}): make sure no other "
        f"process uses it")
    return False


def holder(folder: str | pathlib.Path) -> str:
  """Who `<folder>/.lock` names, e.g. 'pid 1234 on host abc (run, since ...)'; read
  without the lock, so meaningful only while some process holds it."""
  try:
    info = json.loads((pathlib.Path(folder) / LOCK_FILE).read_text())
    return f"pid {info['pid']} on host {info['host']} ({info['what']}, since {info['since']})"
  except (OSError, ValueError, KeyError, TypeError):
    return "another process (it has not yet written its name)"
