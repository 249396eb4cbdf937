"""Text generation: the prime is read with one scan, then `length` tokens are drawn by a
second scan whose body samples y_t / temperature and feeds the draw back as x_{t+1}.
One compiled program per (model, prime length, length); no Python loop per character."""

from __future__ import annotations

import functools
import math

import jax

from dncjax.models import core


@functools.partial(jax.jit, static_argnums=(0, 5))
def sample(model: core.Model, params, state, prime_ids, key, length: int,
           temperature=1.0):
  """Token ids [length] drawn after reading `prime_ids` [P >= 1] from `state`.

  Returns (ids [length], state after the last draw was read).
  """
  state, ys = core.unroll(model, params, state, prime_ids)

  def body(carry, key_t):
    state, y = carry
    ix = jax.random.categorical(key_t, y / temperature).astype(prime_ids.dtype)
    state, y = model.step(params, state, ix)
    return (state, y), ix

  (state, _), ids = jax.lax.scan(body, (state, ys[-1]), jax.random.split(key, length))
  return ids, state


def check_temperature(temperature: float) -> float:
  """Validates a sampling temperature (> 0)."""
  if not (temperature > 0 and math.isfinite(temperature)):
    raise ValueError(f"temperature must be positive and finite, got {temperature}")
  return float(temperature)
