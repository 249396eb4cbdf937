"""The NaN/Inf checks of saved and restored states: floats only (integers and PRNG keys
pass), one-line errors naming the leaves."""

import jax
import jax.numpy as jnp
import optax
import pytest

from dncjax.training import checkpoint, finite


def _params():
  return {"core": {"Whh": jnp.arange(6.0).reshape(2, 3), "by": jnp.full(3, 1, jnp.float32)}}


def test_all_finite_and_check_finite():
  params = _params()
  opt_state = optax.adam(1e-3).init(params)
  assert finite.all_finite({"params": params, "opt": opt_state, "key": jax.random.key(0),
                            "count": jnp.int32(3),
                            "rng": checkpoint.key_to_array(jax.random.key(1))})
  finite.check_finite(params, "x")
  bad_opt = jax.tree.map(lambda a: a.at[0].set(jnp.inf) if a.ndim == 1 else a, opt_state)
  assert not finite.all_finite({"params": params, "opt": bad_opt})
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"^state X holds non-finite values \(NaN/Inf in opt\.0\.mu\.core\.by, "
                           r"opt\.0\.nu\.core\.by\): it cannot be used$"):
    finite.check_finite({"params": params, "opt": bad_opt}, "state X")
  many = {f"w{i}": jnp.full(2, jnp.nan) for i in range(5)}
  with pytest.raises(checkpoint.CheckpointError, match=r"\(NaN/Inf in w0, w1, w2 and 2 more\)"):
    finite.check_finite(many, "y")
  assert finite.all_finite({}) and finite.all_finite({"n": jnp.arange(3)})


def test_tree_finite_is_traced():
  check = jax.jit(finite.tree_finite)
  assert bool(check({"a": jnp.ones(3), "n": jnp.arange(2)}))
  assert not bool(check({"a": jnp.ones(3).at[1].set(jnp.nan)}))
