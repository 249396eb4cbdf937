"""The DNC's memory access: the interface vector xi_t and one read/write step on M_t.

The controller emits xi_t [interface_size(W, R) = W R + 3 W + 5 R + 3], split in the
paper's order (Methods, "Interface parameters") and transformed:

  k^{r,1..R}_t  read keys           [R, W]   as is
  beta^r_t      read strengths      [R]      oneplus
  k^w_t         write key           [W]      as is
  beta^w_t      write strength      []       oneplus
  e_t           erase vector        [W]      sigmoid
  v_t           write vector        [W]      as is
  f^{1..R}_t    free gates          [R]      sigmoid
  g^a_t         allocation gate     []       sigmoid
  g^w_t         write gate          []       sigmoid
  pi^{1..R}_t   read modes          [R, 3]   softmax over (backward, content, forward)

with oneplus(x) = 1 + softplus(x) = 1 + log(1 + e^x) >= 1. With `link_sharpness` (not
in the paper; Csordas & Schmidhuber, ICLR 2019) 2 R more values follow:

  s^{f,1..R}_t  forward sharpness   [R]      oneplus
  s^{b,1..R}_t  backward sharpness  [R]      oneplus

and with `key_masking` (also theirs) W + R W more, after those:

  m^w_t         write key mask      [W]      sigmoid
  m^{r,1..R}_t  read key masks      [R, W]   sigmoid

One access step (`access_step`) runs the paper's equations in its order: usage u_t from
the previous weights, allocation a_t, write weights w^w_t (content on M_{t-1}), the
write M_t, the link L_t (with p_{t-1}) then the precedence p_t, the directional
weights f_t, b_t from w^r_{t-1} (sharpened, S(f_t, s^f_t) and S(b_t, s^b_t), when the
interface carries sharpness), the read content weights on the NEW memory M_t, the read
weights w^r_t and the read vectors r_t.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dncjax.models import addressing, links, native
from dncjax.models.native import access as kernels


class Interface(NamedTuple):
  """The transformed interface vector xi_t (one example)."""
  read_keys: jax.Array        # k^r     [R, W]
  read_strengths: jax.Array   # beta^r  [R], >= 1
  write_key: jax.Array        # k^w     [W]
  write_strength: jax.Array   # beta^w  [], >= 1
  erase: jax.Array            # e_t     [W], in (0, 1)
  write_vector: jax.Array     # v_t     [W]
  free_gates: jax.Array       # f_t     [R], in (0, 1)
  allocation_gate: jax.Array  # g^a_t   [], in (0, 1)
  write_gate: jax.Array       # g^w_t   [], in (0, 1)
  read_modes: jax.Array       # pi_t    [R, 3], rows on the simplex (backward, content, forward)
  forward_sharpness: jax.Array | None = None   # s^f_t [R], >= 1 (link_sharpness only)
  backward_sharpness: jax.Array | None = None  # s^b_t [R], >= 1 (link_sharpness only)
  write_mask: jax.Array | None = None          # m^w_t [W], in (0, 1) (key_masking only)
  read_masks: jax.Array | None = None          # m^r_t [R, W], in (0, 1) (key_masking only)


class AccessState(NamedTuple):
  """The memory and everything the next step's addressing needs (one example)."""
  memory: jax.Array         # M_t      [N, W]
  usage: jax.Array          # u_t      [N]
  link: jax.Array           # L_t      [N, N]
  precedence: jax.Array     # p_t      [N]
  read_weights: jax.Array   # w^r_t    [R, N]
  write_weights: jax.Array  # w^w_t    [N]
  read_vectors: jax.Array   # r_t      [R, W]


def oneplus(x: jax.Array) -> jax.Array:
  """oneplus(x) = 1 + log(1 + e^x), the paper's transform of the key strengths (>= 1)."""
  return 1 + jax.nn.softplus(x)


def _sizes(W: int, R: int, link_sharpness: bool, key_masking: bool) -> tuple[int, ...]:
  return ((R * W, R, W, 1, W, W, R, 1, 1, 3 * R) + ((R, R) if link_sharpness else ())
          + ((W, R * W) if key_masking else ()))


def interface_size(word_size: int, read_heads: int, link_sharpness: bool = False,
                   key_masking: bool = False) -> int:
  """Length of xi_t: R W (read keys) + R + W + 1 + W (erase) + W (write) + R + 1 + 1 + 3 R,
  + 2 R with `link_sharpness`, + W + R W with `key_masking`."""
  return sum(_sizes(word_size, read_heads, link_sharpness, key_masking))


def parse_interface(xi: jax.Array, word_size: int, read_heads: int,
                    link_sharpness: bool = False, key_masking: bool = False) -> Interface:
  """Splits the raw interface vector xi_t [interface_size(W, R, link_sharpness,
  key_masking)] and applies the transforms (oneplus, sigmoid, softmax)."""
  W, R = word_size, read_heads
  sizes = _sizes(W, R, link_sharpness, key_masking)
  if xi.shape != (sum(sizes),):
    raise ValueError(f"interface vector must have shape ({sum(sizes)},), got {xi.shape}")
  split_points = [sum(sizes[:i]) for i in range(1, len(sizes))]
  (read_keys, read_strengths, write_key, write_strength, erase, write_vector, free_gates,
   allocation_gate, write_gate, read_modes, *extras) = jnp.split(xi, split_points)
  forward_sharpness = backward_sharpness = write_mask = read_masks = None
  if link_sharpness:
    forward_sharpness, backward_sharpness, *extras = extras
    forward_sharpness, backward_sharpness = oneplus(forward_sharpness), oneplus(backward_sharpness)
  if key_masking:
    write_mask, read_masks = jax.nn.sigmoid(extras[0]), jax.nn.sigmoid(extras[1]).reshape(R, W)
  return Interface(
      read_keys=read_keys.reshape(R, W),
      read_strengths=oneplus(read_strengths),
      write_key=write_key,
      write_strength=oneplus(write_strength[0]),
      erase=jax.nn.sigmoid(erase),
      write_vector=write_vector,
      free_gates=jax.nn.sigmoid(free_gates),
      allocation_gate=jax.nn.sigmoid(allocation_gate[0]),
      write_gate=jax.nn.sigmoid(write_gate[0]),
      read_modes=jax.nn.softmax(read_modes.reshape(R, 3), axis=-1),
      forward_sharpness=forward_sharpness,
      backward_sharpness=backward_sharpness,
      write_mask=write_mask,
      read_masks=read_masks,
  )


def initial_access_state(memory_size: int, word_size: int, read_heads: int,
                         dtype="float32") -> AccessState:
  """Empty memory: M, u, L, p, w^r, w^w and r all zero."""
  N, W, R = memory_size, word_size, read_heads
  zeros = lambda *shape: jnp.zeros(shape, dtype)
  return AccessState(memory=zeros(N, W), usage=zeros(N), link=zeros(N, N),
                     precedence=zeros(N), read_weights=zeros(R, N), write_weights=zeros(N),
                     read_vectors=zeros(R, W))


def access_step(state: AccessState, interface: Interface, *,
                norm_eps: float = addressing.NORM_EPS,
                usage_eps: float = addressing.USAGE_EPS,
                deallocate: bool = False, fused: bool = True,
                xi: jax.Array | None = None) -> AccessState:
  """One write then read on the memory, in the paper's order -> the next AccessState.

  `deallocate` (Csordas & Schmidhuber, ICLR 2019, "Improving Differentiable Neural
  Computers Through Memory Masking, De-allocation, and Link Distribution Sharpness
  Control"; off in the paper's DNC): freeing also wipes, M_t = (M_{t-1} psi_t 1^T)
  (E - w^w_t e_t^T) + w^w_t v_t^T, so a freed slot no longer answers content look-ups
  and freeing a slot that is still needed costs at once. An interface with sharpness
  (`parse_interface(..., link_sharpness=True)`) sharpens f_t and b_t (`addressing.sharpen`);
  one with key masks (`key_masking=True`) masks the write and read content look-ups.
  With `fused` and `xi` (the raw interface vector `interface` was parsed from), the write
  and the read run as CPU kernels where those are used (`native/access.py`: the link
  kernel's choice, no de-allocation nor key masks), which transform xi's parts
  themselves; else, and otherwise, as XLA's operations. The same equations either way."""
  fused = (fused and xi is not None and not deallocate and interface.write_mask is None
           and interface.read_masks is None
           and native.usable(state.memory.dtype, state.memory.shape[0]))
  if fused:
    usage, write_weights, memory = kernels.write(
        state.memory, state.usage, state.write_weights, state.read_weights, xi,
        norm_eps=norm_eps, usage_eps=usage_eps)
  else:
    usage, write_weights, memory = _write(state, interface, norm_eps, usage_eps, deallocate)
  # Temporal links and the directional weights f_t, b_t (from L_t and w^r_{t-1}) in one
  # step with a hand-derived backward pass (links.py; the same values as
  # addressing.link_update then addressing.directional_weights).
  link, forward, backward = links.link_step(state.link, write_weights, state.precedence,
                                            state.read_weights)
  precedence = addressing.precedence_update(state.precedence, write_weights)
  # Read: content c^r_t on the new M_t; then r_t.
  if interface.forward_sharpness is not None:
    forward = addressing.sharpen(forward, interface.forward_sharpness)
    backward = addressing.sharpen(backward, interface.backward_sharpness)
  if fused:
    read_weights, read_vectors = kernels.read(memory, forward, backward, xi,
                                              norm_eps=norm_eps)
  else:
    content = addressing.content_weights(memory, interface.read_keys,
                                         interface.read_strengths,
                                         masks_HxW=interface.read_masks, norm_eps=norm_eps)
    read_weights = addressing.read_weights(content, forward, backward, interface.read_modes)
    read_vectors = addressing.read_memory(memory, read_weights)
  return AccessState(memory=memory, usage=usage, link=link, precedence=precedence,
                     read_weights=read_weights, write_weights=write_weights,
                     read_vectors=read_vectors)


def _write(state: AccessState, interface: Interface, norm_eps: float, usage_eps: float,
           deallocate: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(u_t, w^w_t, M_t) as XLA's operations."""
  # Dynamic memory allocation: u_t from w^w_{t-1}, w^r_{t-1}; a_t from u_t.
  usage = addressing.usage_update(state.usage, state.write_weights, interface.free_gates,
                                  state.read_weights)
  allocation = addressing.allocation_weights(usage, usage_eps=usage_eps)
  # Write: w^w_t (content on M_{t-1}), then M_t.
  write_weights = addressing.write_weights(
      state.memory, interface.write_key, interface.write_strength, allocation,
      interface.allocation_gate, interface.write_gate, write_mask_W=interface.write_mask,
      norm_eps=norm_eps)
  kept = state.memory
  if deallocate:
    kept = kept * addressing.retention(interface.free_gates, state.read_weights)[:, None]
  return usage, write_weights, addressing.write_memory(kept, write_weights, interface.erase,
                                                       interface.write_vector)
