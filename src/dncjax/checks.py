"""Validation of configuration values: one-line ValueErrors that name the setting."""

from __future__ import annotations

import math
import os


def check_positive(config, *names: str) -> None:
  """Raises ValueError naming the first field of `config` that is not a positive int (the
  sizes `input_size` and `output_size` may also be None: not yet set by the job)."""
  for name in names:
    value = getattr(config, name)
    if value is None and name in ("input_size", "output_size"):
      continue
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_number(name: str, value, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, optional: bool = False):
  """Raises ValueError naming `name` unless `value` is a finite number in the range
  (`low_open`/`high_open`: the bound itself excluded); None passes when `optional`."""
  if value is None and optional:
    return
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise ValueError(f"{name} must be a finite number, got {value!r}")
  below = value <= low if low_open else value < low if low is not None else False
  above = value >= high if high_open else value > high if high is not None else False
  if below or above:
    lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    where = (f"in {lo}, {hi}" if low is not None and high is not None
             else "positive" if low == 0 and low_open
             else f"{'>' if low_open else '>='} {low:g}" if low is not None
             else f"{'<' if high_open else '<='} {high:g}")
    raise ValueError(f"{name} must be {where}, got {value!r}")


def check_choice(name: str, value, choices: tuple) -> None:
  """Raises ValueError naming `name` unless `value` is one of `choices`."""
  if value not in choices:
    raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


DTYPES = ("float32", "float64")


def check_dtype(dtype: str) -> None:
  """Validates a config dtype (float64 also needs `jax_enable_x64`: see `models.build`)."""
  check_choice("dtype", dtype, DTYPES)


LINK_KERNEL_VARIABLE = "DNCJAX_LINK_KERNEL"
LINK_KERNELS = ("auto", "native", "xla")


def link_kernel() -> str:
  """The DNC's link step that $DNCJAX_LINK_KERNEL asks for (models.native): 'auto' when
  unset; ValueError naming the variable for anything but LINK_KERNELS."""
  value = os.environ.get(LINK_KERNEL_VARIABLE, "").strip().lower() or "auto"
  check_choice(LINK_KERNEL_VARIABLE, value, LINK_KERNELS)
  return value


def check_seed(seed) -> None:
  """A seed is an integer in [0, 2**32) (numpy's and jax's seeds both take it)."""
  if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
    raise ValueError(f"--seed must be an integer in [0, 2**32), got {seed!r}")
