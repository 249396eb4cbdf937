"""The model interface ("core") shared by every recurrent model.

A core is a `Model`: a NamedTuple of pure functions written for ONE example.

  init(key) -> params                   flat dict of arrays, seed names, (out, in) matrices
  initial_state() -> state              a pytree (NamedTuple) of arrays
  step(params, state, x) -> (state, y)  one time step; x is a float vector [I] or a token id
  truncate(state) -> state              the state handed to the next window under
                                        truncated BPTT (e.g. the seed DNC wipes its memory)

Time is one `jax.lax.scan` over `step` (`unroll`); the batch is one `jax.vmap`
(`batch_unroll`). Models register a builder with `register` and are built with
`make_model(name, input_size, output_size, **hyperparameters)`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
State = Any


class Model(NamedTuple):
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


def split_model(init, initial_state, recur, readout, truncate, config) -> Model:
  """A Model whose `step` is `readout` applied to what `recur` emits."""

  def step(params, state, x):
    state, features = recur(params, state, x)
    return state, readout(params, features)

  return Model(init, initial_state, step, truncate, config, recur, readout)


_BUILDERS: dict[str, tuple[type, Callable[[Any], Model]]] = {}


def register(name: str, config_cls: type, builder: Callable[[Any], Model]) -> None:
  """Makes `make_model(name, ...)` build `builder(config_cls(...))`."""
  _BUILDERS[name] = (config_cls, builder)


def model_names() -> list[str]:
  return sorted(_BUILDERS)


def config_class(name: str) -> type:
  if name not in _BUILDERS:
    raise ValueError(
        f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
  return _BUILDERS[name][0]


def takes(name: str) -> set[str]:
  """The hyperparameter names model `name`'s config has."""
  return {f.name for f in dataclasses.fields(config_class(name))}


def merge_hyper(name: str, defaults, given) -> tuple[tuple[str, Any], ...]:
  """`given` on top of those `defaults` model `name` takes, as sorted (name, value) pairs
  (a script's default hidden size applies to every model; memory sizes only to some)."""
  known = takes(name)
  merged = {k: v for k, v in dict(defaults).items() if k in known}
  merged.update(dict(given))
  return tuple(sorted(merged.items()))


def hyper_pairs(name: str, saved, given) -> list[tuple[str, Any, Any]]:
  """(field, given value, saved value) for each of `given`'s model hyperparameters, a field
  absent from `saved` holding model `name`'s default (for checking a resume's flags)."""
  fields = {f.name: f.default for f in dataclasses.fields(config_class(name))}
  saved = dict(saved)
  return [(k, v, saved.get(k, fields.get(k, "not a hyperparameter of " + name)))
          for k, v in dict(given).items()]


def make_config(name: str, input_size: int, output_size: int, **hyperparameters):
  """The frozen config of model `name`; unknown or nonsense values raise ValueError."""
  cls = config_class(name)
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(hyperparameters) - known)
  if unknown:
    raise ValueError(
        f"model {name!r} has no hyperparameter(s) {', '.join(unknown)}; "
        f"it takes: {', '.join(sorted(known - {'input_size', 'output_size'}))}")
  return cls(input_size=input_size, output_size=output_size, **hyperparameters)


def build(config) -> Model:
  """The Model for an existing config (e.g. one restored from a checkpoint)."""
  for cls, builder in _BUILDERS.values():
    if type(config) is cls:
      return builder(config)
  raise ValueError(f"no model is registered for config type {type(config).__name__}")


def make_model(name: str, input_size: int, output_size: int, **hyperparameters) -> Model:
  """Builds model `name` ('rnn', 'lstm', 'seed_dnc', 'dnc', ...) for one example."""
  return build(make_config(name, input_size, output_size, **hyperparameters))


def check_positive(config, *names: str) -> None:
  """Raises ValueError naming the first field of `config` that is not a positive int."""
  for name in names:
    value = getattr(config, name)
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


def input_projection(W_xh: jax.Array, x: jax.Array) -> jax.Array:
  """W_xh x for a float vector x [I], or the column W_xh[:, x] for a token id x."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    return W_xh[:, x]
  return W_xh @ x


def normal(key: jax.Array, shape: tuple[int, ...], scale: float, dtype) -> jax.Array:
  """Gaussian initialisation N(0, scale^2), as the seed's `randn(...) * scale`."""
  return scale * jax.random.normal(key, shape, dtype)


def unroll_features(model: Model, params: Params, state: State, xs: jax.Array):
  """The recurrence alone over time for one example: (final state, features [T, ...]).

  For a model without a recur/readout split the features are its outputs y."""
  if model.recur is None:
    return jax.lax.scan(lambda s, x: model.step(params, s, x), state, xs)
  return jax.lax.scan(lambda s, x: model.recur(params, s, x), state, xs)


def readout(model: Model, params: Params, features, time_axes: int = 1):
  """y for features with `time_axes` leading (time, batch, ...) axes: one vmap per axis."""
  if model.readout is None:
    return features
  fn = lambda f: model.readout(params, f)
  for _ in range(time_axes):
    fn = jax.vmap(fn)
  return fn(features)


def unroll(model: Model, params: Params, state: State, xs: jax.Array):
  """Runs `step` over time for one example: xs [T, ...] -> (final state, ys [T, O]).

  With a recur/readout split, the scan runs `recur` and the readout is applied to all
  T features at once after it; the values are those of a scan over `step`."""
  state, features = unroll_features(model, params, state, xs)
  return state, readout(model, params, features)


def batch_unroll(model: Model, params: Params, states: State, xs_B: jax.Array):
  """`unroll` vmapped over a batch: states and xs carry a leading B axis."""
  return jax.vmap(lambda s, xs: unroll(model, params, s, xs))(states, xs_B)


def batch_unroll_features(model: Model, params: Params, states: State, xs_B: jax.Array):
  """`unroll_features` vmapped over a batch."""
  return jax.vmap(lambda s, xs: unroll_features(model, params, s, xs))(states, xs_B)


def batch_initial_state(model: Model, batch_size: int) -> State:
  """`initial_state()` stacked B times along a new leading axis."""
  state = model.initial_state()
  return jax.tree.map(lambda a: jnp.broadcast_to(a, (batch_size,) + a.shape), state)


def keep_state(state: State) -> State:
  """`truncate` for models whose whole state carries across windows."""
  return state


DTYPES = ("float32", "float64")


def check_dtype(dtype: str) -> None:
  """Validates a config dtype; float64 switches on `jax_enable_x64` (as the seed's --fp64)."""
  if dtype not in DTYPES:
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
  if dtype == "float64" and not jax.config.jax_enable_x64:
    jax.config.update("jax_enable_x64", True)
