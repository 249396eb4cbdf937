"""Numerical gradient check: `jax.grad` against central finite differences.

For each parameter, `num_checks` entries (all of a smaller parameter) are nudged by
+-delta and the loss re-evaluated, giving the numerical gradient (L(p+d) - L(p-d)) / 2d;
the relative error is |a - n| / |a + n| (as in the seed's gradCheck). Entries are drawn
at random, first among those whose analytic gradient is NaN or Inf, then among those
the differences resolve (|a| above a floor, `resolution` times the rounding noise
eps |L| / delta), then among the rest. An entry where the loss jumps within +-2 delta
(differences with steps delta and 2 delta disagree; the DNC's allocation sorts usage)
is passed over for another. A check is valid (carries signal) when both gradients are
finite and one is above the floor. One more check per parameter compares the derivative
along a random unit direction d with <jax.grad, d> (a wrong gradient shows off the draws).

A check that cannot fail proves nothing: `verdict` fails on any NaN or Inf (loss or
either gradient), on a relative error above the tolerance, and on a parameter with fewer
valid checks than it asked for (a gradient that is zero everywhere checks nothing; its
error is NaN, not 0). `check_model` starts from a state the model itself reaches.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dncjax import pytrees
from dncjax.models import core, seed_dnc
from dncjax.training import losses, train


class GradCheckRow(NamedTuple):
  """One parameter array's check: gradient ranges, relative errors, counts."""
  name: str
  numerical: tuple[float, float]   # (min, max) of the numerical gradients checked
  analytic: tuple[float, float]    # (min, max) of jax.grad at the same entries
  error: tuple[float, float, float]  # relative error (min, max, mean) over valid checks
  checks: int                      # entries asked for: num_checks, or all of a smaller one
  valid: int                       # of those checked: both finite, one above `floor`
  nonfinite: int = 0               # of those checked: NaN or Inf in a loss or gradient
  unsmooth: int = 0                # entries passed over: the loss is not smooth there
  directional: float | None = None  # rel. error along a random direction (None: unresolved)
  floor: float = 0.0               # the smallest gradient the differences resolve


def _relative_error(a, n):
  return np.abs(a - n) / np.maximum(np.abs(a + n), np.finfo(float).tiny)


def _order(rng, analytic: np.ndarray, floors: tuple[float, ...]) -> np.ndarray:
  """Every flat index, in the order entries are drawn: non-finite gradients first, then
  those above each floor in turn (`floors` decreasing), then the rest; random within."""
  flat = analytic.reshape(-1)
  finite = np.isfinite(flat)
  size = np.where(finite, np.abs(flat), 0.0)
  pools, taken = [np.flatnonzero(~finite)], ~finite
  for floor in (*floors, -1.0):
    above = finite & (size > floor) & ~taken
    pools.append(np.flatnonzero(above))
    taken = taken | above
  return np.concatenate([rng.permutation(pool) for pool in pools])


def _prober(loss_jit: Callable, host: dict, name: str, delta: float, smoothness: float,
            noise: float) -> Callable:
  """probe(direction, a) -> (numerical, smooth) of one check of `name` against the
  analytic derivative `a`; smooth: the steps delta and 2 delta agree (`smoothness`,
  relative, plus 4 `noise`). A non-finite check is kept (as smooth) to fail."""

  def differences(direction):
    """Central differences along `direction` with steps delta and 2 delta."""
    at = lambda h: float(loss_jit({**host, name: host[name] + h * direction}))
    return [(at(h) - at(-h)) / (2 * h) for h in (delta, 2 * delta)]

  def probe(direction, a):
    n, n2 = differences(direction)
    if not np.isfinite([n, n2, a]).all():
      return (n if np.isfinite(n2) else n2), True
    return n, abs(n - n2) <= smoothness * max(abs(n), abs(n2)) + 4 * noise

  return probe


def _entry_checks(probe: Callable, rng, value: np.ndarray, grad: np.ndarray, wanted: int,
                  floors: tuple[float, ...], max_draws: int):
  """(numerical, analytic, unsmooth) at up to `wanted` entries drawn in `_order`, at most
  `max_draws * wanted` draws; those where the loss is not smooth are passed over, counted."""
  num, ana, unsmooth = [], [], 0
  for index in _order(rng, grad, floors)[:max_draws * wanted]:
    if len(num) == wanted:
      break
    direction = np.zeros_like(value)
    direction.flat[index] = 1
    n, smooth = probe(direction, float(grad.flat[index]))
    if not smooth:
      unsmooth += 1
      continue
    num.append(n)
    ana.append(float(grad.flat[index]))
  return np.array(num), np.array(ana), unsmooth


def _directional_check(probe: Callable, rng, value: np.ndarray, grad: np.ndarray,
                       floor: float, max_draws: int) -> float | None:
  """Relative error of <jax.grad, d> against the differences along a random unit
  direction d, redrawn where the loss is not smooth (at most `max_draws` draws); NaN if
  non-finite, None if not resolved (both below `floor`, or never smooth)."""
  for _ in range(max_draws):
    direction = rng.standard_normal(value.shape).astype(value.dtype)
    direction /= np.linalg.norm(direction)
    a = float(np.sum(grad * direction))
    n, smooth = probe(direction, a)
    if not np.isfinite([n, a]).all():
      return float("nan")
    if not smooth:
      continue
    if max(abs(n), abs(a)) > floor:
      return float(_relative_error(a, n))
    return None
  return None


def _row(name: str, num: np.ndarray, ana: np.ndarray, wanted: int, unsmooth: int,
         directional: float | None, floor: float) -> GradCheckRow:
  """The row of one parameter from its entries' numerical and analytic gradients."""
  finite = np.isfinite(num) & np.isfinite(ana)
  valid = finite & (np.maximum(np.abs(num), np.abs(ana)) > floor)
  err = _relative_error(ana[valid], num[valid])
  error = (err.min(), err.max(), err.mean()) if err.size else (np.nan,) * 3
  ranges = [(float(np.min(x)), float(np.max(x))) if x.size else (np.nan, np.nan)
            for x in (num, ana)]
  return GradCheckRow(name, *ranges, tuple(float(e) for e in error), wanted,
                      int(valid.sum()), int((~finite).sum()), unsmooth, directional,
                      float(floor))


def gradcheck(loss_fn: Callable, params: dict, *, num_checks: int = 10, delta: float = 1e-5,
              seed: int = 0, min_magnitude: float = 1e-9, resolution: float = 1e5,
              smoothness: float = 1e-6, max_draws: int = 4) -> list[GradCheckRow]:
  """Compares jax.grad(loss_fn)(params) with central differences, one row per parameter.

  A check carries signal when a gradient is above what the differences resolve, the
  floor `resolution` times their rounding noise eps |L| / delta (at least
  `min_magnitude`); entries are drawn preferring those. The loss need not be smooth
  everywhere (the DNC's allocation sorts usage, so the loss jumps where two usages
  cross): an entry whose differences with steps delta and 2 delta disagree by more than
  `smoothness` (relative, beyond rounding) straddles a jump, says nothing about the
  gradient and is passed over for another, up to `max_draws` times `num_checks` draws
  per parameter."""
  loss_jit = jax.jit(loss_fn)
  analytic = jax.tree.map(np.asarray, jax.jit(jax.grad(loss_fn))(params))
  host = {k: np.asarray(v) for k, v in params.items()}
  rng = np.random.default_rng(seed)  # shared: entries, then a direction, per parameter
  loss = abs(float(loss_jit(host)))
  rows = []
  for name in sorted(host, key=_seed_order):
    value, grad = host[name], analytic[name]
    noise = np.finfo(value.dtype).eps * max(loss, 1.0) / delta
    floor = max(min_magnitude, resolution * noise) if np.isfinite(noise) else min_magnitude
    probe = _prober(loss_jit, host, name, delta, smoothness, noise)
    wanted = min(num_checks, value.size)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
      num, ana, unsmooth = _entry_checks(probe, rng, value, grad, wanted,
                                         (floor, min_magnitude), max_draws)
      directional = _directional_check(probe, rng, value, grad, floor, max_draws)
      rows.append(_row(name, num, ana, wanted, unsmooth, directional, floor))
  return rows


_SEED_ORDER = ["Wxh", "Whh", "Why", "Whr", "Whv", "Whw", "Whe", "Wrh", "Wry", "bh", "by"]


def _seed_order(name: str):
  """The seed's table order first, then any other parameter alphabetically."""
  return (_SEED_ORDER.index(name), "") if name in _SEED_ORDER else (len(_SEED_ORDER), name)


def _broken(row: GradCheckRow) -> bool:
  return bool(row.nonfinite) or (row.directional is not None
                                 and not np.isfinite(row.directional))


def _worst(row: GradCheckRow) -> float:
  """The row's largest relative error, entries and directional check."""
  return max(row.error[1], -1.0 if row.directional is None else row.directional)


def max_error(rows: list[GradCheckRow]) -> float:
  """The largest relative error; NaN if any check is non-finite, inf if a parameter has
  fewer valid checks than it drew (a missing error is not a zero one)."""
  if any(_broken(r) for r in rows):
    return float("nan")
  if any(r.valid < r.checks for r in rows):
    return float("inf")
  return max(_worst(r) for r in rows)


def verdict(rows: list[GradCheckRow], tolerance: float) -> tuple[bool, str]:
  """(ok, one line saying why): PASS only if every check is finite, no relative error
  exceeds `tolerance` and every parameter's checks all carry signal (failures in that
  order of precedence)."""
  def fail(bad, what):
    more = f" (and {len(bad) - 1} more parameters)" if len(bad) > 1 else ""
    return False, f"FAIL: {what(bad[0])}{more}"

  def kind(row):
    values = (*row.numerical, *row.analytic, row.directional)
    return "NaN" if any(v is not None and np.isnan(v) for v in values) else "Inf"

  broken = [r for r in rows if _broken(r)]
  if broken:
    return fail(broken, lambda r: f"{r.nonfinite}/{r.checks} checks of {r.name} are {kind(r)}"
                if r.nonfinite else f"the directional check of {r.name} is {kind(r)}")
  wrong = sorted((r for r in rows if _worst(r) > tolerance), key=_worst, reverse=True)
  if wrong:
    return fail(wrong, lambda r: f"relative error {_worst(r):.3e} at {r.name} "
                                 f"(tolerance {tolerance:.0e})")
  silent = [r for r in rows if r.valid < r.checks]
  if silent:
    return fail(silent, lambda r: f"only {r.valid}/{r.checks} checks of {r.name} carry signal "
                f"(|gradient| > {r.floor:.1e})"
                + (f"; {r.unsmooth} entries passed over: loss not smooth" if r.unsmooth else ""))
  scored = sum(r.directional is not None for r in rows)
  return True, (f"PASS: largest relative error {max_error(rows):.3e} (tolerance "
                f"{tolerance:.0e}) over {sum(r.checks for r in rows)} entries and "
                f"{scored}/{len(rows)} directions")


def format_table(rows: list[GradCheckRow]) -> str:
  """The seed's table: name, numerical range, analytic range, min/max/mean rel. error;
  then the directional check's relative error ('-': not resolved), the valid checks of
  those asked for and the entries passed over where the loss is not smooth."""
  lines = [f"{'param':<6} {'numerical [min, max]':>29} {'analytic [min, max]':>29} "
           f"{'rel err min':>11} {'max':>11} {'mean':>11} {'direction':>11} {'checks':>7} "
           f"{'unsmooth':>8}"]
  for r in rows:
    direction = "-" if r.directional is None else f"{r.directional:.3e}"
    lines.append(
        f"{r.name:<6} [{r.numerical[0]:>13.6e}, {r.numerical[1]:>13.6e}] "
        f"[{r.analytic[0]:>13.6e}, {r.analytic[1]:>13.6e}] "
        f"{r.error[0]:>11.3e} {r.error[1]:>11.3e} {r.error[2]:>11.3e} {direction:>11} "
        f"{r.valid:>3}/{r.checks:<3} {r.unsmooth:>8}")
  return "\n".join(lines)


def warm_up(model, params, states, inputs):
  """The lanes' states after the model's own recurrence on `inputs` [B, T, ...] from `states`."""
  final, _ = jax.jit(lambda p, s, xs: core.batch_unroll_features(model, p, s, xs))(
      params, states, inputs)
  return final


def check_setup(model, *, batch_size: int = 4, seq_length: int = 10, seed: int = 0,
                states=None, batch=None, params=None):
  """(params, start states, batch) of `check_model`: random tokens and params unless given.

  Without `states`, the start is a state the model reaches: `seq_length` steps of its own
  recurrence on random inputs from `initial_state()` (`warm_up`), so the DNC's usage lies
  in [0, 1], its weightings are non-negative with sums <= 1, its links have a zero
  diagonal and its memory is not zero; the batch's lanes then carry that state. The seed
  DNC with content addressing starts that warm-up from a random memory N(0, 0.5^2) (the
  seed's commented-out random init): from an all-zero memory every slot is written alike,
  all scores stay equal and the key weights W_hw, W_hr get exactly zero gradient at every
  step (tests/oracle.py, (j)), which would leave them unchecked.
  """
  key_params, key_data, key_warm = jax.random.split(jax.random.key(seed), 3)
  if params is None:
    params = model.init(key_params)
  if batch is None:
    V = model.config.input_size
    tokens = jax.random.randint(key_data, (batch_size, seq_length + 1), 0, V)
    batch = pytrees.Batch(tokens[:, :-1], tokens[:, 1:], jnp.zeros((batch_size,), bool))
  if states is None:
    B, S = batch.reset.shape[0], batch.inputs.shape[1]
    key_inputs, key_memory = jax.random.split(key_warm)
    if jnp.issubdtype(batch.inputs.dtype, jnp.integer):
      inputs = jax.random.randint(key_inputs, (B, S), 0, model.config.input_size)
    else:
      inputs = jax.random.normal(key_inputs, batch.inputs.shape, batch.inputs.dtype)
    states = core.batch_initial_state(model, B)
    config = model.config
    if isinstance(config, seed_dnc.SeedDNCConfig) and config.addressing == "content":
      memory = 0.5 * jax.random.normal(key_memory, states.memory.shape, states.memory.dtype)
      states = states._replace(memory=memory)
    states = warm_up(model, params, states, inputs)
    batch = batch._replace(reset=jnp.zeros_like(batch.reset))
  return params, states, batch


def check_model(model, *, batch_size: int = 4, seq_length: int = 10, seed: int = 0,
                states=None, batch=None, params=None, **kwargs) -> list[GradCheckRow]:
  """Gradient check of a model's window loss from the start state of `check_setup`."""
  params, states, batch = check_setup(model, batch_size=batch_size, seq_length=seq_length,
                                      seed=seed, states=states, batch=batch, params=params)

  def loss_fn(p):
    return train.window_loss(model, losses.softmax_cross_entropy, p, states, batch)[0]

  return gradcheck(loss_fn, params, seed=seed, **kwargs)
