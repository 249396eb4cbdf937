"""Character data: loading a text, its vocabulary and its three splits (batching them is
`batches.py`).

  text   a UTF-8 file read with universal newlines ('\\r\\n' and '\\r' become '\\n'), as
         Python's `open(path, 'r')` reads it; alice29.txt is 148,481 characters, V = 73.
  vocab  the sorted distinct characters of the WHOLE text, so every character of every
         split is encodable; id i <-> vocab.chars[i]. The vocabulary is all that the tail
         gives before the final scoring.
  split  in order, training | development | tail. The tail is the last
         int(len * val_fraction) characters (14,848 for alice at 0.1), the development
         split the int(len * dev_fraction) characters just before it (14,848 at 0.1), and
         training the rest. Training reads only the training ids; everything chosen
         (evaluations, the best checkpoint, stops, sweeps, dynamic evaluation's settings)
         is chosen on the development split; the tail is read only by the final scoring,
         through `Corpus.tail_ids()`, once everything is fixed.

The default corpus alice29.txt is looked for in $DNCJAX_DATA_DIR, then in the user cache
($XDG_CACHE_HOME/dncjax or ~/.cache/dncjax), and otherwise downloaded once from the
Canterbury corpus, checked against its SHA-256 and written atomically into the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import os
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from dncjax.charlm.config import DataConfig, check_fractions
from dncjax import folders


ALICE = "alice29.txt"
ALICE_URL = "https://corpus.canterbury.ac.nz/resources/cantrbry.tar.gz"
ALICE_SHA256 = "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"
_HOW = f"set DNCJAX_DATA_DIR to a folder holding {ALICE}, or pass --data PATH"


class DataError(ValueError):
  """A corpus that cannot be used: missing, unreadable, not UTF-8, too short, ..."""


# ---------------------------------------------------------------------------- loading


MAX_TEXT_BYTES = 2**30  # the corpus is held in memory several times over (text, ids, lanes)


def read_text(path: str | os.PathLike) -> str:
  """The text of a UTF-8 file with universal newlines; DataError if it cannot be used."""
  path = Path(path)
  if not path.exists():
    raise DataError(f"no such file: {path}")
  if path.is_dir():
    raise DataError(f"{path} is a directory, not a text file")
  if not path.is_file():  # a FIFO would block, /dev/zero never ends
    raise DataError(f"{path} is not a regular file (a pipe or device cannot be used as text)")
  if path.stat().st_size > MAX_TEXT_BYTES:
    raise DataError(f"{path} holds {path.stat().st_size:,} bytes, more than the "
                    f"{MAX_TEXT_BYTES:,} a character corpus may have")
  try:
    raw = path.read_bytes()
  except OSError as e:  # e.g. PermissionError: "cannot read PATH: Permission denied"
    raise DataError(f"cannot read {path}: {e.strerror or e}") from e
  if not raw:
    raise DataError(f"{path} is empty")
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{path} is not UTF-8: invalid byte 0x{raw[e.start]:02x} at byte "
                    f"offset {e.start}") from e
  return text.replace("\r\n", "\n").replace("\r", "\n")


def cache_dir() -> Path:
  """$XDG_CACHE_HOME/dncjax, or ~/.cache/dncjax (the compilation cache's home too)."""
  return folders.user_cache()


def download_alice(dest: str | os.PathLike, url: str = ALICE_URL,
                   timeout: float = 60.0) -> Path:
  """Fetches the tar.gz at `url`, checks its alice29.txt and writes it atomically to `dest`.

  Nothing is written unless the SHA-256 of the raw bytes is ALICE_SHA256.
  """
  dest = Path(dest)
  try:
    with urllib.request.urlopen(url, timeout=timeout) as response:
      archive = response.read()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
      member = next((m for m in tar.getmembers()
                     if m.isfile() and PurePosixPath(m.name).name == ALICE), None)
      if member is None:
        raise DataError(f"the archive at {url} holds no {ALICE}; {_HOW}")
      raw = tar.extractfile(member).read()
  except DataError:
    raise
  except (OSError, ValueError, EOFError, zlib.error, tarfile.TarError,
          http.client.HTTPException) as e:
    raise DataError(f"could not download {ALICE} from {url} ({e}); {_HOW}") from e
  digest = hashlib.sha256(raw).hexdigest()
  if digest != ALICE_SHA256:
    raise DataError(f"{ALICE} downloaded from {url} has SHA-256 {digest}, expected "
                    f"{ALICE_SHA256}; {_HOW}")
  tmp = None
  try:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
      f.write(raw)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, dest)
  except OSError as e:
    if tmp is not None and os.path.exists(tmp):
      os.unlink(tmp)
    raise DataError(f"cannot write {dest} ({e.strerror or e}); {_HOW}") from e
  return dest


def alice_path(url: str = ALICE_URL, timeout: float = 60.0) -> Path:
  """$DNCJAX_DATA_DIR/alice29.txt, else the cached copy, else a fresh download into the cache."""
  data_dir = os.environ.get("DNCJAX_DATA_DIR")
  if data_dir and (Path(data_dir) / ALICE).is_file():
    return Path(data_dir) / ALICE
  cached = cache_dir() / ALICE
  if cached.is_file() and hashlib.sha256(cached.read_bytes()).hexdigest() == ALICE_SHA256:
    return cached
  return download_alice(cached, url, timeout)


# ------------------------------------------------------------------------- vocabulary


@dataclasses.dataclass(frozen=True)
class Vocab:
  """V distinct characters in sorted order; id i <-> chars[i]."""
  chars: str

  @classmethod
  def from_text(cls, text: str) -> Vocab:
    """The vocabulary of `text`: its distinct characters, sorted."""
    return cls("".join(sorted(set(text))))

  @classmethod
  def from_list(cls, chars: Sequence[str]) -> Vocab:
    """Inverse of `to_list` (e.g. from a checkpoint); the list must be sorted and distinct."""
    chars = list(chars)
    if not all(isinstance(c, str) and len(c) == 1 for c in chars):
      raise DataError("a vocabulary must be a list of single characters")
    if chars != sorted(set(chars)):
      raise DataError("a vocabulary must list distinct characters in sorted order")
    return cls("".join(chars))

  def to_list(self) -> list[str]:
    """The V characters as a list (JSON-able, e.g. for a checkpoint); inverse of
    `from_list`."""
    return list(self.chars)

  @property
  def size(self) -> int:
    """V, the number of characters."""
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    """int32 ids [len(text)]; DataError naming any character not in the vocabulary."""
    unknown = set(text) - set(self.chars)
    if unknown:
      raise DataError(f"characters not in the vocabulary: "
                      f"{', '.join(repr(c) for c in sorted(unknown))}")
    table = np.frombuffer(self.chars.encode("utf-32-le", "surrogatepass"), np.uint32)
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    return np.searchsorted(table, codes).astype(np.int32)

  def decode(self, ids) -> str:
    """The string of integer ids (any shape, read in C order)."""
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (not np.issubdtype(ids.dtype, np.integer)
                     or ids.min() < 0 or ids.max() >= self.size):
      raise DataError(f"ids must be integers in [0, {self.size}), got {ids.dtype} "
                      f"in [{ids.min()}, {ids.max()}]")
    return "".join(self.chars[i] for i in ids.tolist())


# ------------------------------------------------------------------------------ split


class Corpus:
  """A text read and split: `path`, the file read; `vocab`, its `Vocab` (V characters, of
  the whole text); `train_ids`, int32 [n_train], the head; `dev_ids`, int32 [n_dev], the
  development split after it. The tail's ids are behind `tail_ids()`, which only the
  final scoring calls (`charlm.scoring`); `tail_length` is how long it is, for checks
  made before training."""

  def __init__(self, path: str, vocab: Vocab, train_ids: np.ndarray, dev_ids: np.ndarray,
               tail_ids: np.ndarray):
    self.path, self.vocab = path, vocab
    self.train_ids, self.dev_ids = train_ids, dev_ids
    self.__tail = tail_ids
    self.tail_length = len(tail_ids)

  def tail_ids(self) -> np.ndarray:
    """int32 [n_tail]: the held-out tail, for the final scoring only (see the module doc)."""
    return self.__tail


def split_text(text: str, val_fraction: float = 0.1,
               dev_fraction: float = 0.0) -> tuple[str, str, str]:
  """(training, development, tail): the tail is the last int(len(text) * val_fraction)
  characters, the development split the int(len(text) * dev_fraction) before it."""
  for flag, value in (("--val_fraction", val_fraction), ("--dev_fraction", dev_fraction)):
    if not 0.0 <= value < 1.0:
      raise ValueError(f"{flag} must be in [0, 1), got {value}")
  check_fractions(dev_fraction, val_fraction)
  n_tail, n_dev = int(len(text) * val_fraction), int(len(text) * dev_fraction)
  n_train = len(text) - n_tail - n_dev
  return text[:n_train], text[n_train:n_train + n_dev], text[n_train + n_dev:]


def check_lengths(n_train: int, n_dev: int, n_tail: int, seq_length: int,
                  where: str = "the text") -> None:
  """DataError unless every split holds a window of S = seq_length (see the module doc).

  Training needs S + 2 characters: a window reads S + 1 of them and, as in the seed, may
  not end on the last one. A non-empty development split or tail needs S + 1.
  """
  S = seq_length
  if n_train < S + 2:
    raise DataError(f"{where}: the training split has {n_train} characters, fewer than the "
                    f"{S + 2} that windows of seq_length {S} need")
  for n, name, flag in ((n_dev, "development split", "--dev_fraction"),
                        (n_tail, "held-out tail", "--val_fraction")):
    if 0 < n < S + 1:
      raise DataError(f"{where}: the {name} has {n} characters, fewer than the {S + 1} of "
                      f"one window of seq_length {S}; lower --seqlength or change {flag} "
                      f"(0: none)")


def load_corpus(path: str | os.PathLike | None = None, val_fraction: float = 0.1,
                seq_length: int | None = None, url: str = ALICE_URL, *,
                dev_fraction: float = 0.1) -> Corpus:
  """Reads `path` (default: alice29.txt, see `alice_path`), encodes and splits it.

  With `seq_length` given, a text too short for its windows raises DataError here.
  """
  path = alice_path(url) if path is None else Path(path)
  text = read_text(path)
  vocab = Vocab.from_text(text)
  train, dev, tail = split_text(text, val_fraction, dev_fraction)
  if seq_length is not None:
    check_lengths(len(train), len(dev), len(tail), seq_length, str(path))
  return Corpus(str(path), vocab, vocab.encode(train), vocab.encode(dev), vocab.encode(tail))


def load(config: DataConfig) -> Corpus:
  """The corpus of a run's `DataConfig`: its text, split by its fractions, checked
  against its windows."""
  return load_corpus(config.path, config.val_fraction, config.seq_length,
                     dev_fraction=config.dev_fraction)
