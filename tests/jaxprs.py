"""Shapes in a jaxpr, for tests that check what a differentiated step keeps."""

import jax.numpy as jnp


def float_shapes(jaxpr, found=None):
  """Every floating-point array shape in a jaxpr and its sub-jaxprs."""
  found = set() if found is None else found
  for eqn in jaxpr.eqns:
    for var in (*eqn.invars, *eqn.outvars):
      aval = getattr(var, "aval", None)
      if hasattr(aval, "shape") and jnp.issubdtype(aval.dtype, jnp.floating):
        found.add(tuple(aval.shape))
    for param in eqn.params.values():
      for sub in (param if isinstance(param, (tuple, list)) else (param,)):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          float_shapes(inner, found)
  return found
