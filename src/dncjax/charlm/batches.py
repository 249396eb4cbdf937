"""Batches of a text's ids: the seed's training lanes, and the windows that score a split
(the development split, or the tail at the final scoring).

Training batches follow the seed (krocki/dnc): B lanes, each a pointer into the training
ids; a step reads inputs ids[p:p+S] and targets ids[p+1:p+S+1] per lane. Every lane is
reset at the first step, and later when p + S + 1 >= n (so, as in the seed, no window
ends on the last training character); a reset lane restarts at rng.integers(0, n-1-S).
After each step the pointers advance by stride = max(int(S * (1 - overlap)), 1).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from dncjax.charlm.data import DataError
from dncjax.pytrees import Batch


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
    """Inverse of `to_dict`: the int32 pointers and step, the uint32 RNG words."""
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


# ------------------------------------------------------------- windows of a scored split


def validation_windows(ids: np.ndarray, seq_length: int,
                       lanes: int = 1) -> Iterator[tuple[Batch, np.ndarray]]:
  """An iterator of (Batch, mask [b, S] float32) covering the ids [L] of a split once.

  Scored are the L - 1 transitions ids[t] -> ids[t+1] inside the split (the first
  character is only an input: nothing is primed from the text before it). They are cut
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
    raise DataError(f"the split scored holds {L} characters, fewer than the {S + 1} of "
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
