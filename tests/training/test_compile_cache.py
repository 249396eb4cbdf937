"""dncjax.training.compile_cache: where JAX's persistent compilation cache lives (the
environment's precedence), switching it on once per process, and a run that fills it."""

import os
import pathlib
import subprocess
import sys

import jax
import pytest

from dncjax.charlm import data
from dncjax.training import compile_cache

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def env(monkeypatch, tmp_path):
  """No cache variable set, HOME in a temporary folder."""
  for name in ("DNCJAX_CACHE_DIR", "DNCJAX_COMPILE_CACHE", "XDG_CACHE_HOME"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  return monkeypatch


def test_the_cache_is_in_the_user_cache_by_default(env, tmp_path):
  assert compile_cache.cache_dir() == tmp_path / "home" / ".cache" / "dncjax" / "jax"
  env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert compile_cache.cache_dir() == tmp_path / "xdg" / "dncjax" / "jax"
  assert data.cache_dir() == tmp_path / "xdg" / "dncjax"  # the corpus's folder: one root


def test_dncjax_cache_dir_comes_first(env, tmp_path):
  env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  env.setenv("DNCJAX_CACHE_DIR", str(tmp_path / "mine"))
  assert compile_cache.cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize("off", ["0", "off", "False", "no"])
def test_dncjax_compile_cache_0_turns_it_off(env, tmp_path, off):
  env.setenv("DNCJAX_CACHE_DIR", str(tmp_path / "mine"))
  env.setenv("DNCJAX_COMPILE_CACHE", off)
  assert compile_cache.cache_dir() is None


@pytest.fixture
def updates(env):
  """The jax.config updates made, in a process where `enable` has not run yet."""
  made = []
  env.setattr(compile_cache, "_enabled", [])
  env.setattr(jax.config, "update", lambda name, value: made.append((name, value)))
  return made


def test_enable_points_jax_at_the_folder_once_and_says_where(env, tmp_path, updates):
  env.setenv("DNCJAX_CACHE_DIR", str(tmp_path / "mine"))
  lines = []
  assert compile_cache.enable(lines.append) == tmp_path / "mine"
  assert compile_cache.enable(lines.append) == tmp_path / "mine"
  assert (tmp_path / "mine").is_dir()
  assert updates == [("jax_compilation_cache_dir", str(tmp_path / "mine")),
                     ("jax_persistent_cache_min_compile_time_secs", 0.0),
                     ("jax_persistent_cache_min_entry_size_bytes", -1)]
  assert lines == [f"compilation cache: {tmp_path / 'mine'} (DNCJAX_COMPILE_CACHE=0 turns it "
                   f"off)"]


def test_enable_when_off_leaves_jax_alone(env, tmp_path, updates):
  env.setenv("DNCJAX_COMPILE_CACHE", "0")
  assert compile_cache.enable(print) is None and updates == []


def test_a_folder_that_cannot_be_made_leaves_the_cache_off(env, tmp_path, updates):
  (tmp_path / "file").write_text("")
  env.setenv("DNCJAX_CACHE_DIR", str(tmp_path / "file" / "jax"))
  lines = []
  assert compile_cache.enable(lines.append) is None and updates == []
  assert len(lines) == 1 and lines[0].startswith("warning: no compilation cache")


@pytest.mark.slow
def test_a_run_fills_the_folder_dncjax_cache_dir_names(text_file, tmp_path):
  cache = tmp_path / "cache"
  done = subprocess.run(
      [sys.executable, "experiments/alice.py", "--data", str(text_file), "--workdir",
       str(tmp_path / "run"), "--model", "rnn", "--hidden", "8", "--batchsize", "2",
       "--seqlength", "8", "--steps", "2", "--sample_length", "0", "--no-dynamic_eval"],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env={**os.environ, "DNCJAX_CACHE_DIR": str(cache)})
  assert done.returncode == 0, done.stderr
  assert f"compilation cache: {cache} (DNCJAX_COMPILE_CACHE=0 turns it off)" in done.stdout
  assert "compiling the training step..." in done.stdout
  assert len([p for p in cache.rglob("*") if p.is_file()]) >= 2  # init and step at least
