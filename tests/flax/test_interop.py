"""A model trained through Flax is the core's model again: its params convert to the core's
flat dict, which the core's own tools take (unroll on token ids, the gradient check,
the char-LM sampler)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dncjax
from dncjax.charlm import sampling
from dncjax.flax import linen
from dncjax.models import core
from dncjax.training import gradcheck

V, B, T = 5, 4, 12


def _trained(steps=5):
  """(cell, variables) of nn.RNN(an LSTM cell) after `steps` Adam steps of next-token loss
  on one-hot features, and the token ids [B, T] it saw."""
  cell = linen.cell("lstm", V, V, hidden=6, init_scale=0.5, dtype="float64")
  rnn = nn.RNN(cell)
  ids = jax.random.randint(jax.random.key(0), (B, T), 0, V)
  xs = jax.nn.one_hot(ids, V, dtype=jnp.float64)
  variables = rnn.init(jax.random.key(1), xs)
  opt = optax.adam(1e-2)
  opt_state = opt.init(variables)

  def loss(v):
    logits = rnn.apply(v, xs[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()

  step = jax.jit(lambda v, s: (lambda g: opt.update(g, s, v))(jax.grad(loss)(v)))
  for _ in range(steps):
    updates, opt_state = step(variables, opt_state)
    variables = optax.apply_updates(variables, updates)
  return rnn, cell, variables, ids, xs


@pytest.mark.slow
def test_flax_trained_params_run_in_the_core_and_pass_its_gradient_check():
  rnn, cell, variables, ids, xs = _trained()
  params = linen.core_params(cell.config, variables, ("cell",))
  model = dncjax.build(cell.config)
  assert set(params) == set(model.init(jax.random.key(0)))
  _, ys = core.unroll(model, params, model.initial_state(), ids[0])  # token ids, no one-hot
  np.testing.assert_allclose(ys, rnn.apply(variables, xs)[0], rtol=1e-12, atol=1e-12)
  rows = gradcheck.check_model(model, params=params, batch_size=2, seq_length=6, num_checks=3)
  ok, reason = gradcheck.verdict(rows, 1e-4)
  assert ok, reason


@pytest.mark.slow
def test_flax_trained_params_sample_text_as_a_char_lm_does():
  _, cell, variables, ids, _ = _trained()
  params = linen.core_params(cell.config, variables, ("cell",))
  model = dncjax.build(cell.config)
  drawn, _ = sampling.sample(model, params, model.initial_state(), ids[0, :3],
                             jax.random.key(2), 20, temperature=0.8)
  again, _ = sampling.sample(model, params, model.initial_state(), ids[0, :3],
                             jax.random.key(2), 20, temperature=0.8)
  assert drawn.shape == (20,) and bool(((drawn >= 0) & (drawn < V)).all())
  np.testing.assert_array_equal(drawn, again)
