"""The cores as Flax nnx modules: `nnx.RNN(module)` scans them.

`CoreModule(config, rngs=...)` follows `flax.nnx.RNNCellBase`: `__call__(carry, x) ->
(carry, y)` with x [*B, I] and y [*B, O], `initialize_carry(input_shape, rngs)`,
`num_feature_axes` = 1. It holds the core's flat params dict as one `nnx.Param` per
entry, an attribute under the core's own name ('Wxh', 'Whh', 'bh', ...), drawn by the
core's own `init`; its carry is the core's state NamedTuple with the batch axes in front;
`reset` (an argument, or `reset_input=True` for a flag as the last input feature)
restarts lanes from `initial_state()` inside the scan, as `linen.CoreCell` does.

    module = dncjax.flax.nnx.module('dnc', I, O, rngs=nnx.Rngs(0), hidden=64)
    ys_BxTxO = nnx.RNN(module)(xs_BxTxI)

`core_params()` gives the core's dict; `from_core_params` builds a module holding one.
"""

from __future__ import annotations

import jax
from flax import nnx

from dncjax import models
from dncjax.flax import batched


class CoreModule(nnx.RNNCellBase):
  """One registered core (rnn, lstm, seed_dnc, dnc) as an nnx RNN cell."""

  def __init__(self, config, *, rngs: nnx.Rngs, reset_input: bool = False):
    """config: the core's frozen config (`models.make_config`, sizes set); rngs: its
    'params' stream draws the core's `init` key; reset_input: the last input feature
    is a reset flag (x [*B, I + 1])."""
    self.config = config
    self.reset_input = reset_input
    for name, value in batched.model(config).init(rngs.params()).items():
      setattr(self, name, nnx.Param(value))

  def core_params(self) -> dict:
    """The core's flat params dict (name -> array), as `core.Model.step` takes it."""
    return {name: getattr(self, name)[...] for name in batched.param_shapes(self.config)}

  def load_core_params(self, params: dict) -> None:
    """Sets every entry from the core's flat dict `params` (ValueError if an entry is
    missing, extra or of the wrong shape)."""
    for name, value in batched.check_params(self.config, params).items():
      getattr(self, name)[...] = value

  def __call__(self, carry, x: jax.Array, reset: jax.Array | None = None):
    """One step for every lane: carry [*B, ...], x [*B, F] -> (carry, y [*B, O]);
    `reset` [*B] bool restarts the lanes it marks from `initial_state()` first."""
    return batched.step(self.config, self.reset_input, self.core_params(), carry, x, reset)

  def initialize_carry(self, input_shape: tuple[int, ...], rngs=None, carry_init=None):
    """The core's `initial_state()` for the batch axes of `input_shape` [*B, F] (the
    state is deterministic: `rngs` and `carry_init` are unused)."""
    del rngs, carry_init
    return batched.initial_carry(self.config, self.reset_input, input_shape)

  @property
  def num_feature_axes(self) -> int:
    """One feature axis: x is [*B, F]."""
    return 1

  @property
  def model(self):
    """The wrapped `core.Model`."""
    return batched.model(self.config)


def module(name: str, input_size: int, output_size: int, *, rngs: nnx.Rngs,
           reset_input: bool = False, **hyperparameters) -> CoreModule:
  """The `CoreModule` of model `name` ('rnn', 'lstm', 'seed_dnc', 'dnc') with these sizes
  and hyperparameters (`models.make_config`; unknown names raise ValueError)."""
  config = models.make_config(name, input_size, output_size, **hyperparameters)
  return CoreModule(config, rngs=rngs, reset_input=reset_input)


def from_core_params(config, params: dict, *, reset_input: bool = False) -> CoreModule:
  """A `CoreModule` of `config` holding the core's flat `params` (checked)."""
  out = CoreModule(config, rngs=nnx.Rngs(0), reset_input=reset_input)
  out.load_core_params(params)
  return out


def carries(module_: CoreModule, xs_BxTxF: jax.Array, initial=None):
  """Runs `module_` over time keeping every carry: (carries with leaves [B, T, ...],
  ys [B, T, O]), as `linen.carries`."""
  carry = initial if initial is not None else module_.initialize_carry(xs_BxTxF[:, 0].shape)
  params = module_.core_params()

  def body(carry, x):
    carry, y = batched.step(module_.config, module_.reset_input, params, carry, x)
    return carry, (carry, y)

  _, (states, ys) = jax.lax.scan(body, carry, jax.numpy.swapaxes(xs_BxTxF, 0, 1))
  return jax.tree.map(lambda a: jax.numpy.swapaxes(a, 0, 1), (states, ys))
