"""How a console command's process allocates memory on Linux: mimalloc, which keeps what is
freed for the next allocation, and glibc's transparent huge pages.

XLA's CPU runtime allocates the temporary buffers of each execution of a compiled program
afresh and frees them after it: for a memory model's training step one block of up to
gigabytes (the DNC's history of link matrices, the residuals the scans keep for the
backward pass). glibc serves a block that large with mmap and returns it to the kernel
when it is freed, so every step faults in, and the kernel zeroes, each page again. Two
remedies, each read only when a process starts:

- mimalloc (the `cmeel-mimalloc` wheel, a dependency on Linux), preloaded (`LD_PRELOAD`)
  with `MIMALLOC_PURGE_DELAY=-1`: a freed block stays mapped and the next step's block
  reuses its pages, with no fault and no zeroing. $DNCJAX_MIMALLOC: unset, use it where it
  is installed; `1`, require it; `0`, leave glibc's malloc.
- glibc's tunable `glibc.malloc.hugetlb=1` (glibc >= 2.35, transparent huge pages in
  `madvise` mode): glibc's blocks get 2 MiB pages, so far fewer faults (it does not apply
  to mimalloc's blocks). $DNCJAX_HUGE_PAGES: `1` or unset, use them; `0`, don't.

`use()` runs the command again, once, with what is wanted and not yet set (exec: the same
PID, arguments, streams and environment plus the settings); `variables()` refuses a bad
value of either variable in one line.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

HUGE_PAGES = "DNCJAX_HUGE_PAGES"
MIMALLOC = "DNCJAX_MIMALLOC"
TUNABLE = "glibc.malloc.hugetlb=1"
PURGE_DELAY = "MIMALLOC_PURGE_DELAY"
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _switch(name: str, environ) -> str:
  value = environ.get(name, "").strip()
  if value not in ("", "0", "1"):
    raise ValueError(f"{name} must be 0 or 1, got {value!r}")
  return value


def variables(environ=None) -> None:
  """ValueError naming the variable if $DNCJAX_HUGE_PAGES or $DNCJAX_MIMALLOC is other than
  0, 1 or unset, or if $DNCJAX_MIMALLOC=1 where mimalloc is not installed."""
  environ = os.environ if environ is None else environ
  _switch(HUGE_PAGES, environ)
  if _switch(MIMALLOC, environ) == "1" and mimalloc_library() is None:
    raise ValueError(f"{MIMALLOC}=1 but mimalloc is not installed here "
                     "(pip install cmeel-mimalloc, on Linux)")


def mimalloc_library() -> Path | None:
  """The installed mimalloc shared library (from the `cmeel-mimalloc` wheel), or None."""
  if sys.platform != "linux":
    return None
  try:
    files = importlib.metadata.distribution("cmeel-mimalloc").files or []
  except importlib.metadata.PackageNotFoundError:
    return None
  found = sorted((f for f in files if f.name.startswith("libmimalloc.so")),
                 key=lambda f: len(f.name))
  path = found and Path(found[0].locate()).resolve()
  return path if path and path.is_file() else None


def _glibc_has_tunable() -> bool:
  libc, version = platform.libc_ver()
  try:
    return libc == "glibc" and tuple(map(int, version.split(".")[:2])) >= (2, 35)
  except ValueError:
    return False


def _thp_on_request() -> bool:
  try:
    with open(THP_MODE, encoding="ascii") as f:
      return "[madvise]" in f.read()
  except OSError:
    return False


def wanted(environ=None) -> dict[str, str]:
  """The variables `use()` would add to `environ` (default: this process's environment)
  before running the command again; empty where it would not run it again."""
  environ = os.environ if environ is None else environ
  variables(environ)
  added = {}
  library = mimalloc_library()
  preloaded = environ.get("LD_PRELOAD", "").replace(":", " ").split()
  if _switch(MIMALLOC, environ) != "0" and library and str(library) not in preloaded:
    added["LD_PRELOAD"] = " ".join([str(library), *preloaded])
    added[PURGE_DELAY] = environ.get(PURGE_DELAY, "-1")
  tunables = environ.get("GLIBC_TUNABLES", "")
  if (_switch(HUGE_PAGES, environ) != "0" and sys.platform == "linux"
      and "glibc.malloc.hugetlb" not in tunables and _glibc_has_tunable()
      and _thp_on_request()):
    added["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
  return added


def use() -> None:
  """Runs this process's command again with what `wanted()` adds; returns (doing nothing)
  where that is nothing. Call it first thing in a command's entry point."""
  added = wanted()
  if not added:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, {**os.environ, **added})
