"""Numerical gradient check: `jax.grad` against central finite differences.

For each parameter, `num_checks` entries are drawn at random; each is nudged by +-delta
and the loss re-evaluated, giving the numerical gradient (L(p+d) - L(p-d)) / 2d. The
relative error is |a - n| / |a + n| (as in the seed's gradCheck). Entries where both
gradients are below `min_magnitude` carry no signal in floating point and are counted
as skipped rather than scored, so the table says how many checks were valid.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import numpy as np


class GradCheckRow(NamedTuple):
  name: str
  numerical: tuple[float, float]   # (min, max) of the numerical gradients checked
  analytic: tuple[float, float]    # (min, max) of jax.grad at the same entries
  error: tuple[float, float, float]  # relative error (min, max, mean) over valid checks
  checks: int
  valid: int


def gradcheck(loss_fn: Callable, params: dict, *, num_checks: int = 10, delta: float = 1e-5,
              seed: int = 0, min_magnitude: float = 1e-9) -> list[GradCheckRow]:
  """Compares jax.grad(loss_fn)(params) with central differences, one row per parameter."""
  loss_jit = jax.jit(loss_fn)
  analytic = jax.tree.map(np.asarray, jax.grad(loss_fn)(params))
  host = {k: np.asarray(v) for k, v in params.items()}
  rng = np.random.default_rng(seed)
  rows = []
  for name in sorted(host, key=_seed_order):
    value = host[name]
    num, ana = [], []
    for index in rng.integers(0, value.size, size=num_checks):
      losses = []
      for sign in (1.0, -1.0):
        nudged = value.copy()
        nudged.flat[index] += sign * delta
        losses.append(float(loss_jit({**host, name: nudged})))
      num.append((losses[0] - losses[1]) / (2 * delta))
      ana.append(float(analytic[name].flat[index]))
    num, ana = np.array(num), np.array(ana)
    scale = np.abs(num + ana)
    valid = (np.abs(num) + np.abs(ana)) > min_magnitude
    err = np.abs(ana - num)[valid] / np.maximum(scale[valid], np.finfo(float).tiny)
    error = (err.min(), err.max(), err.mean()) if err.size else (0.0, 0.0, 0.0)
    rows.append(GradCheckRow(name, (num.min(), num.max()), (ana.min(), ana.max()),
                             tuple(float(e) for e in error), num_checks, int(valid.sum())))
  return rows


_SEED_ORDER = ["Wxh", "Whh", "Why", "Whr", "Whv", "Whw", "Whe", "Wrh", "Wry", "bh", "by"]


def _seed_order(name: str):
  """The seed's table order first, then any other parameter alphabetically."""
  return (_SEED_ORDER.index(name), "") if name in _SEED_ORDER else (len(_SEED_ORDER), name)


def max_error(rows: list[GradCheckRow]) -> float:
  return max(row.error[1] for row in rows)


def format_table(rows: list[GradCheckRow]) -> str:
  """The seed's table: name, numerical range, analytic range, min/max/mean rel. error."""
  lines = [f"{'param':<6} {'numerical [min, max]':>29} {'analytic [min, max]':>29} "
           f"{'rel err min':>11} {'max':>11} {'mean':>11} {'checks':>7}"]
  for r in rows:
    lines.append(
        f"{r.name:<6} [{r.numerical[0]:>13.6e}, {r.numerical[1]:>13.6e}] "
        f"[{r.analytic[0]:>13.6e}, {r.analytic[1]:>13.6e}] "
        f"{r.error[0]:>11.3e} {r.error[1]:>11.3e} {r.error[2]:>11.3e} {r.valid:>3}/{r.checks:<3}")
  return "\n".join(lines)


def check_model(model, *, batch_size: int = 4, seq_length: int = 10, seed: int = 0,
                states=None, batch=None, params=None, **kwargs) -> list[GradCheckRow]:
  """Gradient check of a model's window loss; random tokens, params and start state unless given.

  The start state is random (N(0, 0.5^2) entries), not zero: from an all-zero memory the
  seed DNC's content addressing writes every slot alike, all scores stay equal and the
  key weights get exactly zero gradient, which would leave them unchecked.
  """
  import jax.numpy as jnp

  from dncjax import core, train

  key_params, key_data = jax.random.split(jax.random.key(seed))
  if params is None:
    params = model.init(key_params)
  if batch is None:
    V = model.config.input_size
    tokens = jax.random.randint(key_data, (batch_size, seq_length + 1), 0, V)
    batch = train.Batch(tokens[:, :-1], tokens[:, 1:], jnp.ones((batch_size,), bool))
  if states is None:
    zeros = core.batch_initial_state(model, batch.reset.shape[0])
    leaves, treedef = jax.tree.flatten(zeros)
    keys = jax.random.split(key_data, len(leaves))
    states = treedef.unflatten([0.5 * jax.random.normal(k, z.shape, z.dtype)
                                for k, z in zip(keys, leaves)])
    batch = batch._replace(reset=jnp.zeros_like(batch.reset))

  def loss_fn(p):
    return train.window_loss(model, train.softmax_cross_entropy, p, states, batch)[0]

  return gradcheck(loss_fn, params, seed=seed, **kwargs)
