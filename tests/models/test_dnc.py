"""dncjax.models.dnc: config validation, the model's parameters, its gradients against central
differences (float64), vmap / scan consistency, truncation, and a short training run
through `dncjax.training.train.make_train_step` (the access step itself: test_access.py).

Sizes are tiny and each jitted function is built once per module (module-scoped
fixtures), so compiling dominates and stays to a handful of programs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dncjax import models, pytrees
import dncjax
from dncjax.models import access, core, dnc
from dncjax.training import optim, train

jax.config.update("jax_enable_x64", True)

I, O, H, N, W, R, T = 3, 2, 5, 4, 3, 2, 5
RNG = np.random.default_rng(1)


def tiny(**overrides):
  hp = dict(hidden=H, memory_size=N, word_size=W, read_heads=R, dtype="float64")
  hp.update(overrides)
  return dncjax.make_model("dnc", I, O, **hp)


# ----- config ----------------------------------------------------------------------------

def test_config_validation_and_registry():
  assert "dnc" in models.model_names()
  model = tiny()
  assert isinstance(model.config, dnc.DNCConfig) and model.config.variant == "textbook"
  for bad in (dict(memory_size=0), dict(read_heads=-1), dict(word_size=2.5),
              dict(controller_layers=0), dict(controller_clip=0.0), dict(dtype="float16"),
              dict(variant="peephole"), dict(usage_eps=0.0)):
    with pytest.raises(ValueError):
      tiny(**bad)
  with pytest.raises(ValueError, match="no hyperparameter"):
    tiny(memory_slots=4)


# ----- the whole model ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deep():
  """A two-layer float64 DNC, its params, inputs and a jitted window loss."""
  model = tiny(controller_layers=2, init_scale=0.5)
  params = model.init(jax.random.key(0))
  xs = jnp.asarray(RNG.normal(size=(T, I)))
  out_weights = jnp.asarray(RNG.normal(size=(T, O)))

  def loss(params):
    _, ys = core.unroll(model, params, model.initial_state(), xs)
    return jnp.sum(jnp.sin(ys) * out_weights)

  return model, params, xs, jax.jit(loss)


@pytest.mark.slow
def test_params_are_flat_named_and_oriented(deep):
  model, params, _, _ = deep
  X = access.interface_size(W, R)
  shapes = {k: v.shape for k, v in params.items()}
  assert shapes["Wxh"] == (4 * H, I) and shapes["Wrh"] == (4 * H, R * W)
  assert shapes["Whh"] == shapes["Wlh_1"] == (4 * H, H) and shapes["Wxh_1"] == (4 * H, I)
  assert shapes["Whi"] == (X, 2 * H) and shapes["bi"] == (X,)
  assert shapes["Why"] == (O, 2 * H) and shapes["Wry"] == (O, R * W) and shapes["by"] == (O,)
  np.testing.assert_array_equal(params["bh_1"][2 * H:3 * H], 1.0)  # forget bias
  assert all(v.dtype == jnp.float64 for v in params.values())


def check_gradient(loss, params, entries):
  """jax.grad of `loss` against (f(p + h) - f(p - h)) / 2h at `entries[name]` (flat
  indices) of each named parameter; every gradient finite. Returns the gradients."""
  grads = jax.grad(loss)(params)
  h = 1e-6
  for name, value in params.items():
    assert np.all(np.isfinite(grads[name])), name
    flat = np.asarray(value).ravel()
    for i in entries.get(name, ()):
      bumped = [flat.copy(), flat.copy()]
      bumped[0][i] += h
      bumped[1][i] -= h
      f_plus, f_minus = (loss({**params, name: jnp.asarray(b.reshape(value.shape))})
                         for b in bumped)
      numeric = (f_plus - f_minus) / (2 * h)
      analytic = np.asarray(grads[name]).ravel()[i]
      assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (name, i)
  return grads


@pytest.mark.slow
def test_gradient_matches_central_differences(deep):
  """Float64 jax.grad against central differences on sampled entries of every
  parameter, from the all-zero initial memory (cosine at zero rows included)."""
  _, params, _, loss = deep
  check_gradient(loss, params, {name: RNG.choice(v.size, size=min(3, v.size), replace=False)
                                for name, v in params.items()})


@pytest.mark.slow
def test_gradient_with_deallocation_sharpness_and_masks():
  """The same check for the DNC with Csordas & Schmidhuber's three changes, at the bias
  of every sharpness s^f, s^b and of sampled key-mask entries, and sampled entries."""
  model = tiny(deallocate=True, link_sharpness=True, key_masking=True, init_scale=0.5)
  params = model.init(jax.random.key(3))
  params["bi"] = jnp.asarray(RNG.normal(size=params["bi"].shape))  # away from the zero start
  xs, out_weights = jnp.asarray(RNG.normal(size=(T, I))), jnp.asarray(RNG.normal(size=(T, O)))
  loss = jax.jit(lambda p: jnp.sum(jnp.sin(core.unroll(model, p, model.initial_state(), xs)[1])
                                   * out_weights))
  X0 = access.interface_size(W, R)  # rows X0 .. X0 + 2R: sharpness; then W + R W masks
  assert params["bi"].shape == (X0 + 2 * R + W + R * W,)
  entries = {name: RNG.choice(v.size, size=2, replace=False) for name, v in params.items()}
  entries["bi"] = np.concatenate([np.arange(X0, X0 + 2 * R),
                                  X0 + 2 * R + RNG.choice(W + R * W, size=4, replace=False)])
  grads = check_gradient(loss, params, entries)
  assert np.all(np.abs(grads["bi"][entries["bi"]]) > 1e-8)  # the extras reach the loss


@pytest.mark.slow
def test_scan_equals_python_loop_and_vmap_equals_per_example(deep):
  model, params, xs, _ = deep
  state, ys = jax.jit(lambda p, xs: core.unroll(model, p, model.initial_state(), xs))(params, xs)
  step = jax.jit(model.step)
  loop_state, loop_ys = model.initial_state(), []
  for x in xs:
    loop_state, y = step(params, loop_state, x)
    loop_ys.append(y)
  np.testing.assert_allclose(ys, np.stack(loop_ys), rtol=1e-12)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(loop_state)):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)

  xs_B = jnp.stack([xs, -xs, 2 * xs])
  states_B = core.batch_initial_state(model, 3)
  _, ys_B = jax.jit(lambda p, s, x: core.batch_unroll(model, p, s, x))(params, states_B, xs_B)
  run = jax.jit(lambda p, x: core.unroll(model, p, model.initial_state(), x)[1])
  for b in range(3):
    np.testing.assert_allclose(ys_B[b], run(params, xs_B[b]), rtol=1e-12)


@pytest.mark.slow
def test_truncate_and_token_inputs():
  kept, wiped = tiny(), tiny(reset_memory=True, controller_clip=0.5)
  params = kept.init(jax.random.key(1))
  tokens = jnp.array([0, 2, 1, 1])  # token ids select columns of Wxh
  state, ys = core.unroll(wiped, params, wiped.initial_state(), tokens)
  assert ys.shape == (4, O) and np.all(np.abs(ys) <= 0.5)
  assert np.abs(state.access.memory).sum() > 0
  assert kept.truncate(state) is state
  cut = wiped.truncate(state)
  for leaf in jax.tree.leaves(cut.access):
    np.testing.assert_array_equal(leaf, 0)
  np.testing.assert_array_equal(cut.controller[0].h, state.controller[0].h)


@pytest.mark.slow
def test_trains_on_a_delayed_copy():
  """Predict the previous step's bits: the summed sigmoid cross-entropy falls from chance
  in 30 Adagrad steps of `make_train_step` (every window starts from the initial state)."""
  model = dncjax.make_model("dnc", 4, 4, hidden=16, memory_size=8, word_size=4,
                            read_heads=1)
  optimizer = optim.make(optim.OptimizerConfig("adagrad", learning_rate=0.1))
  loss_fn = lambda ys, targets: optax.sigmoid_binary_cross_entropy(ys, targets).sum()
  train_step = train.make_train_step(model, optimizer, loss_fn)
  state = train.init_train_state(model, optimizer, jax.random.key(0), 4)
  bits = jax.random.bernoulli(jax.random.key(1), 0.5, (4, 9, 4)).astype("float32")
  batch = pytrees.Batch(bits[:, 1:], bits[:, :-1], jnp.ones((4,), bool))
  losses = []
  for _ in range(30):
    state, metrics = train_step(state, batch)
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses))
  chance = bits[:, 1:].size * np.log(2)  # 8 steps x 4 lanes x 4 bits at p = 1/2
  assert abs(losses[0] - chance) < 0.05 * chance
  assert np.mean(losses[-5:]) < 0.75 * losses[0], losses  # about 0.45-0.6 in practice
