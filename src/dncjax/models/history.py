"""A memory model's unroll differentiated with every step's temporal links kept where the
kernels write them, read by the backward pass: the DNC's L_t [N, N] (`links.py`) and the
SDNC's sparse links [2, N, K] (`sparse_history.py`).

Differentiating `lax.scan` over the step keeps each step's links for the link step's
backward pass: the scan copies the carried links into a zero-filled [T, ...] stack forward
and slices them out again backward, some five passes over them per step besides the link
kernel's own. `scan` has the values of `lax.scan` over the step and its own vjp:

  forward   H holds the links of every step, written by the link kernels in place (the
            DNC: H [T + 1, N, N], step t reads slot t and writes L_t into slot t + 1; the
            SDNC: the links updated in place and a journal of what each step changes).
            Each step's vjp is taken as it runs (`jax.vjp`) and its residuals are stacked
            by the scan, as lax.scan's own differentiation does, except those that are the
            params themselves (kept once); the link step's residuals are its weightings
            and rows (for the DNC w^w_t, p_{t-1} and w^r_{t-1}), nothing the size of the
            links (the state carries stubs there).
  backward  a scan from t = T - 1 down to 0 applies each step's vjp; the link step's
            backward pass is the kernel's, on what H holds of step t, carrying the links'
            cotangent (and for the SDNC the links themselves, put back step by step),
            written over in place.

`batch_scan` runs a batch of examples batch-major: one scan over time whose step is the
example's step vmapped over the batch, so that step's vjp is the batch's and each step's
cotangent of the params is one product over the examples per weight matrix (a vmap of
`scan` carries one per example, [B, 4 H, H] for W_hh, and sums them after the scan). Its
link step's backward pass runs once for the whole batch on the batch's H and carried
cotangent (a `jax.custom_batching.custom_vmap` rule, `_lanes_backward`); the SDNC's link
step, whose backward pass is written per example, runs `scan` under a vmap instead.

So the links are read and written only by the kernels. The backward pass of a link step
reaches H, t and the carried values through a dict shared with the backward scan's body
(`channel`: "H", "t", "gL"), which sets them before it applies the step's vjp; the link
step leaves the previous step's there. A model's `Links` says where its state holds the
links and how its link step runs on H. Gradients equal lax.scan's to float rounding
(tests/models/test_history.py, tests/models/test_sparse_history.py).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dncjax.models import hooks, links, native


class Links(NamedTuple):
  """Where a model's state (one example) holds its temporal links, and their history.
  With `lanes` the link step's backward pass reaches H and the carried cotangent for the
  whole batch (`batch_scan`); else for one example (`scan`, under a vmap)."""
  get: Callable[[Any], Any]            # state -> its links (a pytree)
  put: Callable[[Any, Any], Any]       # (state, links) -> the state with them
  usable: Callable[[Any, int], bool]   # (links, T): whether the kernels run these links
  start: Callable[[Any, int], Any]     # (links, T + 1) -> H, holding them as they start
  last: Callable[[Any, int], Any]      # (H, T) -> the links after the last step, T
  stub: Callable[[Any], Any]           # links -> what the state carries in their place
  hook: str                            # the `hooks` name of the model's link step
  hooked: Callable                     # (H, t, channel, kept) -> the link step on H, which
                                       # leaves the H it writes in kept["H"]
  carried: Callable[[Any, Any], Any]   # (the links' cotangent, H) -> what the backward
                                       # carries ("gL": the link steps' backward passes')
  restored: Callable[[Any, Any], Any]  # (that, the links) -> the links' cotangent
  lanes: bool = False                  # hooked for `batch_scan` (else for `scan`)


def dense_links(get: Callable, put: Callable) -> Links:
  """The DNC's L [N, N] (`links.link_step`) at the state's `get`/`put`, for `batch_scan`."""

  def hooked(H, t, channel, kept):
    step = _link_step(H, t, channel)

    def record(stub, w, p, v):  # the state's stub passes through
      kept["H"], f, b = step(H, w, p, v)
      return stub, f, b

    return record

  return Links(get, put, usable=lambda L, T: native.usable(L.dtype, L.shape[-1]),
               start=native.history_start, last=lambda H, t: H[t],
               stub=lambda L: jnp.zeros((0,), L.dtype), hook=links.HOOK, hooked=hooked,
               carried=lambda gL, H: gL, restored=lambda gL, L: gL, lanes=True)


def scan(fn, spec: Links, params, state, xs):
  """(final state, outputs [T, ...]): `fn(params, state, x)` (a recur or step) scanned
  over xs for ONE example, as `lax.scan`. Differentiated as the module doc says where
  `spec.usable` holds for the state's links and T; else by lax.scan's own rule."""
  if spec.lanes:  # its link step runs batched: one example is a batch of one
    return jax.tree.map(lambda a: a[0], batch_scan(
        fn, spec, params, jax.tree.map(lambda a: a[None], state), xs[None]))
  plain = _plain(fn)
  if not spec.usable(spec.get(state), xs.shape[0]):
    return plain(params, state, xs)
  return _differentiated(plain, fn, spec, False)(params, state, xs)


def batch_scan(fn, spec: Links, params, states, xs):
  """(final states, outputs [B, T, ...]): `scan` for a batch of examples (states and xs
  with a leading axis B), as its vmap. Batch-major where `spec.usable` holds: one scan over
  time of the step vmapped over the examples, whose vjp is the batch's, so each step's
  cotangent of the params is one product over the batch per weight matrix (a vmap of
  `scan` carries one per example and sums them at the end). The spec's link step must
  reach the batch's H (`spec.lanes`)."""
  plain = jax.vmap(_plain(fn), in_axes=(None, 0, 0))
  if not spec.usable(spec.get(states), xs.shape[1]):
    return plain(params, states, xs)
  if not spec.lanes:
    return jax.vmap(lambda s, x: scan(fn, spec, params, s, x))(states, xs)
  return _differentiated(plain, fn, spec, True)(params, states, xs)


def _plain(fn):
  """(params, state, xs) -> lax.scan of `fn` over xs for one example."""
  return lambda params, state, xs: jax.lax.scan(lambda s, x: fn(params, s, x), state, xs)


def _differentiated(plain, fn, spec: Links, lanes: bool):
  """`plain(params, state, xs)` with the module doc's vjp, batch-major with `lanes`."""
  run = jax.custom_vjp(plain)
  channel = {}
  run.defvjp(lambda *a: _forward(fn, spec, channel, lanes, *a),
             lambda *a: _backward(spec, channel, lanes, *a))
  return run


def _link_step(H, t, channel):
  """The link step of recorded time step t on one example's H, under `batch_scan`'s vmap
  over the examples: (H with L_t in slot t + 1, f_t, b_t). Its backward pass (run by the
  backward scan, see the module doc) returns no cotangent for H, a constant to the step;
  it runs on the batch's H and gL, which the backward scan leaves in `channel`."""

  @jax.custom_vjp
  def step(H, w, p, v):
    return native.history_step(H, t, w, p, v)

  def fwd(H, w, p, v):
    return step(H, w, p, v), (w, p, v)

  def bwd(residuals, cotangents):
    _, gf, gb = cotangents
    return (None, *_lanes_backward(channel)(*residuals, gf, gb))

  step.defvjp(fwd, bwd)
  return step


def _lanes_backward(channel):
  """(w, p, v, gf, gb) of one example -> (gw, gp, gv): the link kernel's backward pass
  for the whole batch, on the H, t and gL of `channel` (gL updated there), when the
  examples' vmap batches it; traced per example only for the shapes of its results."""

  @jax.custom_batching.custom_vmap
  def backward(w, p, v, gf, gb):
    return jnp.zeros_like(w), jnp.zeros_like(p), jnp.zeros_like(v)

  @backward.def_vmap
  def lanes(axis_size, in_batched, *args):
    w, p, v, gf, gb = (a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))
                       for a, batched in zip(args, in_batched))
    channel["gL"], gw, gp, gv = native.history_backward(channel["H"], channel["t"], w, p, v,
                                                        channel["gL"], gf, gb)
    return (gw, gp, gv), (True, True, True)

  return backward


def _forward(fn, spec: Links, channel, lanes, params, state, xs):
  """The forward scan; with `lanes` state and xs carry the examples' axis first and each
  step is vmapped over them (xs and the outputs scanned time-major)."""
  over = jax.vmap if lanes else lambda f: f
  T = xs.shape[1 if lanes else 0]
  L0 = spec.get(state)
  stub = over(spec.stub)(L0)
  integer_xs = jnp.issubdtype(xs.dtype, jnp.integer)

  def body(carry, x_t):
    s, H = carry
    x, t = x_t

    def one(params, s, x, H):  # one example
      kept = {}
      with hooks.override(spec.hook, spec.hooked(H, t, channel, kept)):
        return fn(params, s, x), kept["H"]

    step = jax.vmap(one, in_axes=(None, 0, 0, 0)) if lanes else one
    if integer_xs:  # token ids: no cotangent
      (s, outputs), vjp, H = jax.vjp(lambda p_, s_: step(p_, s_, x, H), params, s,
                                     has_aux=True)
    else:
      (s, outputs), vjp, H = jax.vjp(lambda p_, s_, x_: step(p_, s_, x_, H), params, s, x,
                                     has_aux=True)
    leaves, channel["vjp"] = jax.tree.flatten(vjp)
    # Residuals that are the params themselves (the weights of the products) are the same
    # at every step: kept once, outside the scan, rather than stacked T times.
    position = {id(leaf): i for i, leaf in enumerate(jax.tree.leaves(params))}
    channel["from_params"] = [position.get(id(leaf)) for leaf in leaves]
    per_step = [leaf for leaf, i in zip(leaves, channel["from_params"]) if i is None]
    return (s, H), (outputs, per_step)

  steps = jnp.arange(T, dtype=jnp.int32)
  H = over(lambda L: spec.start(L, T + 1))(L0)
  (final, H), (outputs, leaves) = jax.lax.scan(body, (spec.put(state, stub), H),
                                               (_time_major(xs, lanes), steps))
  channel["links"], channel["stub"] = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), (L0, stub))
  last = over(lambda H: spec.last(H, T))(H)
  return (spec.put(final, last), _time_major(outputs, lanes)), (leaves, params, H, xs)


def _time_major(tree, lanes: bool):
  """[B, T, ...] <-> [T, B, ...] for every leaf of tree with `lanes`, else tree."""
  return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), tree) if lanes else tree


def _no_cotangent(x) -> bool:
  """Whether a state's leaf has no cotangent (float0: an integer or boolean leaf)."""
  return x.dtype == jax.dtypes.float0 or not jnp.issubdtype(x.dtype, jnp.inexact)


def _backward(spec: Links, channel, lanes, residuals, cotangents):
  leaves, params, H, xs = residuals
  g_final, g_outputs = cotangents
  stub = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), channel["stub"])
  param_leaves = jax.tree.leaves(params)
  # The integer parts of the state (their cotangents float0) are not carried by the scan.
  g_leaves, g_tree = jax.tree.flatten(spec.put(g_final, stub))
  constant = [np.zeros(g.shape, jax.dtypes.float0) if _no_cotangent(g) else None
              for g in g_leaves]

  def whole(carried):
    it = iter(carried)
    return g_tree.unflatten([c if c is not None else next(it) for c in constant])

  def part(g_state):
    return [g for g, c in zip(jax.tree.leaves(g_state), constant) if c is None]

  def body(carry, inputs):
    g_params, g_state, gL = carry
    leaves_t, g_out, t = inputs
    channel.update(H=H, t=t, gL=gL)
    per_step = iter(leaves_t)
    leaves_t = [next(per_step) if i is None else param_leaves[i]
                for i in channel["from_params"]]
    g_p, g_s, *g_x = jax.tree.unflatten(channel["vjp"], leaves_t)((whole(g_state), g_out))
    g_params = jax.tree.map(jnp.add, g_params, g_p)
    return (g_params, part(spec.put(g_s, stub)), channel["gL"]), g_x

  steps = jnp.arange(xs.shape[1 if lanes else 0], dtype=jnp.int32)
  zeros = jax.tree.map(jnp.zeros_like, params)
  carry = (zeros, part(spec.put(g_final, stub)), spec.carried(spec.get(g_final), H))
  (g_params, g_state, gL), g_xs = jax.lax.scan(
      body, carry, (leaves, _time_major(g_outputs, lanes), steps), reverse=True)
  g_state = spec.put(whole(g_state), spec.restored(gL, channel["links"]))
  if jnp.issubdtype(xs.dtype, jnp.integer):
    return g_params, g_state, np.zeros(xs.shape, jax.dtypes.float0)
  return g_params, g_state, _time_major(g_xs[0], lanes)
