"""Transparent huge pages for a command's memory on Linux with glibc.

XLA's CPU runtime allocates the temporary buffers of each execution of a compiled program
afresh and frees them after it: for a memory model's training step one block of up to
hundreds of MB (the per-step values `lax.scan` keeps for the backward pass). glibc serves
a block that large with mmap and returns it to the kernel when it is freed, so every step
faults in, and the kernel zeroes, each 4 KiB page again. With glibc's tunable
`glibc.malloc.hugetlb=1` (glibc >= 2.35) malloc asks for transparent huge pages for such
blocks, 2 MiB each, where the kernel grants them on request (`madvise` mode). glibc reads
tunables only when a process starts, so `use()` runs the command again, once, in the same
process (exec: the same PID, arguments, streams and environment plus the tunable).

`use()` does so only where it helps: Linux, glibc >= 2.35, transparent huge pages in
`madvise` mode (in `always` mode the kernel uses them anyway; in `never` mode not at all),
the tunable not already set, and $DNCJAX_HUGE_PAGES not `0` (`1`, the default, or unset:
use them; any other value is refused in one line by `variable()`).
"""

from __future__ import annotations

import os
import platform
import sys

VARIABLE = "DNCJAX_HUGE_PAGES"
TUNABLE = "glibc.malloc.hugetlb=1"
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def variable(environ=None) -> bool:
  """Whether $DNCJAX_HUGE_PAGES allows huge pages ('1' or unset: yes, '0': no);
  ValueError naming the variable for anything else."""
  environ = os.environ if environ is None else environ
  value = environ.get(VARIABLE, "").strip() or "1"
  if value not in ("0", "1"):
    raise ValueError(f"{VARIABLE} must be 0 or 1, got {value!r}")
  return value == "1"


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


def wanted(environ=None) -> bool:
  """Whether `use()` would run the command again (see the module doc), for `environ`
  (default: this process's environment)."""
  environ = os.environ if environ is None else environ
  return (variable(environ) and sys.platform == "linux"
          and "glibc.malloc.hugetlb" not in environ.get("GLIBC_TUNABLES", "")
          and _glibc_has_tunable() and _thp_on_request())


def use() -> None:
  """Runs this process's command again with glibc's huge-page tunable, where `wanted()`;
  returns (doing nothing) otherwise. Call it first thing in a command's entry point."""
  if not wanted():
    return
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  environ = {**os.environ, "GLIBC_TUNABLES": f"{tunables}:{TUNABLE}" if tunables else TUNABLE}
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, environ)
