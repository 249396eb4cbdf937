"""cli.allocation: a console command runs itself again, once (same PID), with mimalloc
preloaded where installed, whose freed blocks are reused without faulting their pages in
again, and with glibc's huge-page tunable (added to any tunables already set), whose blocks
get huge pages; $DNCJAX_MIMALLOC=0 and $DNCJAX_HUGE_PAGES=0 turn them off, a bad value is
one line; `cli.run` without `command=True` (tests, notebooks) never runs anything again."""

import os
import subprocess
import sys

import pytest

from dncjax import cli
from dncjax.cli import allocation

# The command prints its PID, its GLIBC_TUNABLES, whether mimalloc is mapped into it, and
# for a 128 MiB block from malloc, written whole, freed, then allocated and written again:
# the huge pages backing the first (kB, /proc/self/smaps_rollup) and the page faults of
# each time.
COMMAND = """
import ctypes
import os
import resource
from dncjax import cli

SIZE = 128 << 20
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def faults():
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def main():
  with open("/proc/self/maps") as f:
    mimalloc = "libmimalloc" in f.read()
  counts = []
  for _ in range(2):
    start = faults()
    block = libc.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    counts.append(faults() - start)
    if len(counts) == 1:
      with open("/proc/self/smaps_rollup") as f:
        huge = [int(l.split()[1]) for l in f if l.startswith("AnonHugePages:")][0]
    libc.free(block)
  print(os.getpid(), os.environ.get("GLIBC_TUNABLES"), mimalloc, huge, *counts)

cli.run(main, command=True)
"""

SET = ("GLIBC_TUNABLES", "LD_PRELOAD", allocation.PURGE_DELAY, allocation.HUGE_PAGES,
       allocation.MIMALLOC)


def run(**env):
  """(pid, exit code, stdout lines, stderr) of COMMAND in a process whose environment has
  none of SET but `env`."""
  environ = {k: v for k, v in os.environ.items() if k not in SET}
  process = subprocess.Popen([sys.executable, "-c", COMMAND], env={**environ, **env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  out, err = process.communicate(timeout=300)
  return process.pid, process.returncode, out.splitlines(), err


def fields(line):
  pid, tunables, mimalloc, huge_kb, first, again = line.split()
  return int(pid), tunables, mimalloc == "True", int(huge_kb), int(first), int(again)


huge_pages = pytest.mark.skipif(
    "GLIBC_TUNABLES" not in allocation.wanted({allocation.MIMALLOC: "0"}),
    reason="no glibc >= 2.35 with transparent huge pages on request")
mimalloc = pytest.mark.skipif(allocation.mimalloc_library() is None,
                              reason="mimalloc is not installed (not Linux)")


@huge_pages
def test_a_command_runs_again_once_with_the_tunable_and_gets_huge_pages():
  pid, code, lines, err = run(**{allocation.MIMALLOC: "0"})
  assert code == 0, err
  assert len(lines) == 1, lines  # main ran once: the first run was replaced before it
  seen_pid, tunables, mapped, huge_kb, first, again = fields(lines[0])
  assert seen_pid == pid and tunables == allocation.TUNABLE and not mapped
  assert huge_kb > 0
  assert again >= first // 2  # glibc returned the block: its pages fault in again


@huge_pages
def test_tunables_already_set_are_kept():
  _, code, lines, err = run(GLIBC_TUNABLES="glibc.malloc.arena_max=4",
                            **{allocation.MIMALLOC: "0"})
  assert code == 0, err
  assert lines[0].split()[1] == "glibc.malloc.arena_max=4:" + allocation.TUNABLE


@mimalloc
def test_a_command_runs_again_once_with_mimalloc_which_reuses_a_freed_block():
  pid, code, lines, err = run()
  assert code == 0, err
  assert len(lines) == 1, lines
  seen_pid, _, mapped, _, first, again = fields(lines[0])
  assert seen_pid == pid and mapped
  assert first >= 16 and again <= first // 8, (first, again)


def test_the_variables_turn_them_off_and_a_bad_value_is_one_line():
  _, code, lines, err = run(**{allocation.HUGE_PAGES: "0", allocation.MIMALLOC: "0"})
  assert code == 0, err
  _, tunables, mapped, huge_kb, first, again = fields(lines[0])
  assert tunables == "None" and not mapped and again >= first // 2
  for name in (allocation.HUGE_PAGES, allocation.MIMALLOC):
    _, code, lines, err = run(**{name: "yes"})
    assert code == 2 and lines == []
    assert err == f"error: {name} must be 0 or 1, got 'yes'\n"


def test_requiring_mimalloc_where_it_is_not_installed_is_one_line(monkeypatch):
  monkeypatch.setattr(allocation, "mimalloc_library", lambda: None)
  with pytest.raises(ValueError, match="DNCJAX_MIMALLOC=1 but mimalloc is not installed"):
    allocation.variables({allocation.MIMALLOC: "1"})
  assert "LD_PRELOAD" not in allocation.wanted({})


def test_run_without_command_never_runs_the_process_again(monkeypatch):
  for name in SET:
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setattr(os, "execve", lambda *a: pytest.fail(f"execve{a}"))
  ran = []
  with pytest.raises(SystemExit) as info:
    cli.run(lambda: ran.append(1))
  assert info.value.code == 0 and ran == [1]


def test_nothing_wanted_when_turned_off_or_already_set():
  off = {allocation.HUGE_PAGES: "0", allocation.MIMALLOC: "0"}
  assert allocation.wanted(off) == {}
  library = allocation.mimalloc_library()
  already = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0",  # the user's
             "LD_PRELOAD": str(library) if library else ""}
  assert allocation.wanted(already) == {}
  with pytest.raises(ValueError, match=allocation.HUGE_PAGES):
    allocation.wanted({allocation.HUGE_PAGES: "2"})
