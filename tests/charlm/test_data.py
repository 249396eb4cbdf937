"""Tests for dncjax.charlm.data: loading, errors, the download, vocabulary and split (the
batches of a text: test_batches.py)."""

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

import numpy as np
import pytest

from dncjax.charlm import data


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
  assert corpus.tail_length == len(corpus.dev_ids) == 14_848
  assert len(corpus.train_ids) == 148_481 - 2 * 14_848
  assert corpus.vocab.chars == "".join(sorted(set(text)))
  parts = (corpus.train_ids, corpus.dev_ids, corpus.tail_ids())
  assert "".join(corpus.vocab.decode(ids) for ids in parts) == text


def test_split_in_order_with_the_whole_text_vocab(tmp_path):
  text = b"abcdefghij" * 3 + b"klmnopqrst" + b"XYZ" * 2 + b"UVWX"  # 50 characters
  corpus = data.load_corpus(write(tmp_path, text), val_fraction=0.1, dev_fraction=0.2)
  assert corpus.vocab.decode(corpus.tail_ids()) == "ZUVWX"  # int(50 * 0.1) = 5
  assert corpus.vocab.decode(corpus.dev_ids) == "pqrstXYZXY"  # int(50 * 0.2) = 10, before it
  assert corpus.vocab.decode(corpus.train_ids) == text.decode()[:35]
  assert set(corpus.vocab.chars) >= set("UVWXYZ")
  assert data.split_text("abcdef", 0.0, 0.0) == ("abcdef", "", "")
  assert data.split_text("abcdefghij", 0.1, 0.2) == ("abcdefg", "hi", "j")
  for fractions, flag in (((1.0, 0.0), "--val_fraction"), ((0.1, -0.1), "--dev_fraction"),
                          ((0.5, 0.5), "--dev_fraction 0.5 and --val_fraction 0.5")):
    with pytest.raises(ValueError, match=flag):
      data.split_text("abc", *fractions)


def test_text_too_short(tmp_path):
  path = write(tmp_path, b"x" * 30)
  with pytest.raises(data.DataError, match="training split has 24 characters") as e:
    data.load_corpus(path, seq_length=23)  # 24 train + 3 development + 3 tail
  assert str(path) in str(e.value)
  with pytest.raises(data.DataError, match="development split has 3 characters.*--dev_fraction"):
    data.load_corpus(path, seq_length=5)
  with pytest.raises(data.DataError, match="held-out tail has 3 characters.*--val_fraction"):
    data.load_corpus(path, seq_length=5, dev_fraction=0.0)
  short = data.load_corpus(path, seq_length=5, val_fraction=0.0, dev_fraction=0.0)
  assert len(short.dev_ids) == short.tail_length == 0 and len(short.train_ids) == 30
  corpus = data.load_corpus(path, seq_length=2)
  assert len(corpus.dev_ids) == corpus.tail_length == 3
