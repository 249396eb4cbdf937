"""workdir.lock: a second process is refused at once and changes nothing; a killed
holder's lock is taken over; one process may hold several workdirs."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

from dncjax.training import workdir

REPO = pathlib.Path(__file__).resolve().parents[2]

HOLD = """
import sys
from dncjax.training import workdir
with workdir.lock(sys.argv[1], what="test holder"):
  print("locked", flush=True)
  sys.stdin.readline()
print("released", flush=True)
"""

TRY = """
import sys
from dncjax.training import workdir
try:
  with workdir.lock(sys.argv[1]):
    print("acquired")
except workdir.WorkdirBusy as e:
  print(e)
  sys.exit(3)
"""


def _python(code: str, folder: pathlib.Path, **kwargs):
  return subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=REPO, text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, **kwargs)


def _holder(folder: pathlib.Path) -> subprocess.Popen:
  """A process holding the lock of `folder` until its stdin closes (or it is killed)."""
  process = _python(HOLD, folder)
  line = process.stdout.readline()
  if line != "locked\n":
    process.kill()
    pytest.fail(f"the holder did not lock: {line!r} {process.communicate()[1]}")
  return process


def _files(folder: pathlib.Path) -> dict:
  return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
          for p in sorted(folder.rglob("*"))}


def _lock_info(folder: pathlib.Path) -> dict:
  return json.loads((folder / workdir.LOCK_FILE).read_text())


@pytest.mark.slow
def test_second_process_is_refused_in_one_line_and_changes_nothing(tmp_path):
  folder = tmp_path / "run"
  (folder / "checkpoints").mkdir(parents=True)
  (folder / "metrics.jsonl").write_text('{"step": 1}\n')
  holder = _holder(folder)
  try:
    info = _lock_info(folder)
    assert (info["pid"], info["host"], info["what"]) == (holder.pid, socket.gethostname(),
                                                         "test holder")
    before = _files(folder)
    out, err = _python(TRY, folder).communicate(timeout=120)
    lines = out.splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0] == (f"{folder} is in use by pid {holder.pid} on host "
                        f"{socket.gethostname()} (test holder, since {info['since']}): wait "
                        f"for it to end or choose another --workdir")
    with pytest.raises(workdir.WorkdirBusy, match=f"in use by pid {holder.pid} on host"):
      with workdir.lock(folder):
        pass
    assert _files(folder) == before
  finally:
    out, _ = holder.communicate("\n", timeout=120)
  assert (out, holder.returncode) == ("released\n", 0)
  assert not (folder / workdir.LOCK_FILE).exists()  # a run that ended leaves no lock file
  with workdir.lock(folder) as locked:
    assert locked == folder and _lock_info(folder)["pid"] == os.getpid()


def test_lock_of_a_killed_holder_is_taken_over(tmp_path):
  folder = tmp_path / "run"
  holder = _holder(folder)
  holder.send_signal(signal.SIGKILL)
  holder.communicate(timeout=120)
  assert _lock_info(folder)["pid"] == holder.pid  # stale: the OS dropped its flock
  with workdir.lock(folder, what="successor"):
    info = _lock_info(folder)
    assert (info["pid"], info["what"]) == (os.getpid(), "successor")


def test_one_process_holds_several_workdirs(tmp_path):
  a, b = tmp_path / "member0", tmp_path / "member1"
  with workdir.lock(a, what="member 0"), workdir.lock(b, what="member 1"):
    assert _lock_info(a)["what"] == "member 0" and _lock_info(b)["what"] == "member 1"
    with pytest.raises(workdir.WorkdirBusy, match=f"in use by pid {os.getpid()} "):
      with workdir.lock(b):
        pass
    assert _lock_info(b)["what"] == "member 1"
  with workdir.lock(a), workdir.lock(b):
    pass
