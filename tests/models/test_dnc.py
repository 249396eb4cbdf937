"""dncjax.access and dncjax.dnc: interface parsing, one access step against NumPy, the
model's gradients against central differences (float64), vmap / scan consistency,
truncation, and a short training run through `dncjax.train.make_train_step`.

Sizes are tiny and each jitted function is built once per module (module-scoped
fixtures), so compiling dominates and stays to a handful of programs.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dncjax import pytrees
from dncjax import models
import dncjax
from dncjax.models import access
from dncjax.models import core
from dncjax.models import dnc
from dncjax.training import train

jax.config.update("jax_enable_x64", True)

I, O, H, N, W, R, T = 3, 2, 5, 4, 3, 2, 5
RNG = np.random.default_rng(1)


def tiny(**overrides):
  hp = dict(hidden=H, memory_size=N, word_size=W, read_heads=R, dtype="float64")
  hp.update(overrides)
  return dncjax.make_model("dnc", I, O, **hp)


def softplus(x):
  return np.log1p(np.exp(x))


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


# ----- config and interface -----------------------------------------------------------------

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


def test_parse_interface_order_and_transforms():
  size = access.interface_size(W, R)
  assert size == R * W + R + W + 1 + W + W + R + 1 + 1 + 3 * R
  xi = RNG.normal(size=size)
  got = access.parse_interface(jnp.asarray(xi), W, R)
  at = 0

  def take(n):
    nonlocal at
    at += n
    return xi[at - n:at]

  np.testing.assert_allclose(got.read_keys, take(R * W).reshape(R, W))
  np.testing.assert_allclose(got.read_strengths, 1 + softplus(take(R)))
  np.testing.assert_allclose(got.write_key, take(W))
  np.testing.assert_allclose(got.write_strength, 1 + softplus(take(1)[0]))
  np.testing.assert_allclose(got.erase, sigmoid(take(W)))
  np.testing.assert_allclose(got.write_vector, take(W))
  np.testing.assert_allclose(got.free_gates, sigmoid(take(R)))
  np.testing.assert_allclose(got.allocation_gate, sigmoid(take(1)[0]))
  np.testing.assert_allclose(got.write_gate, sigmoid(take(1)[0]))
  modes = np.exp(take(3 * R).reshape(R, 3))
  np.testing.assert_allclose(got.read_modes, modes / modes.sum(-1, keepdims=True))
  assert at == size
  assert got.forward_sharpness is None and got.backward_sharpness is None
  with pytest.raises(ValueError):
    access.parse_interface(jnp.zeros(size + 1), W, R)
  # With link sharpness, 2 R more values at the end: s^f then s^b, through oneplus.
  sharp_size = access.interface_size(W, R, link_sharpness=True)
  assert sharp_size == size + 2 * R
  extra = RNG.normal(size=2 * R)
  sharp = access.parse_interface(jnp.asarray(np.concatenate([xi, extra])), W, R, True)
  for name, value in got._asdict().items():
    if value is not None:
      np.testing.assert_array_equal(getattr(sharp, name), value, err_msg=name)
  np.testing.assert_allclose(sharp.forward_sharpness, 1 + softplus(extra[:R]))
  np.testing.assert_allclose(sharp.backward_sharpness, 1 + softplus(extra[R:]))
  with pytest.raises(ValueError):
    access.parse_interface(jnp.asarray(xi), W, R, link_sharpness=True)
  # With key masking too, W + R W more after those: m^w then m^r, through sigmoid.
  assert access.interface_size(W, R, True, True) == sharp_size + W + R * W
  assert access.interface_size(W, R, False, True) == size + W + R * W
  masks = RNG.normal(size=W + R * W)
  both = access.parse_interface(jnp.asarray(np.concatenate([xi, extra, masks])), W, R, True, True)
  np.testing.assert_allclose(both.forward_sharpness, sharp.forward_sharpness)
  np.testing.assert_allclose(both.write_mask, sigmoid(masks[:W]))
  np.testing.assert_allclose(both.read_masks, sigmoid(masks[W:]).reshape(R, W))
  only = access.parse_interface(jnp.asarray(np.concatenate([xi, masks])), W, R, False, True)
  assert only.forward_sharpness is None
  np.testing.assert_allclose(only.read_masks, both.read_masks)


# ----- one access step against NumPy ------------------------------------------------------------

def np_content(memory, keys, strengths, eps=1e-6):
  norms = np.sqrt((memory ** 2).sum(-1) + eps)
  cos = keys @ memory.T / (np.sqrt((keys ** 2).sum(-1) + eps)[:, None] * norms[None, :])
  e = np.exp(strengths[:, None] * cos)
  return e / e.sum(-1, keepdims=True)


def np_sharpen(d, s, eps=1e-6):
  powered = (d + eps) ** s[:, None]
  return powered / powered.sum(-1, keepdims=True)


def np_masked_content(memory, keys, strengths, masks):
  if masks is None:
    return np_content(memory, keys, strengths)
  return np.stack([np_content(memory * m, k[None] * m, b[None])[0]
                   for k, b, m in zip(keys, strengths, masks)])


def np_access_step(s, f, deallocate=False):
  """The paper's step in its order, with the NumPy state `s` and interface `f`
  (`deallocate`: Csordas & Schmidhuber's wipe of freed slots; an interface with
  sharpness: their sharpened f_t, b_t; with masks: their masked look-ups)."""
  psi = np.prod(1 - f.free_gates[:, None] * s.read_weights, axis=0)
  usage = (s.usage + s.write_weights - s.usage * s.write_weights) * psi
  clamped = 1e-6 + (1 - 1e-6) * usage
  alloc, prod = np.zeros(N), 1.0
  for j in np.argsort(clamped, kind="stable"):
    alloc[j], prod = (1 - clamped[j]) * prod, prod * clamped[j]
  c_w = np_masked_content(s.memory, f.write_key[None], np.array([f.write_strength]),
                          None if f.write_mask is None else f.write_mask[None])[0]
  w_w = f.write_gate * (f.allocation_gate * alloc + (1 - f.allocation_gate) * c_w)
  kept = s.memory * psi[:, None] if deallocate else s.memory
  memory = kept * (1 - np.outer(w_w, f.erase)) + np.outer(w_w, f.write_vector)
  link = np.array([[0.0 if i == j else (1 - w_w[i] - w_w[j]) * s.link[i, j]
                    + w_w[i] * s.precedence[j] for j in range(N)] for i in range(N)])
  precedence = (1 - w_w.sum()) * s.precedence + w_w
  fwd, bwd = s.read_weights @ link.T, s.read_weights @ link
  if f.forward_sharpness is not None:
    fwd, bwd = np_sharpen(fwd, f.forward_sharpness), np_sharpen(bwd, f.backward_sharpness)
  c_r = np_masked_content(memory, f.read_keys, f.read_strengths, f.read_masks)
  m = f.read_modes
  w_r = m[:, :1] * bwd + m[:, 1:2] * c_r + m[:, 2:] * fwd
  return access.AccessState(memory, usage, link, precedence, w_r, w_w, w_r @ memory)


@pytest.mark.parametrize("deallocate, sharpness, masking",
                         [(False, False, False), (True, False, False), (True, True, True)])
def test_access_step_matches_numpy_over_several_steps(deallocate, sharpness, masking):
  state = access.initial_access_state(N, W, R, "float64")
  step = jax.jit(functools.partial(access.access_step, deallocate=deallocate))
  np_state = jax.tree.map(np.asarray, state)
  for _ in range(4):
    xi = jnp.asarray(RNG.normal(size=access.interface_size(W, R, sharpness, masking)) * 2)
    interface = access.parse_interface(xi, W, R, sharpness, masking)
    state = step(state, interface)
    np_state = np_access_step(np_state, jax.tree.map(np.asarray, interface), deallocate)
    if sharpness:  # f_t, b_t and c_t all on the simplex, so w^r_t is too
      np.testing.assert_allclose(np.asarray(state.read_weights).sum(-1), 1, rtol=1e-12)
    for name, got, want in zip(access.AccessState._fields, state, np_state):
      np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=name)


def test_deallocation_wipes_a_freed_slot_by_hand():
  """Slot 0 full and read at t-1; free gate 1, no write: the paper's DNC only marks it
  unused, de-allocation also empties it, so content look-ups no longer find it."""
  memory = jnp.zeros((N, W)).at[0].set(1.0)
  read = jnp.zeros((R, N)).at[0, 0].set(1.0)
  state = access.initial_access_state(N, W, R, "float64")._replace(
      memory=memory, usage=jnp.zeros(N).at[0].set(1.0), read_weights=read)
  xi = jnp.zeros(access.interface_size(W, R))
  interface = access.parse_interface(xi, W, R)._replace(
      free_gates=jnp.zeros(R).at[0].set(1.0), write_gate=jnp.asarray(0.0))
  kept = access.access_step(state, interface)
  wiped = access.access_step(state, interface, deallocate=True)
  assert float(kept.usage[0]) == 0.0 and float(wiped.usage[0]) == 0.0
  np.testing.assert_array_equal(kept.memory, memory)
  np.testing.assert_array_equal(wiped.memory, jnp.zeros((N, W)))


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


def test_gradient_matches_central_differences(deep):
  """Float64 jax.grad against central differences on sampled entries of every
  parameter, from the all-zero initial memory (cosine at zero rows included)."""
  _, params, _, loss = deep
  check_gradient(loss, params, {name: RNG.choice(v.size, size=min(3, v.size), replace=False)
                                for name, v in params.items()})


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


def test_trains_on_a_delayed_copy():
  """Predict the previous step's bits: the summed sigmoid cross-entropy falls from chance
  in 30 Adagrad steps of `make_train_step` (every window starts from the initial state)."""
  model = dncjax.make_model("dnc", 4, 4, hidden=16, memory_size=8, word_size=4,
                            read_heads=1)
  optimizer = train.make_optimizer(train.OptimizerConfig(learning_rate=0.1))
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
