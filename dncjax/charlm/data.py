"""Character data: loading a text, its vocabulary, the train/validation split and batching.

  text   a UTF-8 file read with universal newlines ('\\r\\n' and '\\r' become '\\n'), as
         Python's `open(path, 'r')` reads it; alice29.txt is 148,481 characters, V = 73.
  vocab  the sorted distinct characters of the WHOLE text (train and validation), so
         every validation character is encodable; id i <-> vocab.chars[i].
  split  validation = the last int(len * val_fraction) characters (the tail; 14,848 for
         alice at 0.1), training = the rest. Nothing in this module reads the tail while
         training: the lane batcher only ever sees the training ids.

Training batches follow the seed (krocki/dnc): B lanes, each a pointer into the training
ids; a step reads inputs ids[p:p+S] and targets ids[p+1:p+S+1] per lane. Every lane is
reset at the first step, and later when p + S + 1 >= n (so, as in the seed, no window
ends on the last training character); a reset lane restarts at rng.integers(0, n-1-S).
After each step the pointers advance by stride = max(int(S * (1 - overlap)), 1).

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
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from dncjax.pytrees import Batch

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
  """$XDG_CACHE_HOME/dncjax, or ~/.cache/dncjax."""
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base) / "dncjax"


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
    return list(self.chars)

  @property
  def size(self) -> int:
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


class Corpus(NamedTuple):
  path: str
  vocab: Vocab           # built from the whole text
  train_ids: np.ndarray  # int32 [n_train]: the head of the text
  val_ids: np.ndarray    # int32 [n_val]: the tail, n_val = int(len * val_fraction)


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
  """(train, validation): validation is the last int(len(text) * val_fraction) characters."""
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
  n_val = int(len(text) * val_fraction)
  return text[:len(text) - n_val], text[len(text) - n_val:]


def check_lengths(n_train: int, n_val: int, seq_length: int, where: str = "the text") -> None:
  """DataError unless both splits hold a window of S = seq_length (see the module doc).

  Training needs S + 2 characters: a window reads S + 1 of them and, as in the seed, may
  not end on the last one. A non-empty validation split needs S + 1.
  """
  S = seq_length
  if n_train < S + 2:
    raise DataError(f"{where}: the training split has {n_train} characters, fewer than the "
                    f"{S + 2} that windows of seq_length {S} need")
  if 0 < n_val < S + 1:
    raise DataError(f"{where}: the validation split has {n_val} characters, fewer than the "
                    f"{S + 1} of one window of seq_length {S}; lower seq_length or set "
                    f"val_fraction to 0")


def load_corpus(path: str | os.PathLike | None = None, val_fraction: float = 0.1,
                seq_length: int | None = None, url: str = ALICE_URL) -> Corpus:
  """Reads `path` (default: alice29.txt, see `alice_path`), encodes and splits it.

  With `seq_length` given, a text too short for its windows raises DataError here.
  """
  path = alice_path(url) if path is None else Path(path)
  text = read_text(path)
  vocab = Vocab.from_text(text)
  train, val = split_text(text, val_fraction)
  if seq_length is not None:
    check_lengths(len(train), len(val), seq_length, str(path))
  return Corpus(str(path), vocab, vocab.encode(train), vocab.encode(val))


# ------------------------------------------------------------------- training batches


_RNG_WORDS = 10  # PCG64: 128-bit state (4 x 32), 128-bit increment (4 x 32), has_uint32, uinteger


def _rng_to_words(rng: np.random.Generator) -> np.ndarray:
  s = rng.bit_generator.state
  state, inc = s["state"]["state"], s["state"]["inc"]
  words = [(state >> (32 * i)) & 0xFFFFFFFF for i in range(4)]
  words += [(inc >> (32 * i)) & 0xFFFFFFFF for i in range(4)]
  return np.array(words + [s["has_uint32"], s["uinteger"]], np.uint32)


def _rng_from_words(words) -> np.random.Generator:
  w = [int(x) for x in np.asarray(words, np.uint32).reshape(-1)]
  if len(w) != _RNG_WORDS:
    raise ValueError(f"a lane RNG state is {_RNG_WORDS} uint32 words, got {len(w)}")
  bits = np.random.PCG64(0)
  bits.state = {
      "bit_generator": "PCG64",
      "state": {"state": sum(x << (32 * i) for i, x in enumerate(w[0:4])),
                "inc": sum(x << (32 * i) for i, x in enumerate(w[4:8]))},
      "has_uint32": w[8], "uinteger": w[9]}
  return np.random.Generator(bits)


class LaneState(NamedTuple):
  """Where the lanes stand: plain int32/uint32 arrays, a pytree a checkpoint can hold."""
  pointers: np.ndarray  # int32 [B]: where each lane's next window starts
  step: np.ndarray      # int32 []: windows taken so far (at 0 every lane is reset)
  rng: np.ndarray       # uint32 [10]: the PCG64 generator's state

  def to_dict(self) -> dict[str, Any]:
    """JSON-able: lists and ints."""
    return {"pointers": np.asarray(self.pointers).tolist(), "step": int(self.step),
            "rng": np.asarray(self.rng).tolist()}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> LaneState:
    return cls(np.asarray(d["pointers"], np.int32), np.array(d["step"], np.int32),
               np.asarray(d["rng"], np.uint32))


class LaneBatcher(NamedTuple):
  """init(seed) -> LaneState;  next(LaneState) -> (LaneState, Batch) with int32 [B, S] ids."""
  init: Callable[[int], LaneState]
  next: Callable[[LaneState], tuple[LaneState, Batch]]
  stride: int


def lane_batcher(ids: np.ndarray, batch_size: int, seq_length: int,
                 overlap: float = 0.0) -> LaneBatcher:
  """The seed's batching over the training ids [n] (see the module doc).

  overlap 0 advances by S (the seed's clean scripts); dnc-debug.py's 2/3 gives int(S/3).
  Pure: the same LaneState always gives the same batch, so a restored state resumes a run.
  """
  ids = np.asarray(ids, np.int32)
  B, S, n = batch_size, seq_length, len(ids)
  for name, value in (("batch_size", B), ("seq_length", S)):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f"{name} must be a positive integer, got {value!r}")
  if not 0.0 <= overlap < 1.0:
    raise ValueError(f"overlap must be in [0, 1), got {overlap}")
  if n < S + 2:
    raise DataError(f"the training ids hold {n} characters, fewer than the {S + 2} that "
                    f"windows of seq_length {S} need")
  stride = max(int(S * (1.0 - overlap) + 1e-9), 1)  # 1e-9: 20 * (1 - 0.9) is 2, not 1
  offsets = np.arange(S + 1)

  def init(seed: int) -> LaneState:
    rng = np.random.Generator(np.random.PCG64(seed))
    return LaneState(np.zeros(B, np.int32), np.array(0, np.int32), _rng_to_words(rng))

  def next(state: LaneState) -> tuple[LaneState, Batch]:
    p = np.array(state.pointers, np.int64)
    if p.shape != (B,):
      raise ValueError(f"LaneState holds {p.shape} pointers for batch_size {B}")
    rng = _rng_from_words(state.rng)
    reset = (p + S + 1 >= n) | (int(state.step) == 0)
    p[reset] = rng.integers(0, n - 1 - S, size=int(reset.sum()))
    window = ids[p[:, None] + offsets]  # [B, S+1]
    batch = Batch(window[:, :-1], window[:, 1:], reset)
    return LaneState((p + stride).astype(np.int32), np.array(int(state.step) + 1, np.int32),
                     _rng_to_words(rng)), batch

  return LaneBatcher(init, next, stride)


# ----------------------------------------------------------------- validation windows


def validation_windows(ids: np.ndarray, seq_length: int,
                       lanes: int = 1) -> Iterator[tuple[Batch, np.ndarray]]:
  """An iterator of (Batch, mask [b, S] float32) covering the validation ids [L] once.

  Scored are the L - 1 transitions ids[t] -> ids[t+1] inside the split (the first
  character is only an input: nothing is primed from the training text). They are cut
  into `lanes` = b contiguous chunks (lengths differing by at most 1); lane j reads its
  chunk left to right in windows of S, reset only at the first window, so the caller
  carries each lane's state from one window to the next. Positions past a chunk's end
  hold id 0 with mask 0; sum(mask) over all windows is L - 1 (nothing when L = 0).
  lanes = 1 scores with the longest context; more lanes are faster, but each chunk
  starts from the initial state.
  """
  ids = np.asarray(ids, np.int32)
  S, L = seq_length, len(ids)
  if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes <= 0:
    raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
  if 0 < L < S + 1:
    raise DataError(f"the validation ids hold {L} characters, fewer than the {S + 1} of "
                    f"one window of seq_length {S}")
  bounds = (np.arange(lanes + 1) * max(L - 1, 0)) // lanes
  starts, lengths = bounds[:-1, None], np.diff(bounds)[:, None]  # [b, 1]
  t = np.arange(S)[None, :]

  def windows():
    for k in range(-(-int(lengths.max()) // S)):
      inside = k * S + t < lengths  # [b, S]
      at = np.where(inside, starts + k * S + t, 0)
      yield Batch(np.where(inside, ids[at], 0).astype(np.int32),
                  np.where(inside, ids[np.minimum(at + 1, L - 1)], 0).astype(np.int32),
                  np.full(lanes, k == 0)), inside.astype(np.float32)

  return windows()
