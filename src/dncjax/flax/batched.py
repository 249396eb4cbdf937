"""What the linen cell and the nnx module share: one core step over any batch axes.

Flax's `RNN` scans a cell over time with the batch axes still in place: the cell sees
x [*B, F] and a carry whose leaves are [*B, ...]. `step` vmaps the core's one-example
`step` once per batch axis, so the cell runs the core's own maths and nothing else.

  F = I                 the core's input features
  F = I + 1             with `reset_input`: the last feature is a reset flag; where it is
                        > 0.5 the lane restarts from `initial_state()` before this step
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from dncjax import models
from dncjax.models import core


@functools.lru_cache(maxsize=None)
def model(config) -> core.Model:
  """The core of a model config (`models.build`), built once per config."""
  return models.build(config)


@functools.lru_cache(maxsize=None)
def param_shapes(config) -> dict[str, jax.ShapeDtypeStruct]:
  """name -> shape and dtype of each entry of the core's flat params dict."""
  return dict(jax.eval_shape(model(config).init, jax.random.key(0)))


@functools.lru_cache(maxsize=None)
def _init(config):
  return jax.jit(model(config).init)


def init_entry(config, name: str, key: jax.Array) -> jax.Array:
  """The entry `name` of the core's params drawn from `key` (its own init, jitted once per
  config, so the biases and gate offsets are the core's)."""
  return _init(config)(key)[name]


def features(config, reset_input: bool) -> int:
  """F, the input features the cell takes: I, plus one reset flag with `reset_input`."""
  return config.input_size + (1 if reset_input else 0)


def check_input(config, reset_input: bool, shape: tuple[int, ...]) -> None:
  """ValueError unless an input of `shape` [*B, F] has the features the cell takes."""
  F = features(config, reset_input)
  if len(shape) < 1 or shape[-1] != F:
    extra = " (the core's input_size + 1 reset flag)" if reset_input else " (input_size)"
    raise ValueError(f"the cell takes inputs [..., {F}]{extra}, got shape {tuple(shape)}")


def initial_carry(config, reset_input: bool, input_shape: tuple[int, ...]):
  """The core's `initial_state()` broadcast to the batch axes of `input_shape` [*B, F]."""
  check_input(config, reset_input, input_shape)
  batch = tuple(input_shape[:-1])
  state = model(config).initial_state()
  return jax.tree.map(lambda a: jnp.broadcast_to(a, batch + a.shape), state)


def check_carry(config, carry, batch: tuple[int, ...]) -> None:
  """ValueError unless `carry` is this core's state with batch axes `batch` in front."""
  expected = jax.eval_shape(model(config).initial_state)
  if jax.tree.structure(carry) != jax.tree.structure(expected):
    raise ValueError(f"the carry is not a {type(expected).__name__} of this "
                     f"{type(config).__name__} (a carry from another config?): got "
                     f"{jax.tree.structure(carry)}")
  for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(expected)):
    if tuple(got.shape) != batch + tuple(want.shape):
      raise ValueError(f"the carry does not fit this {type(config).__name__} and batch "
                       f"{batch}: a leaf has shape {tuple(got.shape)}, expected "
                       f"{batch + tuple(want.shape)} (a carry from another config?)")


def step(config, reset_input: bool, params: core.Params, carry, x: jax.Array,
         reset: jax.Array | None = None):
  """One core step for every lane: carry [*B, ...], x [*B, F] -> (carry, y [*B, O]).

  `reset` [*B] bool (optional; or'ed with the input's flag under `reset_input`) returns
  a lane to `initial_state()` before the step."""
  m = model(config)
  check_input(config, reset_input, x.shape)
  batch = tuple(x.shape[:-1])
  check_carry(config, carry, batch)
  if reset is not None:
    core.check_reset(reset, batch)
  if reset_input:
    flag = x[..., -1] > 0.5
    reset = flag if reset is None else reset | flag
    x = x[..., :-1]
  if reset is None:
    fn = lambda s, x_: m.step(params, s, x_)
    args = (carry, x)
  else:
    fn = lambda s, x_, r: m.step(params, core.reset_where(m, r, s), x_)
    args = (carry, x, reset)
  for _ in batch:
    fn = jax.vmap(fn)
  return fn(*args)


def check_params(config, params: dict) -> dict:
  """`params` as the core's flat dict; ValueError naming what is missing, extra or of
  the wrong shape (so a conversion loses nothing silently)."""
  shapes = param_shapes(config)
  missing, extra = sorted(set(shapes) - set(params)), sorted(set(params) - set(shapes))
  if missing or extra:
    raise ValueError(f"params do not match the {type(config).__name__}: missing "
                     f"{missing or 'none'}, extra {extra or 'none'}")
  wrong = [f"{k} {tuple(jnp.shape(params[k]))} (want {shapes[k].shape})" for k in sorted(shapes)
           if tuple(jnp.shape(params[k])) != shapes[k].shape]
  if wrong:
    raise ValueError(f"params of the wrong shape: {', '.join(wrong)}")
  return {k: params[k] for k in sorted(shapes)}
