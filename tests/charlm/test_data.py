"""Tests for dncjax.data: loading, errors, vocabulary, split, lane batching, validation."""

import functools
import hashlib
import http.server
import io
import json
import os
import socket
import tarfile
import threading
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from dncjax.charlm import data


@pytest.fixture
def alice_file() -> Path:
  data_dir = os.environ.get("DNCJAX_DATA_DIR")
  if not data_dir or not (Path(data_dir) / data.ALICE).is_file():
    pytest.skip("alice29.txt not found: set DNCJAX_DATA_DIR to the folder holding it")
  return Path(data_dir) / data.ALICE


def write(tmp_path, raw: bytes, name="t.txt") -> Path:
  path = tmp_path / name
  path.write_bytes(raw)
  return path


# ---------------------------------------------------------------------------- loading


def test_alice_is_read_as_python_reads_it(alice_file):
  text = data.read_text(alice_file)
  with open(alice_file, "r", encoding="utf-8") as f:
    assert text == f.read()
  assert len(text) == 148_481 and len(set(text)) == 73
  assert hashlib.sha256(alice_file.read_bytes()).hexdigest() == data.ALICE_SHA256


def test_universal_newlines(tmp_path):
  assert data.read_text(write(tmp_path, b"a\r\nb\rc\nd\r")) == "a\nb\nc\nd\n"
  assert data.read_text(write(tmp_path, "é\r\n→".encode())) == "é\n→"


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "absent.txt", "no such file"),
    (lambda d: d, "is a directory"),
    (lambda d: write(d, b""), "is empty"),
    (lambda d: write(d, b"abc\xffdef"), "invalid byte 0xff at byte offset 3"),
    (lambda d: write(d, "é".encode() + b"\xc3"), "at byte offset 2"),
])
def test_read_errors_name_problem_and_path(tmp_path, make, message):
  path = make(tmp_path)
  with pytest.raises(data.DataError, match=message) as e:
    data.read_text(path)
  assert str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
  path = write(tmp_path, b"abc")
  path.chmod(0)
  with pytest.raises(data.DataError, match="(?i)permission denied"):
    data.read_text(path)


# --------------------------------------------------------------------------- download


def build_archive(folder: Path, raw: bytes, name="cantrbry.tar.gz") -> None:
  """A tar.gz like the Canterbury one: alice29.txt beside another file."""
  with tarfile.open(folder / name, "w:gz") as tar:
    for member, content in (("asyoulik.txt", b"other"), (data.ALICE, raw)):
      info = tarfile.TarInfo(member)
      info.size = len(content)
      tar.addfile(info, io.BytesIO(content))


@pytest.fixture
def server(tmp_path, monkeypatch):
  """A loopback HTTP server for tmp_path/www; yields (folder, base URL, request log)."""
  for key in list(os.environ):
    if key.lower().endswith("_proxy"):
      monkeypatch.delenv(key)
  www = tmp_path / "www"
  www.mkdir()
  requests = []

  class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      requests.append(self.path)

  httpd = http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
  thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
  thread.start()
  yield www, f"http://127.0.0.1:{httpd.server_address[1]}", requests
  httpd.shutdown()
  httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
  """An empty user cache; DNCJAX_DATA_DIR unset, so alice_path has to download."""
  monkeypatch.delenv("DNCJAX_DATA_DIR", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  return tmp_path / "cache" / "dncjax"


def test_download_once_into_cache(alice_file, server, cache):
  www, base, requests = server
  build_archive(www, alice_file.read_bytes())
  url = f"{base}/cantrbry.tar.gz"
  path = data.alice_path(url)
  assert path == cache / data.ALICE and data.cache_dir() == cache
  assert path.read_bytes() == alice_file.read_bytes()
  assert sorted(p.name for p in cache.iterdir()) == [data.ALICE]  # no temporary left
  assert data.alice_path(url) == path and len(requests) == 1  # cached: no second fetch
  corpus = data.load_corpus(url=url)
  assert corpus.path == str(path) and corpus.vocab.size == 73


def test_data_dir_comes_first(alice_file, server, cache, monkeypatch):
  monkeypatch.setenv("DNCJAX_DATA_DIR", str(alice_file.parent))
  assert data.alice_path(f"{server[1]}/cantrbry.tar.gz") == alice_file
  assert server[2] == [] and not cache.exists()


def test_tampered_download_leaves_nothing(alice_file, server, cache):
  www, base, _ = server
  build_archive(www, alice_file.read_bytes().replace(b"Alice", b"Alicf", 1))
  with pytest.raises(data.DataError, match="SHA-256") as e:
    data.alice_path(f"{base}/cantrbry.tar.gz")
  assert "DNCJAX_DATA_DIR" in str(e.value) and "--data PATH" in str(e.value)
  assert not cache.exists() or not any(cache.iterdir())


def test_archive_without_alice(server, cache):
  www, base, _ = server
  with tarfile.open(www / "other.tar.gz", "w:gz"):
    pass
  with pytest.raises(data.DataError, match="holds no alice29.txt"):
    data.alice_path(f"{base}/other.tar.gz")
  with pytest.raises(data.DataError, match="could not download"):
    data.alice_path(f"{base}/missing.tar.gz")  # 404
  assert not cache.exists()


def test_unreachable_url(cache):
  with socket.socket() as s:  # a port nobody listens on once closed
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  with pytest.raises(data.DataError, match="could not download .*DNCJAX_DATA_DIR.*--data"):
    data.alice_path(f"http://127.0.0.1:{port}/cantrbry.tar.gz", timeout=5)
  assert not cache.exists()


# ------------------------------------------------------------------ vocabulary, split


def test_vocab_round_trips():
  vocab = data.Vocab.from_text("hello, world\n")
  assert vocab.chars == "\n ,dehlorw" and vocab.size == 10
  ids = vocab.encode("world, hello")
  assert ids.dtype == np.int32 and ids.tolist() == [vocab.chars.index(c) for c in "world, hello"]
  assert vocab.decode(ids) == "world, hello" and vocab.decode(ids.reshape(2, 6)) == "world, hello"
  assert data.Vocab.from_list(json.loads(json.dumps(vocab.to_list()))) == vocab
  assert vocab.encode("").shape == (0,) and vocab.decode([]) == ""


def test_vocab_errors():
  vocab = data.Vocab.from_text("abc")
  with pytest.raises(data.DataError, match=r"not in the vocabulary: 'x', 'é'"):
    vocab.encode("abéxa")
  with pytest.raises(data.DataError, match="sorted"):
    data.Vocab.from_list(["b", "a"])
  with pytest.raises(data.DataError, match="single characters"):
    data.Vocab.from_list(["ab"])
  for bad in ([3], [-1], [0.5]):
    with pytest.raises(data.DataError, match="ids must be integers"):
      vocab.decode(bad)


def test_alice_split(alice_file):
  corpus = data.load_corpus(alice_file, seq_length=25)
  text = data.read_text(alice_file)
  assert len(corpus.val_ids) == 14_848 and len(corpus.train_ids) == 148_481 - 14_848
  assert corpus.vocab.chars == "".join(sorted(set(text)))
  assert corpus.vocab.decode(corpus.train_ids) + corpus.vocab.decode(corpus.val_ids) == text


def test_split_tail_and_whole_text_vocab(tmp_path):
  corpus = data.load_corpus(write(tmp_path, b"abcdefghij" * 3 + b"XYZ"), val_fraction=0.1)
  assert corpus.vocab.decode(corpus.val_ids) == "XYZ"  # int(33 * 0.1) = 3
  assert set(corpus.vocab.chars) >= set("XYZ")
  assert data.split_text("abcdef", 0.0) == ("abcdef", "")
  with pytest.raises(ValueError, match="val_fraction"):
    data.split_text("abc", 1.0)


def test_text_too_short(tmp_path):
  path = write(tmp_path, b"x" * 30)
  with pytest.raises(data.DataError, match="training split has 27 characters") as e:
    data.load_corpus(path, seq_length=26)  # 27 train + 3 validation
  assert str(path) in str(e.value)
  with pytest.raises(data.DataError, match="validation split has 3 characters"):
    data.load_corpus(path, seq_length=5)
  assert len(data.load_corpus(path, seq_length=5, val_fraction=0.0).val_ids) == 0
  assert len(data.load_corpus(path, seq_length=2).val_ids) == 3
  with pytest.raises(data.DataError, match="fewer than the 7"):
    data.lane_batcher(np.zeros(6, np.int32), 2, 5)
  with pytest.raises(data.DataError, match="fewer than the 6"):
    data.validation_windows(np.zeros(5, np.int32), 5)


# ------------------------------------------------------------------- lane batching


def take(batcher, state, count):
  batches = []
  for _ in range(count):
    state, batch = batcher.next(state)
    batches.append(batch)
  return state, batches


def test_lane_windows_resets_and_stride():
  n, B, S = 40, 6, 5
  ids = np.arange(n, dtype=np.int32)  # id == position, so a window shows where it read
  batcher = data.lane_batcher(ids, B, S, overlap=0.5)
  assert batcher.stride == 2
  state = batcher.init(seed=3)
  rng = np.random.Generator(np.random.PCG64(3))  # one generator kept for the whole run
  previous = None
  for step in range(200):
    pointers = np.asarray(state.pointers, np.int64)
    state, batch = batcher.next(state)
    assert batch.inputs.shape == batch.targets.shape == (B, S) and batch.reset.shape == (B,)
    assert batch.inputs.dtype == batch.targets.dtype == np.int32 and batch.reset.dtype == bool
    start = batch.inputs[:, 0]
    np.testing.assert_array_equal(batch.inputs, start[:, None] + np.arange(S))
    np.testing.assert_array_equal(batch.targets, batch.inputs + 1)
    expected_reset = (pointers + S + 1 >= n) | (step == 0)  # the seed's rule
    np.testing.assert_array_equal(batch.reset, expected_reset)
    np.testing.assert_array_equal(  # reset lanes restart at rng.integers(0, n - 1 - S)
        start[batch.reset], rng.integers(0, n - 1 - S, size=batch.reset.sum()))
    if previous is not None:
      np.testing.assert_array_equal(start[~batch.reset], previous[~batch.reset] + 2)
    assert batch.targets.max() <= n - 2  # as the seed: never the last character
    previous = start
    np.testing.assert_array_equal(state.pointers, start + 2)


def test_batches_never_read_validation(tmp_path):
  text = ("the quick brown fox jumps over the lazy dog. " * 8).encode() + b"0123456789" * 4
  corpus = data.load_corpus(write(tmp_path, text), val_fraction=40 / len(text), seq_length=7)
  assert corpus.vocab.decode(corpus.val_ids) == "0123456789" * 4
  digits = corpus.vocab.encode("0123456789")
  batcher = data.lane_batcher(corpus.train_ids, 8, 7, overlap=2 / 3)
  _, batches = take(batcher, batcher.init(0), 300)
  seen = np.concatenate([np.concatenate([b.inputs, b.targets]) for b in batches])
  assert not np.isin(seen, digits).any() and sum(b.reset.sum() for b in batches) > 8


def test_stride_from_overlap():
  ids = np.zeros(100, np.int32)
  assert data.lane_batcher(ids, 1, 25).stride == 25
  assert data.lane_batcher(ids, 1, 25, overlap=2 / 3).stride == 25 // 3
  assert data.lane_batcher(ids, 1, 20, overlap=0.9).stride == 2
  assert data.lane_batcher(ids, 1, 3, overlap=0.9).stride == 1
  with pytest.raises(ValueError, match="overlap"):
    data.lane_batcher(ids, 1, 5, overlap=1.0)
  with pytest.raises(ValueError, match="batch_size"):
    data.lane_batcher(ids, 0, 5)


def same(batches_a, batches_b):
  return len(batches_a) == len(batches_b) and all(
      all(np.array_equal(x, y) for x, y in zip(a, b)) for a, b in zip(batches_a, batches_b))


def test_deterministic_and_resumable(alice_file):
  corpus = data.load_corpus(alice_file)
  batcher = data.lane_batcher(corpus.train_ids, 16, 25)
  _, straight = take(batcher, batcher.init(7), 400)
  assert same(take(batcher, batcher.init(7), 400)[1], straight)
  assert not same(take(batcher, batcher.init(8), 400)[1], straight)
  half, first = take(batcher, batcher.init(7), 200)
  saved = json.loads(json.dumps(half.to_dict()))
  fresh = data.lane_batcher(corpus.train_ids, 16, 25)
  _, rest = take(fresh, data.LaneState.from_dict(saved), 200)
  assert same(first + rest, straight)
  as_jax = type(half)(*(jnp.asarray(x) for x in half))  # as a checkpoint restores it
  assert same(first + take(fresh, as_jax, 200)[1], straight)
  assert sum(b.reset.sum() for b in straight[1:]) > 0  # resets happened after step 0


def test_resume_at_every_step():
  batcher = data.lane_batcher(np.arange(40, dtype=np.int32), 3, 5, overlap=0.5)
  _, straight = take(batcher, batcher.init(11), 40)
  for k in range(40):  # many resets, so the generator's buffered 32-bit half matters too
    state, first = take(batcher, batcher.init(11), k)
    restored = data.LaneState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert same(first + take(batcher, restored, 40 - k)[1], straight), k


# -------------------------------------------------------------- validation windows


@pytest.mark.parametrize("L, S, lanes", [(26, 5, 1), (27, 5, 1), (100, 7, 3), (12, 4, 8)])
def test_validation_covers_every_transition_once(L, S, lanes):
  ids = np.random.default_rng(0).integers(0, 50, L).astype(np.int32)
  windows = list(data.validation_windows(ids, S, lanes))
  assert all(b.inputs.shape == b.targets.shape == m.shape == (lanes, S) for b, m in windows)
  masks = np.stack([m for _, m in windows])  # [K, b, S]
  assert masks.dtype == np.float32 and masks.sum() == L - 1
  np.testing.assert_array_equal([b.reset for b, _ in windows],
                                [[k == 0] * lanes for k in range(len(windows))])
  inputs, targets = [], []
  for j in range(lanes):  # lane j's chunk, read window after window, continues lane j - 1's
    for b, m in windows:
      inputs += b.inputs[j][m[j] > 0].tolist()
      targets += b.targets[j][m[j] > 0].tolist()
      assert (b.inputs[j][m[j] == 0] == 0).all()
  assert inputs == ids[:-1].tolist() and targets == ids[1:].tolist()


def test_alice_validation_windows(alice_file):
  corpus = data.load_corpus(alice_file)
  windows = list(data.validation_windows(corpus.val_ids, 25))
  assert len(windows) == -(-14_847 // 25) == 594
  assert sum(m.sum() for _, m in windows) == 14_847
  assert list(data.validation_windows(np.zeros(0, np.int32), 25)) == []
