"""Compiling the CPU kernels (`link_kernel.cc` with `link_lanes.h` and `link_blocks.h`,
`access_kernel.cc` with `access_lanes.h`, `sparse_link_kernel.cc`,
`sparse_journal_kernel.cc`, `content_kernel.cc`, `sort_kernel.cc`;
all use `lanes.h`) into one shared library, once per machine.

The library goes to <user cache>/native/ (`dncjax.folders.user_cache`), named by a hash of
the sources, the compiler command, the JAX version and the CPU's instruction sets, so a
changed kernel, compiler or JAX rebuilds and a kept one loads at once. The compiler is
$CXX, or `c++`; it needs C++17 and XLA's FFI headers, which jaxlib ships. A build writes
to a temporary name and renames it, so processes building at once (test workers) never
load half a file.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from dncjax import folders

SOURCES = tuple(Path(__file__).with_name(name)
                for name in ("link_kernel.cc", "access_kernel.cc", "sparse_link_kernel.cc",
                             "sparse_journal_kernel.cc", "content_kernel.cc",
                             "sort_kernel.cc"))
HEADERS = tuple(Path(__file__).with_name(name)
                for name in ("lanes.h", "link_lanes.h", "link_blocks.h", "access_lanes.h"))
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fopenmp-simd",
         "-fno-math-errno")


class BuildError(RuntimeError):
  """The kernel could not be compiled or loaded (the message says why)."""


def _cpu_flags() -> str:
  """The CPU's instruction sets (-march=native builds for them), or the machine's name."""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("flags"):
        return line
  except OSError:
    pass
  return platform.machine() + platform.processor()


def compiler() -> list[str]:
  """The C++ compiler's command: $CXX (split as a shell would), else `c++`."""
  return shlex.split(os.environ.get("CXX", "c++"))


def compiler_found() -> bool:
  """Whether the compiler's program exists here (without it there is no kernel)."""
  return bool(compiler()) and shutil.which(compiler()[0]) is not None


def command(output: Path, include_dir: str) -> list[str]:
  """The compiler command line building SOURCES into `output`."""
  return [*compiler(), *FLAGS, f"-I{include_dir}", *map(str, SOURCES), "-o", str(output)]


def library() -> Path:
  """The built library's path, compiling it first if no build of these sources is kept."""
  import jax  # pylint: disable=import-outside-toplevel
  include_dir = jax.ffi.include_dir()
  folder = folders.user_cache() / "native"
  key = hashlib.sha256()
  sources = [f.read_bytes() for f in SOURCES + HEADERS]
  for part in (*sources, " ".join(command(Path("out"), include_dir)).encode(),
               jax.__version__.encode(), _cpu_flags().encode()):
    key.update(part)
  target = folder / f"link_kernel-{key.hexdigest()[:16]}.so"
  if target.exists():
    return target
  try:
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".so.tmp")
    os.close(handle)
  except OSError as e:
    raise BuildError(f"cannot write to {folder}: {e.strerror}") from e
  try:
    done = subprocess.run(command(Path(temporary), include_dir), capture_output=True,
                          text=True, check=False)
  except OSError as e:
    os.unlink(temporary)
    raise BuildError(f"no C++ compiler ({e.strerror}: {e.filename}); set CXX") from e
  if done.returncode != 0:
    os.unlink(temporary)
    lines = done.stderr.strip().splitlines()
    first = next((l for l in lines if "error" in l), lines[-1] if lines else "(no message)")
    names = ", ".join(f.name for f in SOURCES)
    raise BuildError(f"compiling {names} failed: {first.strip()}")
  os.replace(temporary, target)
  return target
