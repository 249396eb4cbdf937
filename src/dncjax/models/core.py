"""The model interface ("core") shared by every recurrent model.

A core is a `Model`: a NamedTuple of pure functions written for ONE example.

  init(key) -> params                   flat dict of arrays, seed names, (out, in) matrices
  initial_state() -> state              a pytree (NamedTuple) of arrays
  step(params, state, x) -> (state, y)  one time step; x is a float vector [I] or a token id
  truncate(state) -> state              the state handed to the next window under
                                        truncated BPTT (e.g. the seed DNC wipes its memory)

Time is one `jax.lax.scan` over `step` (`unroll`); the batch is one `jax.vmap`
(`batch_unroll`), or the model's own `scan` of the whole batch where it has one. Packed
episodes: an optional `reset` flag per step (`[T]`, batched `[B, T]`, bool) returns the
state to `initial_state()` before the steps it marks, inside the scan. The registry of
models is `dncjax.models` (`make_model`, `build`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
State = Any


class Model(NamedTuple):
  """A core: pure functions for ONE example (see the module's docstring) and its config.

  init: key -> params, a flat dict of arrays (seed names, (out, in) matrices).
  initial_state: () -> the state at t = 0, a pytree (NamedTuple) of arrays.
  step: (params, state, x) -> (state, y), one time step; x a float vector [I] or a token id.
  truncate: state -> the state handed to the next window under truncated BPTT.
  config: the model's frozen hyperparameter dataclass (hashable, so static under jit).
  recur, readout: None, or `step` split as readout o recur (`split_model`): recur
    (params, state, x) -> (state, features) inside the scan, readout (params, features) -> y
    outside it, time-parallel.
  scan: None, or the model's own scan over time of a batch, (fn, params, states, xs) ->
    (states, outputs) with a leading axis B on states, xs [B, T, ...] and the outputs, of
    fn = recur (or step): the values of vmap of lax.scan's, differentiated another way.
  """
  init: Callable[[jax.Array], Params]
  initial_state: Callable[[], State]
  step: Callable[[Params, State, jax.Array], tuple[State, jax.Array]]
  truncate: Callable[[State], State]
  config: Any  # the model's frozen hyperparameter dataclass (hashable, jit-static)
  # Optional split of `step` = readout o recur: the recurrence emits features (e.g. the
  # controller output h), and the time-parallel readout maps them to y outside the scan
  # (one [B*T, .] matmul instead of T small ones; dropout on the features goes between).
  recur: Callable[[Params, State, jax.Array], tuple[State, Any]] | None = None
  readout: Callable[[Params, Any], jax.Array] | None = None
  # Optional: the model's own scan over time of a batch (leading axis B), (fn, params,
  # states, xs) -> (states, outputs) for fn = recur (or step), with the values of vmap of
  # lax.scan's and another way of differentiating it (the DNC's link history, history.py);
  # the unrolls use it when there is no reset (one example as a batch of one).
  scan: Callable[[Callable, Params, State, jax.Array], tuple[State, Any]] | None = None


def split_model(init, initial_state, recur, readout, truncate, config) -> Model:
  """A Model whose `step` is `readout` applied to what `recur` emits."""

  def step(params, state, x):
    state, features = recur(params, state, x)
    return state, readout(params, features)

  return Model(init, initial_state, step, truncate, config, recur, readout)


def input_projection(W_xh: jax.Array, x: jax.Array) -> jax.Array:
  """W_xh x for a float vector x [I], or the column W_xh[:, x] for a token id x."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    return W_xh[:, x]
  return W_xh @ x


def normal(key: jax.Array, shape: tuple[int, ...], scale: float, dtype) -> jax.Array:
  """Gaussian initialisation N(0, scale^2), as the seed's `randn(...) * scale`.

  The same values eagerly and under `jax.jit` (the jobs jit `init`): the barrier keeps
  XLA from folding `scale` into the sampler's own constants, which rounds differently."""
  return scale * jax.lax.optimization_barrier(jax.random.normal(key, shape, dtype))


def check_reset(reset, shape: tuple[int, ...]) -> None:
  """ValueError naming `reset` unless it is a bool array of `shape` ([T] or [B, T])."""
  if not hasattr(reset, "shape") or not hasattr(reset, "dtype"):
    raise ValueError(f"reset must be a bool array of shape {shape}, got {type(reset).__name__}")
  if tuple(reset.shape) != tuple(shape):
    raise ValueError(f"reset must have shape {tuple(shape)} (one flag per lane and step), "
                     f"got {tuple(reset.shape)}")
  if reset.dtype != jnp.bool_:
    raise ValueError(f"reset must be a bool array, got dtype {reset.dtype}")


def reset_where(model: Model, reset: jax.Array, state: State) -> State:
  """`initial_state()` where the scalar flag `reset` is true, else `state` (a select)."""
  initial = model.initial_state()
  return jax.tree.map(lambda s0, s: jnp.where(reset, s0.astype(s.dtype), s), initial, state)


def _recurrence(model: Model):
  """What the scan over time runs: `recur` where the model is split, else `step`."""
  return model.step if model.recur is None else model.recur


def unroll_features(model: Model, params: Params, state: State, xs: jax.Array,
                    reset: jax.Array | None = None):
  """The recurrence alone over time for one example: (final state, features [T, ...]).

  For a model without a recur/readout split the features are its outputs y. With `reset`
  [T] bool, the state is returned to `initial_state()` before each step t it marks."""
  fn = _recurrence(model)
  if reset is None and model.scan is not None:  # as a batch of one
    return jax.tree.map(lambda a: a[0], model.scan(
        fn, params, jax.tree.map(lambda a: a[None], state), xs[None]))
  if reset is None:
    return jax.lax.scan(lambda s, x: fn(params, s, x), state, xs)
  check_reset(reset, xs.shape[:1])
  return jax.lax.scan(lambda s, xr: fn(params, reset_where(model, xr[1], s), xr[0]), state,
                      (xs, reset))


def readout(model: Model, params: Params, features, time_axes: int = 1):
  """y for features with `time_axes` leading (time, batch, ...) axes: one vmap per axis."""
  if model.readout is None:
    return features
  fn = lambda f: model.readout(params, f)
  for _ in range(time_axes):
    fn = jax.vmap(fn)
  return fn(features)


def unroll(model: Model, params: Params, state: State, xs: jax.Array,
           reset: jax.Array | None = None):
  """Runs `step` over time for one example: xs [T, ...] -> (final state, ys [T, O]).

  With a recur/readout split, the scan runs `recur` and the readout is applied to all
  T features at once after it; the values are those of a scan over `step`. `reset` [T]
  bool (optional) restarts the state from `initial_state()` before the steps it marks."""
  state, features = unroll_features(model, params, state, xs, reset)
  return state, readout(model, params, features)


def batch_unroll(model: Model, params: Params, states: State, xs_B: jax.Array,
                 reset: jax.Array | None = None):
  """`unroll` vmapped over a batch: states and xs carry a leading B axis; `reset`, if
  given, is [B, T] bool (lane b restarts before step t where reset[b, t])."""
  states, features = batch_unroll_features(model, params, states, xs_B, reset)
  return states, readout(model, params, features, time_axes=2)


def batch_unroll_features(model: Model, params: Params, states: State, xs_B: jax.Array,
                          reset: jax.Array | None = None):
  """`unroll_features` vmapped over a batch (`reset` as in `batch_unroll`); the model's own
  `scan`, if any, runs the batch at once."""
  if reset is None and model.scan is not None:
    return model.scan(_recurrence(model), params, states, xs_B)
  if reset is None:
    return jax.vmap(lambda s, xs: unroll_features(model, params, s, xs))(states, xs_B)
  check_reset(reset, xs_B.shape[:2])
  return jax.vmap(lambda s, xs, r: unroll_features(model, params, s, xs, r))(
      states, xs_B, reset)


def batch_initial_state(model: Model, batch_size: int) -> State:
  """`initial_state()` stacked B times along a new leading axis."""
  state = model.initial_state()
  return jax.tree.map(lambda a: jnp.broadcast_to(a, (batch_size,) + a.shape), state)


def keep_state(state: State) -> State:
  """`truncate` for models whose whole state carries across windows."""
  return state
