"""dncjax.models.access: interface parsing, and the access step against the paper's step in
NumPy (with de-allocation, link sharpness and key masking) and by hand.

Float64 throughout, on tiny sizes (N = 4, W = 3, R = 2); the access step is jitted once
per parametrisation.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax.models import access

jax.config.update("jax_enable_x64", True)

N, W, R = 4, 3, 2
RNG = np.random.default_rng(1)


def softplus(x):
  return np.log1p(np.exp(x))


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


# ----- the interface ---------------------------------------------------------------------

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


@pytest.mark.slow
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
