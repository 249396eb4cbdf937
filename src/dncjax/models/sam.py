"""Sparse Access Memory, SAM (Rae et al., "Scaling Memory-Augmented Neural Networks with
Sparse Reads and Writes", NIPS 2016): the DNC's LSTM controller (`controller.py`) and
R read heads and one write head that each touch K of the N slots of M [N, W].

The controller emits xi_t [interface_size(W, R) = R W + R + W + 2], split and transformed:

  k^{r,1..R}_t  read keys           [R, W]   as is
  beta^r_t      read strengths      [R]      oneplus
  a_t           write vector        [W]      as is
  gamma_t       interpolation gate  []       sigmoid
  alpha_t       write gate          []       sigmoid

(the SDNC's interface adds the read modes pi_t [R, 3], softmax, `read_modes=True`). One
access step, with U_{t-1}[i] the steps since slot i was last accessed (the paper's U^(2)):

  I^U_t     = argmax_i U_{t-1}[i]                            the least recently used slot
  wbar^r    = top_K((1/R) sum_h w^{r,h}_{t-1})                the previously read slots
  w^w_t     = alpha_t (gamma_t wbar^r + (1 - gamma_t) e_{I^U_t})      K + 1 slots at most
  M_t       = M_{t-1} with row I^U_t set to 0, then + w^w_t a_t^T   erase the LRU, add
  w^{r,h}_t = C_K(M_t, k^{r,h}_t, beta^{r,h}_t)              `sparse.content_weights`
  r^h_t     = sum_k w^{r,h}_t[k] M_t[index_k]                 a gather of K rows
  U_t[i]    = 0 if w^w_t[i] + sum_h w^{r,h}_t[i] > delta, else U_{t-1}[i] + 1

The write to the read slots is purely additive; only the LRU slot is erased, and only
the K + 1 written rows and K rows per read head are touched (scatter, gather). The usage
U_t holds integer step counts (it gets no gradient; ties go to the lower slot, so an
empty memory fills in slot order). delta is `access_threshold`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dncjax.models import access, controller, core, sparse
from dncjax.models.hparams import SAMConfig


class SAMInterface(NamedTuple):
  """The transformed interface vector xi_t of SAM (and of the SDNC's 'lru' write)."""
  read_keys: jax.Array           # k^r      [R, W]
  read_strengths: jax.Array      # beta^r   [R], >= 1
  write_vector: jax.Array        # a_t      [W]
  interpolation_gate: jax.Array  # gamma_t  [], in (0, 1): previously read slots vs the LRU
  write_gate: jax.Array          # alpha_t  [], in (0, 1)
  read_modes: jax.Array | None = None  # pi_t [R, 3] (backward, content, forward): the SDNC


class SAMAccessState(NamedTuple):
  """SAM's memory and what the next step needs (one example)."""
  memory: jax.Array                  # M_t    [N, W]
  usage: jax.Array                   # U_t    [N] int32, steps since each slot's last access
  read_weights: sparse.SparseWeights   # w^r_t  [R, K]
  write_weights: sparse.SparseWeights  # w^w_t  [min(K + 1, N)]
  read_vectors: jax.Array            # r_t    [R, W]


def _sizes(W: int, R: int, read_modes: bool) -> tuple[int, ...]:
  return (R * W, R, W, 1, 1) + ((3 * R,) if read_modes else ())


def interface_size(word_size: int, read_heads: int, read_modes: bool = False) -> int:
  """Length of xi_t: R W + R + W + 2, + 3 R with the SDNC's `read_modes`."""
  return sum(_sizes(word_size, read_heads, read_modes))


def parse_interface(xi: jax.Array, word_size: int, read_heads: int,
                    read_modes: bool = False) -> SAMInterface:
  """Splits xi_t [interface_size(W, R, read_modes)] and applies oneplus, sigmoid, softmax."""
  W, R = word_size, read_heads
  sizes = _sizes(W, R, read_modes)
  if xi.shape != (sum(sizes),):
    raise ValueError(f"interface vector must have shape ({sum(sizes)},), got {xi.shape}")
  keys, strengths, vector, gamma, alpha, *modes = jnp.split(
      xi, [sum(sizes[:i]) for i in range(1, len(sizes))])
  return SAMInterface(
      read_keys=keys.reshape(R, W), read_strengths=access.oneplus(strengths),
      write_vector=vector, interpolation_gate=jax.nn.sigmoid(gamma[0]),
      write_gate=jax.nn.sigmoid(alpha[0]),
      read_modes=jax.nn.softmax(modes[0].reshape(R, 3), axis=-1) if read_modes else None)


def write_size(memory_size: int, sparse_k: int) -> int:
  """The slots an LRU write touches: the K previously read ones and the LRU slot."""
  return min(sparse_k + 1, memory_size)


def initial_access_state(memory_size: int, word_size: int, read_heads: int, sparse_k: int,
                         dtype="float32") -> SAMAccessState:
  """Empty memory: M, U, the weightings and r all zero."""
  N, W, R, K = memory_size, word_size, read_heads, sparse_k
  return SAMAccessState(memory=jnp.zeros((N, W), dtype), usage=jnp.zeros((N,), jnp.int32),
                        read_weights=sparse.empty((R,), K, dtype),
                        write_weights=sparse.empty((), write_size(N, K), dtype),
                        read_vectors=jnp.zeros((R, W), dtype))


def least_recently_used(usage_N: jax.Array) -> jax.Array:
  """I^U_t = argmax_i U_{t-1}[i], the slot accessed longest ago (ties: the lower slot)."""
  return jnp.argmax(usage_N).astype(jnp.int32)


def usage_update(usage_N: jax.Array, write_weights: sparse.SparseWeights,
                 read_weights: sparse.SparseWeights, threshold: float) -> jax.Array:
  """U_t[i] = 0 where w^w_t[i] + sum_h w^{r,h}_t[i] > delta, else U_{t-1}[i] + 1 -> [N]."""
  index = jnp.concatenate([write_weights.index, read_weights.index.reshape(-1)])
  value = jnp.concatenate([write_weights.value, read_weights.value.reshape(-1)])
  accessed = sparse.scatter_add(jnp.zeros(usage_N.shape, value.dtype), index, value) > threshold
  return jnp.where(accessed, 0, usage_N + 1).astype(usage_N.dtype)


def lru_write_weights(read_weights_prev: sparse.SparseWeights, lru: jax.Array,
                      interpolation_gate: jax.Array, write_gate: jax.Array,
                      size: int) -> sparse.SparseWeights:
  """w^w_t = alpha_t (gamma_t wbar^r_{t-1} + (1 - gamma_t) e_{I^U_t}) -> [size], with
  wbar^r_{t-1} the K largest entries of the heads' mean read weighting."""
  R, K = read_weights_prev.index.shape
  mean = sparse.compact(read_weights_prev.index.reshape(R * K),
                        read_weights_prev.value.reshape(R * K) / R, K)
  one_hot = sparse.SparseWeights(lru[None], jnp.ones((1,), mean.value.dtype))
  inner = sparse.combine([mean, one_hot], [interpolation_gate, 1 - interpolation_gate], size)
  return inner._replace(value=write_gate * inner.value)


def lru_write(memory_NxW: jax.Array, usage_N: jax.Array, read_weights_prev: sparse.SparseWeights,
              interface: SAMInterface) -> tuple[jax.Array, sparse.SparseWeights]:
  """(M_t, w^w_t): the LRU slot I^U_t erased, then w^w_t a_t^T added on w^w_t's rows."""
  N, K = memory_NxW.shape[0], read_weights_prev.index.shape[-1]
  lru = least_recently_used(usage_N)
  weights = lru_write_weights(read_weights_prev, lru, interface.interpolation_gate,
                              interface.write_gate, write_size(N, K))
  memory_NxW = memory_NxW.at[lru].set(0, mode="promise_in_bounds")
  return sparse.scatter_add(memory_NxW, weights.index,
                            weights.value[:, None] * interface.write_vector[None, :]), weights


def access_step(state: SAMAccessState, interface: SAMInterface, *, threshold: float,
                norm_eps: float) -> SAMAccessState:
  """One SAM step (the module docstring's order) -> the next SAMAccessState."""
  K = state.read_weights.index.shape[-1]
  memory, write_weights = lru_write(state.memory, state.usage, state.read_weights, interface)
  read_weights = sparse.content_weights(memory, interface.read_keys, interface.read_strengths,
                                        K, norm_eps=norm_eps)
  usage = usage_update(state.usage, write_weights, read_weights, threshold)
  return SAMAccessState(memory=memory, usage=usage, read_weights=read_weights,
                        write_weights=write_weights,
                        read_vectors=sparse.read_memory(memory, read_weights))


def make(config: SAMConfig) -> core.Model:
  """SAM of `config` as a `core.Model`: the DNC's controller (`controller.make`) around
  `access_step`; recur emits (h_t [L H], r_t [R W])."""
  N, W, R, K = config.memory_size, config.word_size, config.read_heads, config.sparse_k

  def initial_access():
    return initial_access_state(N, W, R, K, config.dtype)

  def step(state, xi):
    return access_step(state, parse_interface(xi, W, R), threshold=config.access_threshold,
                       norm_eps=config.norm_eps)

  return controller.make(config, interface_size(W, R), initial_access, step)
