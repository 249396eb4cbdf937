"""NaN/Inf checks of pytrees (parameters, optimiser states, checkpoints).

Only float (and complex) leaves are checked; integer leaves and PRNG keys are ignored.
`tree_finite` traces (usable inside a jitted step); `all_finite` and `check_finite` run
one compiled reduction on the host's side.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dncjax.training.checkpoint_errors import CheckpointError


def _float_leaves(tree: Any) -> list:
  """The leaves of `tree` with a float (or complex) dtype; integers and PRNG keys are not."""
  def is_float(leaf):
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
      dtype = np.result_type(leaf)
    return jnp.issubdtype(dtype, jnp.inexact)
  return [leaf for leaf in jax.tree.leaves(tree) if is_float(leaf)]


def tree_finite(tree: Any) -> jax.Array:
  """True (a traced bool, usable inside a jitted step) when every float in `tree` is
  finite; integer leaves and PRNG keys are ignored."""
  leaves = _float_leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else True


_finite_all = jax.jit(tree_finite)


@jax.jit
def _finite_each(leaves):
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])


def all_finite(tree: Any) -> bool:
  """Every float in `tree` (parameters, an optax state ...) is finite: one compiled
  reduction; integer leaves and PRNG keys are ignored."""
  leaves = _float_leaves(tree)
  return not leaves or bool(_finite_all(leaves))


def check_finite(tree: Any, what: str) -> None:
  """CheckpointError naming (a few of) the leaves of `tree` holding NaN or Inf, if any;
  `what` names the tree (e.g. 'checkpoint 12 in runs/x/checkpoints')."""
  if all_finite(tree):
    return
  paths = [jax.tree_util.keystr(path, simple=True, separator=".") or "(root)"
           for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
           if _float_leaves(leaf)]
  flags = np.asarray(_finite_each(_float_leaves(tree)))
  bad = [path for path, ok in zip(paths, flags) if not ok]
  more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
  raise CheckpointError(f"{what} holds non-finite values (NaN/Inf in {', '.join(bad[:3])}"
                        f"{more}): it cannot be used")
