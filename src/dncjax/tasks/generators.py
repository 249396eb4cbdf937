"""The algorithmic tasks of the NTM and DNC papers, drawn as padded batches.

Tasks (as in Graves et al. 2014, "Neural Turing Machines", section 4), each drawn as B
sequences padded to one length T per `TaskConfig`, so a jitted train step compiles once:

  copy                L random bit vectors, a delimiter, then the L vectors again
  repeat_copy         the same with a repeat count n: the answer is the L vectors n times,
                      then an end marker
  associative_recall  K distinct items of `item_length` vectors, each after an item delimiter,
                      then one of the first K - 1 items between query delimiters; the
                      answer is the item that followed it

A batch is `Sequences(inputs [B, T, I], targets [B, T, O], mask [B, T])`; the mask is 1
exactly on the answer phase (the only scored steps). Input channels: the `bits` data
bits, then the delimiter channel(s); output channels: the bits (repeat copy: + the end
marker).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from dncjax import checks
from dncjax.fields import documented, field as _field

TASKS = ("copy", "repeat_copy", "associative_recall")


@documented
@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """A task and its sizes. `min_length`..`max_length` counts vectors (associative recall:
  items); the repeat count channel holds n / max_repeats."""
  name: str = _field("copy", "the task", flag="--task", choices=TASKS)
  bits: int = _field(8, "bits per vector")
  min_length: int = _field(1, "shortest sequence (associative recall: items)")
  max_length: int = _field(10, "longest sequence (associative recall: items)")
  min_repeats: int = _field(1, "repeat copy: fewest repeats")
  max_repeats: int = _field(3, "repeat copy: most repeats")
  item_length: int = _field(3, "associative recall: vectors per item")

  def __post_init__(self):
    if self.name not in TASKS:
      raise ValueError(f"unknown task {self.name!r}; choose one of: {', '.join(TASKS)}")
    checks.check_positive(self, "bits", "min_length", "max_length", "min_repeats",
                        "max_repeats", "item_length")
    if self.min_length > self.max_length:
      raise ValueError(f"min_length {self.min_length} > max_length {self.max_length}")
    if self.min_repeats > self.max_repeats:
      raise ValueError(f"min_repeats {self.min_repeats} > max_repeats {self.max_repeats}")
    if self.name == "associative_recall" and self.min_length < 2:
      raise ValueError("associative_recall needs min_length >= 2 items")
    if self.name == "associative_recall" and 2 ** (self.bits * self.item_length) < self.max_length:
      raise ValueError(f"{self.max_length} distinct items do not fit in "
                       f"{self.item_length} x {self.bits} bits")

  @property
  def input_size(self) -> int:
    """I: the bits + 1 delimiter (copy) or + 2 (repeat count / query delimiter)."""
    return self.bits + (1 if self.name == "copy" else 2)

  @property
  def output_size(self) -> int:
    """O: the bits (+ the end marker for repeat copy)."""
    return self.bits + (1 if self.name == "repeat_copy" else 0)

  @property
  def time_steps(self) -> int:
    """T, the padded length that fits the longest sequence."""
    L, m = self.max_length, self.item_length
    if self.name == "copy":
      return 2 * L + 1
    if self.name == "repeat_copy":
      return L + 1 + L * self.max_repeats + 1
    return L * (m + 1) + m + 2 + m

  def at_length(self, length: int) -> "TaskConfig":
    """The same task with every sequence of `length` (e.g. a generalisation test)."""
    return dataclasses.replace(self, min_length=length, max_length=length)


class Sequences(NamedTuple):
  """A batch of task sequences: inputs [B, T, I] and targets [B, T, O], float32;
  mask [B, T] float32, 1 on the answer phase (the steps scored)."""
  inputs: np.ndarray   # [B, T, I] float32
  targets: np.ndarray  # [B, T, O] float32
  mask: np.ndarray     # [B, T] float32, 1 on the answer phase


def _copy(config, rng, L, x_TxI, y_TxO, mask_T):
  """L vectors, the delimiter at t = L, the answer at t = L+1 .. 2L."""
  seq_LxD = rng.integers(0, 2, (L, config.bits))
  x_TxI[:L, :config.bits] = seq_LxD
  x_TxI[L, config.bits] = 1
  y_TxO[L + 1:2 * L + 1] = seq_LxD
  mask_T[L + 1:2 * L + 1] = 1


def _repeat_copy(config, rng, L, x_TxI, y_TxO, mask_T):
  """L vectors; at t = L the delimiter and n / max_repeats; the answer: the L vectors n
  times, then the end marker (last output channel) at t = L + 1 + n L."""
  bits = config.bits
  seq_LxD = rng.integers(0, 2, (L, bits))
  n = int(rng.integers(config.min_repeats, config.max_repeats + 1))
  x_TxI[:L, :bits] = seq_LxD
  x_TxI[L, bits] = 1
  x_TxI[L, bits + 1] = n / config.max_repeats
  end = L + 1 + n * L
  y_TxO[L + 1:end, :bits] = np.tile(seq_LxD, (n, 1))
  y_TxO[end, bits] = 1
  mask_T[L + 1:end + 1] = 1


def _associative_recall(config, rng, K, x_TxI, y_TxO, mask_T):
  """K distinct items of m vectors, each after an item delimiter (channel `bits`); item q
  (q < K - 1) between two query delimiters (channel `bits` + 1); the answer: item q + 1."""
  bits, m = config.bits, config.item_length
  items = rng.integers(0, 2, (K, m, bits))
  while len(np.unique(items.reshape(K, -1), axis=0)) < K:
    items = rng.integers(0, 2, (K, m, bits))
  q = int(rng.integers(0, K - 1))
  for k in range(K):
    x_TxI[k * (m + 1), bits] = 1
    x_TxI[k * (m + 1) + 1:(k + 1) * (m + 1), :bits] = items[k]
  t = K * (m + 1)
  x_TxI[t, bits + 1] = x_TxI[t + m + 1, bits + 1] = 1
  x_TxI[t + 1:t + m + 1, :bits] = items[q]
  y_TxO[t + m + 2:t + 2 * m + 2] = items[q + 1]
  mask_T[t + m + 2:t + 2 * m + 2] = 1


_WRITERS = {"copy": _copy, "repeat_copy": _repeat_copy, "associative_recall": _associative_recall}


def sample(config: TaskConfig, rng: np.random.Generator, batch_size: int,
           time_steps: int | None = None) -> Sequences:
  """B sequences of the task drawn with `rng` (the same rng state gives the same batch),
  each of a length drawn uniformly from min_length..max_length, zero-padded to T (or to
  `time_steps`, at least T: e.g. a longer task's T, so shapes stay those of that task)."""
  B, T = batch_size, config.time_steps if time_steps is None else time_steps
  if T < config.time_steps:
    raise ValueError(f"time_steps {T} is shorter than the task's T = {config.time_steps}")
  seqs = Sequences(np.zeros((B, T, config.input_size), np.float32),
                   np.zeros((B, T, config.output_size), np.float32), np.zeros((B, T), np.float32))
  for b in range(B):
    length = int(rng.integers(config.min_length, config.max_length + 1))
    _WRITERS[config.name](config, rng, length, seqs.inputs[b], seqs.targets[b], seqs.mask[b])
  return seqs


def sets_at_lengths(config: TaskConfig, seed: int, stream: int, lengths, count: int,
                    name: str) -> dict[str, Sequences]:
  """{"<name>_len<L>": `count` sequences of exactly length L} for each of `lengths`, drawn
  from the numpy seed [seed, stream, L]: fixed sets, apart from other streams."""
  return {f"{name}_len{n}": sample(config.at_length(n), np.random.default_rng([seed, stream, n]),
                                   count) for n in lengths}
