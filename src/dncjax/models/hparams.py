"""The hyperparameters of every core: one frozen dataclass per model, and `CONFIGS`.

Each field's help text is what `--help` shows for its flag. Errors name the field; a
script names the flag the user typed instead. Nothing here imports JAX, so a script can
build its parser and check its flags before loading it; the cores that use these
configs live in `rnn.py`, `lstm.py`, `seed_dnc.py`, `dnc.py`, `sam.py` and `sdnc.py`.
"""

from __future__ import annotations

import dataclasses

from dncjax import checks
from dncjax.fields import documented, field

VARIANTS = ("seed", "textbook")     # the LSTM cell (lstm.py)
ADDRESSING = ("location", "content")  # the seed's DNC heads (seed_dnc.py)
ALLOCATION = ("lru", "dnc")         # the SDNC's write (sdnc.py)
NORM_EPS = 1e-6   # inside the norms of the cosine similarity (addressing.py)
USAGE_EPS = 1e-6  # usage clamp before the allocation sort (addressing.py)

_SIZE = "set by the job from its data"


def _sizes():
  return (field(None, f"I, input features ({_SIZE})"),
          field(None, f"O, outputs ({_SIZE})"))


def _dtype():
  return field("float32", "float32 or float64 (float64 needs jax_enable_x64: the "
               "scripts' --fp64 switches it on)", choices=checks.DTYPES)


@documented
@dataclasses.dataclass(frozen=True)
class RNNConfig:
  """The seed's vanilla RNN: h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)."""
  input_size: int | None = _sizes()[0]
  output_size: int | None = _sizes()[1]
  hidden: int = field(32, "H, hidden units")
  init_scale: float = field(0.01, "weights ~ N(0, init_scale^2) (the seed: randn * 0.01)")
  dtype: str = _dtype()

  def __post_init__(self):
    checks.check_positive(self, "input_size", "output_size", "hidden")
    checks.check_dtype(self.dtype)
    checks.check_number("init_scale", self.init_scale, 0, low_open=True)


_VARIANT_HELP = ("LSTM cell: 'seed' squashes the stored cell, c_t = tanh(g i + f c_{t-1}); "
                 "'textbook' keeps it, h_t = o tanh(c_t)")


@documented
@dataclasses.dataclass(frozen=True)
class LSTMConfig:
  """The seed's LSTM (lstm-numpy.py) or the textbook cell."""
  input_size: int | None = _sizes()[0]
  output_size: int | None = _sizes()[1]
  hidden: int = field(32, "H, hidden units")
  init_scale: float = field(0.01, "weights ~ N(0, init_scale^2)")
  forget_bias: float = field(1.0, "initial bias of the forget gate f")
  variant: str = field("seed", _VARIANT_HELP, choices=VARIANTS)
  dtype: str = _dtype()

  def __post_init__(self):
    checks.check_positive(self, "input_size", "output_size", "hidden")
    checks.check_choice("variant", self.variant, VARIANTS)
    checks.check_number("init_scale", self.init_scale, 0, low_open=True)
    checks.check_number("forget_bias", self.forget_bias)
    checks.check_dtype(self.dtype)


@documented
@dataclasses.dataclass(frozen=True)
class SeedDNCConfig:
  """The seed's simplified DNC: an LSTM controller, one write and one read head on a
  memory M [N, W], no allocation, no temporal links."""
  input_size: int | None = _sizes()[0]
  output_size: int | None = _sizes()[1]
  hidden: int = field(32, "H, controller units")
  memory_size: int = field(12, "N, memory slots")
  word_size: int = field(12, "W, numbers per memory slot")
  addressing: str = field("content", "how the heads find slots: 'content' (keys compared "
                          "with memory, dnc-debug.py) or 'location' (weights straight from "
                          "the controller, dnc-numpy.py)", choices=ADDRESSING)
  init_scale: float = field(0.01, "weights ~ N(0, init_scale^2) (dnc-debug.py: 1e-5)")
  forget_bias: float = field(1.0, "initial bias of the forget gate f")
  variant: str = field("seed", _VARIANT_HELP, choices=VARIANTS)
  reset_memory: bool = field(True, "wipe the memory and read vector at each window, as the "
                             "seed does (the controller's state carries over)")
  dtype: str = _dtype()

  def __post_init__(self):
    checks.check_positive(self, "input_size", "output_size", "hidden", "memory_size", "word_size")
    checks.check_number("init_scale", self.init_scale, 0, low_open=True)
    checks.check_number("forget_bias", self.forget_bias)
    checks.check_choice("addressing", self.addressing, ADDRESSING)
    checks.check_choice("variant", self.variant, VARIANTS)
    checks.check_dtype(self.dtype)


def _check_memory_core(config, *more_positive: str) -> None:
  """The checks every memory core's config shares (the DNC's and the sparse cores'): sizes
  (and `more_positive`) positive, the LSTM variant, clip, init scale, forget bias, norm_eps,
  dtype."""
  checks.check_positive(config, "input_size", "output_size", "hidden", "memory_size",
                        "word_size", "read_heads", *more_positive, "controller_layers")
  checks.check_choice("variant", config.variant, VARIANTS)
  checks.check_number("controller_clip", config.controller_clip, 0, low_open=True,
                      optional=True)
  checks.check_number("init_scale", config.init_scale, 0, low_open=True)
  checks.check_number("forget_bias", config.forget_bias)
  checks.check_number("norm_eps", config.norm_eps, 0, 1, low_open=True, high_open=True)
  checks.check_dtype(config.dtype)


@documented
@dataclasses.dataclass(frozen=True)
class DNCConfig:
  """The paper's DNC: an LSTM controller of L layers, one write head, R read heads, content
  look-up, dynamic allocation and temporal links on a memory M [N, W]."""
  input_size: int | None = _sizes()[0]
  output_size: int | None = _sizes()[1]
  hidden: int = field(64, "H, units per controller layer")
  memory_size: int = field(16, "N, memory slots")
  word_size: int = field(16, "W, numbers per memory slot")
  read_heads: int = field(4, "R, read heads")
  controller_layers: int = field(1, "L, LSTM layers of the controller")
  variant: str = field("textbook", _VARIANT_HELP + " (the paper: textbook)", choices=VARIANTS)
  controller_clip: float | None = field(None, "clip the controller's h, c and the output to "
                                        "[-v, v] (deepmind/dnc: 20; none: no clip)")
  init_scale: float = field(0.1, "weights ~ N(0, init_scale^2) (about 1/sqrt(fan-in) at H=64)")
  forget_bias: float = field(1.0, "initial bias of the forget gate f")
  reset_memory: bool = field(False, "wipe memory, usage, links, weights and reads at each "
                             "window (the controller's state carries over)")
  deallocate: bool = field(False, "freeing a slot also wipes its contents (Csordas & "
                           "Schmidhuber 2019; not the paper)")
  link_sharpness: bool = field(False, "sharpen the forward/backward weightings f_t, b_t with a "
                               "learned exponent per read head (Csordas & Schmidhuber 2019)")
  key_masking: bool = field(False, "learned masks on the content look-ups' keys and memory "
                            "(Csordas & Schmidhuber 2019)")
  remat: bool = field(False, "recompute each step in the backward pass (jax.checkpoint) "
                      "instead of storing what it needs: less memory, slower on a CPU")
  link_history: bool = field(True, "training keeps every L_t in one buffer that the CPU link "
                             "kernel writes in place (models/history.py; without remat, "
                             "where the kernel is used); off: lax.scan keeps them")
  access_kernels: bool = field(True, "the write and the read run as CPU kernels where the "
                               "link kernel is used (models/native/access.py); off: as "
                               "XLA's operations")
  norm_eps: float = field(NORM_EPS, "epsilon inside the norms of the cosine similarity")
  usage_eps: float = field(USAGE_EPS, "usage is clamped to [eps, 1 - eps] before allocation")
  dtype: str = _dtype()

  def __post_init__(self):
    _check_memory_core(self)
    checks.check_number("usage_eps", self.usage_eps, 0, 1, low_open=True, high_open=True)


@dataclasses.dataclass(frozen=True)
class SparseMemoryConfig:
  """The settings that the sparse memory cores `sam` and `sdnc` share (Rae et al. 2016):
  the DNC's LSTM controller and K-sparse reads and writes on a memory M [N, W]."""
  input_size: int | None = _sizes()[0]
  output_size: int | None = _sizes()[1]
  hidden: int = field(64, "H, units per controller layer")
  memory_size: int = field(128, "N, memory slots (a step costs O(N (W + K)), not O(N^2))")
  word_size: int = field(16, "W, numbers per memory slot")
  read_heads: int = field(4, "R, read heads")
  sparse_k: int = field(8, "K, the slots each read and write weighting touches (top K of the N "
                        "content scores; K <= N)")
  controller_layers: int = field(1, "L, LSTM layers of the controller")
  variant: str = field("textbook", _VARIANT_HELP + " (the paper: textbook)", choices=VARIANTS)
  controller_clip: float | None = field(None, "clip the controller's h, c and the output to "
                                        "[-v, v] (none: no clip)")
  init_scale: float = field(0.1, "weights ~ N(0, init_scale^2)")
  forget_bias: float = field(1.0, "initial bias of the forget gate f")
  access_threshold: float = field(0.005, "delta: slot i counts as accessed at step t when "
                                  "w^w_t[i] + sum_h w^{r,h}_t[i] > delta (the least recently "
                                  "used slot is the one accessed longest ago)")
  reset_memory: bool = field(False, "wipe the memory access state at each window (the "
                             "controller's state carries over)")
  remat: bool = field(False, "recompute each step in the backward pass (jax.checkpoint): "
                      "each step's whole state is stored instead of what its backward pass "
                      "needs (K rows of M, the links' K entries per slot); slower")
  norm_eps: float = field(NORM_EPS, "epsilon inside the norms of the cosine similarity")
  dtype: str = _dtype()

  def __post_init__(self):
    _check_memory_core(self, "sparse_k")
    if self.sparse_k > self.memory_size:
      raise ValueError(f"sparse_k must be at most memory_size ({self.memory_size}), "
                       f"got {self.sparse_k}")
    checks.check_number("access_threshold", self.access_threshold, 0, 1, high_open=True)


@documented
@dataclasses.dataclass(frozen=True)
class SAMConfig(SparseMemoryConfig):
  """Sparse Access Memory (Rae et al. 2016): the DNC's controller, R read heads with K-sparse
  content reads, and a write to the previously read slots or the least recently used one."""


_ALLOCATION_HELP = ("where the write goes besides its other target: 'lru' (the paper's SDNC) "
                    "interpolates the previously read slots and the least recently used one; "
                    "'dnc' takes the DNC's usage u_t, allocation a_t (top K) and content "
                    "write (at sparse_k = memory_size the step equals the dense DNC's)")


@documented
@dataclasses.dataclass(frozen=True)
class SDNCConfig(SparseMemoryConfig):
  """The sparse DNC (Rae et al. 2016): the DNC's controller and access with K-sparse
  weightings and temporal links kept as K entries per row of L_t and of L_t^T."""
  allocation: str = field("lru", _ALLOCATION_HELP, choices=ALLOCATION)
  usage_eps: float = field(USAGE_EPS, "usage is clamped to [eps, 1 - eps] before allocation "
                           "(allocation 'dnc')")
  link_history: bool = field(True, "training updates the links in place with a journal of "
                             "each step's changes, by the CPU kernels "
                             "(models/sparse_history.py; without remat, where the kernels "
                             "are used); off: lax.scan keeps every step's links")

  def __post_init__(self):
    super().__post_init__()
    checks.check_choice("allocation", self.allocation, ALLOCATION)
    checks.check_number("usage_eps", self.usage_eps, 0, 1, low_open=True, high_open=True)


CONFIGS: dict[str, type] = {
    "rnn": RNNConfig,
    "lstm": LSTMConfig,
    "seed_dnc": SeedDNCConfig,
    "dnc": DNCConfig,
    "sam": SAMConfig,
    "sdnc": SDNCConfig,
}
