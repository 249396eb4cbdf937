"""The DNC's unroll differentiated with every L_t written once, where the backward pass
reads it.

Differentiating `lax.scan` over the DNC's step keeps each step's L_{t-1} for the link
step's backward pass (`links.py`): the scan copies the carried [N, N] matrix into a
zero-filled [T, ...] stack forward and slices it out again backward, some five passes over
L_t per step besides the link kernel's own five. `scan` has the values of `lax.scan`
over the step and its own vjp:

  forward   H [T + 1, N, N] holds L_0 ... L_T: step t's link kernel reads H[t] and writes
            L_t into H[t + 1] in place (`native.history_step`). Each step's vjp is taken as
            it runs (`jax.vjp`) and its residuals are stacked by the scan, as lax.scan's
            own differentiation does, except those that are the params themselves
            (kept once); the link step's residuals are w^w_t, p_{t-1} and w^r_{t-1},
            nothing [N, N] (the state carries a stub where L was).
  backward  a scan from t = T - 1 down to 0 applies each step's vjp; the link step's
            backward pass is the kernel's on L_{t-1} = H[t] (`native.history_backward`),
            carrying dL_t, written over in place by dL_{t-1}.

So the link matrix is read and written only by the kernels: L_{t-1} read and L_t written
forward, L_{t-1} and dL_t read and dL_{t-1} written backward. The backward pass of a link
step reaches H, t and dL_t through a dict shared with the backward scan's body (`channel`),
which sets them before it applies the step's vjp; the link step leaves dL_{t-1} there.
Gradients equal lax.scan's to float rounding (tests/models/test_history.py).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dncjax.models import links, native

Link = tuple[Callable, Callable]  # (state -> L [N, N], (state, L) -> the state with L)


def scan(fn, link: Link, params, state, xs):
  """(final state, outputs [T, ...]): `fn(params, state, x)` (a DNC's recur or step)
  scanned over xs for ONE example, as `lax.scan`. Differentiated as the module doc says
  where the native link kernel is what the link step uses for this L (`native.usable`);
  else by lax.scan's own rule."""
  L = link[0](state)
  if not native.usable(L.dtype, L.shape[-1]):
    return jax.lax.scan(lambda s, x: fn(params, s, x), state, xs)

  @jax.custom_vjp
  def run(params, state, xs):
    return jax.lax.scan(lambda s, x: fn(params, s, x), state, xs)

  channel = {}
  run.defvjp(lambda *a: _forward(fn, link, channel, *a),
             lambda *a: _backward(link, channel, *a))
  return run(params, state, xs)


def _link_step(H, t, channel):
  """The link step of recorded time step t, on H: (H with L_t in slot t + 1, f_t, b_t).
  Its backward pass (run by the backward scan, see the module doc) returns no cotangent
  for H: H enters the step as a constant."""

  @jax.custom_vjp
  def step(H, w, p, v):
    return native.history_step(H, t, w, p, v)

  def fwd(H, w, p, v):
    return step(H, w, p, v), (w, p, v)

  def bwd(residuals, cotangents):
    _, gf, gb = cotangents
    gL, gw, gp, gv = native.history_backward(channel["H"], channel["t"], *residuals,
                                             channel["gL"], gf, gb)
    channel["gL"] = gL
    return None, gw, gp, gv

  step.defvjp(fwd, bwd)
  return step


def _forward(fn, link, channel, params, state, xs):
  get, put = link
  T = xs.shape[0]
  L0 = get(state)
  stub = jnp.zeros((0,), L0.dtype)
  integer_xs = jnp.issubdtype(xs.dtype, jnp.integer)

  def body(carry, x_t):
    s, H = carry
    x, t = x_t
    link_step = _link_step(H, t, channel)

    def step(params, s, x):
      kept = {}

      def record(stub, w, p, v):  # the state's stub passes through
        kept["H"], f, b = link_step(H, w, p, v)
        return stub, f, b

      with links.override(record):
        return fn(params, s, x), kept["H"]

    if integer_xs:  # token ids: no cotangent
      (s, outputs), vjp, H = jax.vjp(lambda p_, s_: step(p_, s_, x), params, s, has_aux=True)
    else:
      (s, outputs), vjp, H = jax.vjp(step, params, s, x, has_aux=True)
    leaves, channel["vjp"] = jax.tree.flatten(vjp)
    # Residuals that are the params themselves (the weights of the products) are the same
    # at every step: kept once, outside the scan, rather than stacked T times.
    position = {id(leaf): i for i, leaf in enumerate(jax.tree.leaves(params))}
    channel["from_params"] = [position.get(id(leaf)) for leaf in leaves]
    per_step = [leaf for leaf, i in zip(leaves, channel["from_params"]) if i is None]
    return (s, H), (outputs, per_step)

  steps = jnp.arange(T, dtype=jnp.int32)
  H = native.history_start(L0, T + 1)
  (final, H), (outputs, leaves) = jax.lax.scan(body, (put(state, stub), H), (xs, steps))
  return (put(final, H[T]), outputs), (leaves, params, H, xs)


def _backward(link, channel, residuals, cotangents):
  get, put = link
  leaves, params, H, xs = residuals
  g_final, g_outputs = cotangents
  stub = jnp.zeros((0,), H.dtype)
  param_leaves = jax.tree.leaves(params)

  def body(carry, inputs):
    g_params, g_state, gL = carry
    leaves_t, g_out, t = inputs
    channel.update(H=H, t=t, gL=gL)
    per_step = iter(leaves_t)
    leaves_t = [next(per_step) if i is None else param_leaves[i]
                for i in channel["from_params"]]
    g_p, g_s, *g_x = jax.tree.unflatten(channel["vjp"], leaves_t)((g_state, g_out))
    g_params = jax.tree.map(jnp.add, g_params, g_p)
    return (g_params, put(g_s, stub), channel["gL"]), g_x

  steps = jnp.arange(xs.shape[0], dtype=jnp.int32)
  zeros = jax.tree.map(jnp.zeros_like, params)
  carry = (zeros, put(g_final, stub), get(g_final))
  (g_params, g_state, gL), g_xs = jax.lax.scan(body, carry, (leaves, g_outputs, steps),
                                               reverse=True)
  if jnp.issubdtype(xs.dtype, jnp.integer):
    return g_params, put(g_state, gL), np.zeros(xs.shape, jax.dtypes.float0)
  return g_params, put(g_state, gL), g_xs[0]
