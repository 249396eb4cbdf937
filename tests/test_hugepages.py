"""cli.hugepages: a console command runs itself again, once, with glibc's huge-page tunable
(same PID, the tunable added to any already set), where the machine supports it; the
pages it then gets are huge; $DNCJAX_HUGE_PAGES=0 turns it off and a bad value is one
line; `cli.run` without `command=True` (tests, notebooks) never runs anything again."""

import os
import subprocess
import sys

import pytest

from dncjax import cli
from dncjax.cli import hugepages

# The command prints its PID, its GLIBC_TUNABLES and the huge pages backing a 64 MiB
# array it has just written (kB, from /proc/self/smaps_rollup).
COMMAND = """
import os
import numpy as np
from dncjax import cli

def main():
  block = np.ones(1 << 24, np.float32)
  with open("/proc/self/smaps_rollup") as f:
    huge = [int(l.split()[1]) for l in f if l.startswith("AnonHugePages:")][0]
  print(os.getpid(), os.environ.get("GLIBC_TUNABLES"), huge, float(block.sum()))

cli.run(main, command=True)
"""


def run(**env):
  environ = {k: v for k, v in os.environ.items()
             if k not in ("GLIBC_TUNABLES", hugepages.VARIABLE)}
  process = subprocess.Popen([sys.executable, "-c", COMMAND], env={**environ, **env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  out, err = process.communicate(timeout=300)
  return process.pid, process.returncode, out.splitlines(), err


supported = pytest.mark.skipif(not hugepages.wanted({}),
                               reason="no glibc >= 2.35 with transparent huge pages on request")


@supported
def test_a_command_runs_again_once_with_the_tunable_and_gets_huge_pages():
  pid, code, lines, err = run()
  assert code == 0, err
  assert len(lines) == 1, lines  # main ran once: the first run was replaced before it
  seen_pid, tunables, huge_kb, total = lines[0].split()
  assert int(seen_pid) == pid and tunables == hugepages.TUNABLE
  assert int(huge_kb) > 0 and float(total) == 1 << 24


@supported
def test_tunables_already_set_are_kept():
  _, code, lines, err = run(GLIBC_TUNABLES="glibc.malloc.arena_max=4")
  assert code == 0, err
  assert lines[0].split()[1] == "glibc.malloc.arena_max=4:" + hugepages.TUNABLE


def test_the_variable_turns_it_off_and_a_bad_value_is_one_line():
  _, code, lines, err = run(**{hugepages.VARIABLE: "0"})
  assert code == 0, err
  assert lines[0].split()[1] == "None"
  _, code, lines, err = run(**{hugepages.VARIABLE: "yes"})
  assert code == 2 and lines == []
  assert err == f"error: {hugepages.VARIABLE} must be 0 or 1, got 'yes'\n"


def test_run_without_command_never_runs_the_process_again(monkeypatch):
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  monkeypatch.delenv(hugepages.VARIABLE, raising=False)
  monkeypatch.setattr(os, "execve", lambda *a: pytest.fail(f"execve{a}"))
  ran = []
  with pytest.raises(SystemExit) as info:
    cli.run(lambda: ran.append(1))
  assert info.value.code == 0 and ran == [1]


def test_not_wanted_when_turned_off_or_already_set():
  assert not hugepages.wanted({hugepages.VARIABLE: "0"})
  assert not hugepages.wanted({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})  # the user's
  with pytest.raises(ValueError, match=hugepages.VARIABLE):
    hugepages.wanted({hugepages.VARIABLE: "2"})
