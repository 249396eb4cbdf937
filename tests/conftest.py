"""Shared test set-up.

float64 is switched on for the whole session (gradient and oracle checks need it; the
float32 models keep their explicit dtype). The corpus is found through DNCJAX_DATA_DIR,
as CI sets it; when unset, the shared folder beside the checkout is used if present.
Subprocesses get mimalloc and glibc's huge-page tunable (as `cli.allocation.use()` gives a
command).
JAX's compilation cache goes to a temporary folder of the test run ($DNCJAX_CACHE_DIR,
which xdist's workers and subprocesses inherit), never to the user's cache. The CPU shows
itself as two devices (for tests/training/test_parallel.py; subprocesses inherit it);
everything else runs on the first one. Tests compile with XLA's backend optimisation level 0 (unless
XLA_FLAGS sets one): the same XLA programs, with less LLVM optimisation of their machine code,
which the tests' small programs spend more time compiling than running. Float32 sums may
round differently from the default level's, so tests comparing two programs exactly (a
population member and the run alone) run in float64.

The tests mirror the package: tests/models, tests/training, tests/charlm, tests/tasks and
tests/sweeps hold one test_<module>.py per module; the end-to-end files stay here at the
top. Helpers that several test files use are the fixtures below; test files never import
from one another (each finds the repository root from its own __file__).
"""

import atexit
import hashlib
import json
import os
import pathlib
import shutil
import tempfile

# One cache for the whole test run: pytest-xdist's workers inherit the folder from the
# process that made it (which removes it when it exits), so a program one worker compiled
# loads in the other and in both workers' subprocesses.
_SHARED_CACHE = "DNCJAX_TEST_COMPILE_CACHE"
if _SHARED_CACHE not in os.environ:
  os.environ[_SHARED_CACHE] = tempfile.mkdtemp(prefix="dncjax-test-compile-cache-")
  atexit.register(shutil.rmtree, os.environ[_SHARED_CACHE], ignore_errors=True)
os.environ["DNCJAX_CACHE_DIR"] = os.environ[_SHARED_CACHE]

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:  # read when the backend starts
  _flags = f"{_flags} --xla_force_host_platform_device_count=2"
if "xla_backend_optimization_level" not in _flags:  # most of a test's time is compiling
  _flags = f"{_flags} --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = _flags.strip()

import jax  # noqa: E402
import pytest  # noqa: E402

from dncjax.cli import allocation  # noqa: E402

# The commands the tests start run as a console command does after `cli.allocation.use()`
# (mimalloc preloaded where installed, glibc's huge-page tunable set), without running
# themselves again first.
os.environ.update(allocation.wanted())

jax.config.update("jax_enable_x64", True)

REPO = pathlib.Path(__file__).resolve().parents[1]
_shared = REPO.parent / "shared" / "data"
if "DNCJAX_DATA_DIR" in os.environ:  # CI gives it relative to the repository root
  os.environ["DNCJAX_DATA_DIR"] = os.path.abspath(os.environ["DNCJAX_DATA_DIR"])
elif (_shared / "alice29.txt").exists():
  os.environ["DNCJAX_DATA_DIR"] = str(_shared)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
  """The first 4,000 characters of alice29.txt (400 held out): a corpus for quick runs."""
  corpus = pathlib.Path(os.environ["DNCJAX_DATA_DIR"]) / "alice29.txt"
  path = tmp_path_factory.mktemp("data") / "small.txt"
  path.write_text(corpus.read_text()[:4000])
  return path


def _folder_digest(folder) -> str:
  """One hash of every file's relative path and bytes below `folder`."""
  h = hashlib.sha256()
  for path in sorted(pathlib.Path(folder).rglob("*")):
    if path.is_file():
      h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
  return h.hexdigest()


@pytest.fixture(scope="session")
def folder_digest():
  """folder_digest(folder) -> one hash of every file's relative path and bytes below it:
  equal before and after means nothing in the folder was touched."""
  return _folder_digest


def _bpcs(workdir, key):
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [(r["step"], r[key]) for r in records if key in r]


@pytest.fixture(scope="session")
def bpcs():
  """bpcs(workdir, key) -> [(step, value)] of every record in workdir/metrics.jsonl that
  has `key` (train_bpc, val_bpc, ...), in the order written."""
  return _bpcs
