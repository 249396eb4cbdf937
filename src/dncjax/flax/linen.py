"""The cores as Flax linen cells: `nn.RNN(cell)` and `nn.Bidirectional` scan them.

`CoreCell(config)` follows `flax.linen.RNNCellBase`: `__call__(carry, x) -> (carry, y)`
with x [*B, I] and y [*B, O], `initialize_carry(rng, input_shape)`, `num_feature_axes`
= 1. It wraps the core (`dncjax.models`) and adds no maths of its own:

  params   the core's flat dict, one `self.param` per entry under the core's own name
           ('Wxh', 'Whh', 'bh', ...; the DNC's 'Whi', 'Why', 'Wry', ...)
  carry    the core's state NamedTuple, batch axes in front (the DNC's
           `DNCState(controller, access)`: memory M [*B, N, W], usage u [*B, N],
           link L [*B, N, N], weights w^r [*B, R, N], w^w [*B, N], reads r [*B, R, W])
  reset    `__call__(carry, x, reset)` with reset [*B] bool, or `reset_input=True`: the
           last input feature is a flag (> 0.5: the lane restarts from
           `initial_state()` before this step), so packed episodes run in one `nn.RNN`

    cell = dncjax.flax.linen.cell('dnc', I, O, hidden=64, memory_size=16)
    ys_BxTxO = nn.RNN(cell)(xs_BxTxI)

`core_params` / `linen_params` convert a params tree to the core's flat dict and back;
`carries` runs a cell and keeps its carry at every step (for `memory.memory_arrays`).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax

from dncjax import models
from dncjax.flax import batched


class CoreCell(nn.RNNCellBase):
  """One registered core (rnn, lstm, seed_dnc, dnc) as a linen RNN cell.

  Attributes:
    config: the core's frozen config (`dncjax.models.make_config`; input and output
      sizes set; float64 needs `jax_enable_x64`).
    reset_input: whether the last input feature is a reset flag (x [*B, I + 1]).
  """
  config: Any
  reset_input: bool = False

  @nn.compact
  def __call__(self, carry, x: jax.Array, reset: jax.Array | None = None):
    """One step for every lane: carry [*B, ...], x [*B, F] -> (carry, y [*B, O]);
    `reset` [*B] bool restarts the lanes it marks from `initial_state()` first."""
    params = {name: self.param(name, functools.partial(batched.init_entry, self.config, name))
              for name in batched.param_shapes(self.config)}
    return batched.step(self.config, self.reset_input, params, carry, x, reset)

  @nn.nowrap
  def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
    """The core's `initial_state()` for the batch axes of `input_shape` [*B, F] (the
    state is deterministic: `rng` is unused)."""
    del rng
    return batched.initial_carry(self.config, self.reset_input, input_shape)

  @property
  def num_feature_axes(self) -> int:
    """One feature axis: x is [*B, F]."""
    return 1

  @property
  def model(self):
    """The wrapped `core.Model`."""
    return batched.model(self.config)


def cell(name: str, input_size: int, output_size: int, *, reset_input: bool = False,
         **hyperparameters) -> CoreCell:
  """The `CoreCell` of model `name` ('rnn', 'lstm', 'seed_dnc', 'dnc') with these sizes
  and hyperparameters (`models.make_config`; unknown names raise ValueError)."""
  config = models.make_config(name, input_size, output_size, **hyperparameters)
  return CoreCell(config, reset_input=reset_input)


def _subtree(tree, path: tuple[str, ...]):
  for key in path:
    if key not in tree:
      raise ValueError(f"no {key!r} in the params tree at {'/'.join(path)}; "
                       f"found: {', '.join(map(str, tree))}")
    tree = tree[key]
  return tree


def core_params(config, tree, path: tuple[str, ...] = ()) -> dict:
  """The core's flat params dict from a linen tree: `tree[path...]` holds the cell's own
  params (e.g. variables['params'] and path ('cell',) for `nn.RNN(cell)`; a leading
  'params' collection is skipped). ValueError if an entry is missing, extra or of the
  wrong shape."""
  if "params" in tree and "params" not in batched.param_shapes(config):
    tree = tree["params"]
  return batched.check_params(config, dict(_subtree(tree, tuple(path))))


def linen_params(config, params: dict, path: tuple[str, ...] = ()) -> dict:
  """The linen variables {'params': {*path: {name: array}}} holding the core's flat
  `params` (checked as in `core_params`): `module.apply(linen_params(...), ...)`."""
  tree = batched.check_params(config, params)
  for key in reversed(tuple(path)):
    tree = {key: tree}
  return {"params": tree}


def carries(cell_: CoreCell, variables, xs_BxTxF: jax.Array, initial=None):
  """Runs `cell_` over time keeping every carry: (carries with leaves [B, T, ...],
  ys [B, T, O]). `variables` are the cell's own ({'params': {name: ...}})."""
  carry = initial if initial is not None else cell_.initialize_carry(
      jax.random.key(0), xs_BxTxF[:, 0].shape)

  def body(carry, x):
    carry, y = cell_.apply(variables, carry, x)
    return carry, (carry, y)

  _, (states, ys) = jax.lax.scan(body, carry, jax.numpy.swapaxes(xs_BxTxF, 0, 1))
  return jax.tree.map(lambda a: jax.numpy.swapaxes(a, 0, 1), (states, ys))
