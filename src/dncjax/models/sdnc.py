"""The sparse DNC, SDNC (Rae et al., "Scaling Memory-Augmented Neural Networks with Sparse
Reads and Writes", NIPS 2016): the DNC's controller (`controller.py`) and access, one write
head and R read heads with forward/backward temporal links, every weighting kept to K of
the N slots of M [N, W] (`sparse.py`), and no [N, N] array.

The temporal link matrix L_t is held twice, as fixed-shape [N, K] index/value arrays:
`link` keeps the K largest entries of each row of L_t (for b_t) and `link_t` those of each
row of L_t^T, i.e. each column of L_t (for f_t). Each is updated by the DNC's rule on its
own entries (`sparse.link_update`), so below K = N the two are truncated separately and
need not be exact transposes. The precedence p_t keeps K entries.

allocation='lru' (the paper's SDNC): SAM's write (`sam.py`), with interface
R W + R + W + 2 + 3 R (SAM's and the read modes pi_t [R, 3]):

  w^w_t = alpha_t (gamma_t wbar^r_{t-1} + (1 - gamma_t) e_{I^U_t})
  M_t   = M_{t-1} with the LRU row I^U_t erased, + w^w_t a_t^T
  U_t   = steps since each slot's last access (w^w_t + sum_h w^{r,h}_t > delta)

allocation='dnc': the DNC's interface (`access.parse_interface`) and write, K-sparse:

  u_t   = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) psi_t          dense [N], O(R N)
  a_t   = the DNC's allocation (a sort of u_t, O(N log N)), kept to its K largest
  w^w_t = g^w_t top_K(g^a_t a_t + (1 - g^a_t) C_K(M_{t-1}, k^w_t, beta^w_t))
  M_t   = M_{t-1} (E - w^w_t e_t^T) + w^w_t v_t^T on the K rows written

Then, in both, the DNC's order: L_t (with p_{t-1}), p_t = top_K((1 - sum w^w_t) p_{t-1} +
w^w_t), f^i_t = top_K(L_t w^{r,i}_{t-1}), b^i_t = top_K(L_t^T w^{r,i}_{t-1}), the content
weights C_K on the written M_t, w^{r,i}_t = top_K(pi^i[1] b^i_t + pi^i[2] c^{r,i}_t +
pi^i[3] f^i_t) and r^i_t, a gather of K rows. At sparse_k = memory_size with
allocation='dnc' every top_K keeps everything and the step equals the dense DNC's with the
same params (`dnc.py` with its defaults).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dncjax.models import (access, addressing, controller, core, history, sam, sparse,
                           sparse_history)
from dncjax.models.hparams import SDNCConfig


class SDNCAccessState(NamedTuple):
  """The SDNC's memory and what the next step needs (one example)."""
  memory: jax.Array                      # M_t    [N, W]
  usage: jax.Array                       # [N]: U_t int32 ('lru') or u_t ('dnc')
  link: sparse.SparseWeights             # rows of L_t    [N, K]
  link_t: sparse.SparseWeights           # rows of L_t^T  [N, K]
  precedence: sparse.SparseWeights       # p_t    [K]
  read_weights: sparse.SparseWeights     # w^r_t  [R, K]
  write_weights: sparse.SparseWeights    # w^w_t  [K] ('dnc') or [min(K + 1, N)] ('lru')
  read_vectors: jax.Array                # r_t    [R, W]


def interface_size(word_size: int, read_heads: int, allocation: str = "lru") -> int:
  """Length of xi_t: SAM's with read modes ('lru') or the DNC's ('dnc')."""
  if allocation == "dnc":
    return access.interface_size(word_size, read_heads)
  return sam.interface_size(word_size, read_heads, read_modes=True)


def initial_access_state(memory_size: int, word_size: int, read_heads: int, sparse_k: int,
                         allocation: str = "lru", dtype="float32") -> SDNCAccessState:
  """Empty memory: M, the usage, links, precedence, weightings and r all zero."""
  N, W, R, K = memory_size, word_size, read_heads, sparse_k
  lru = allocation == "lru"
  return SDNCAccessState(
      memory=jnp.zeros((N, W), dtype),
      usage=jnp.zeros((N,), jnp.int32 if lru else dtype),
      link=sparse.empty((N,), K, dtype), link_t=sparse.empty((N,), K, dtype),
      precedence=sparse.empty((), K, dtype), read_weights=sparse.empty((R,), K, dtype),
      write_weights=sparse.empty((), sam.write_size(N, K) if lru else K, dtype),
      read_vectors=jnp.zeros((R, W), dtype))


def dnc_write(state: SDNCAccessState, interface: access.Interface, *, norm_eps: float,
              usage_eps: float) -> tuple[jax.Array, jax.Array, sparse.SparseWeights]:
  """(M_t, u_t, w^w_t) by the DNC's usage, allocation and content write, K-sparse."""
  N, K = state.memory.shape[0], state.read_weights.index.shape[-1]
  usage = addressing.usage_update(state.usage, sparse.to_dense(state.write_weights, N),
                                  interface.free_gates, sparse.to_dense(state.read_weights, N))
  # The sorted form: by ranks would build [N, N] compares, which a sparse model never does.
  allocation_N = addressing.allocation_weights(usage, usage_eps=usage_eps, by_ranks=False)
  top, index = jax.lax.top_k(allocation_N, K)
  content = sparse.content_weights(state.memory, interface.write_key[None],
                                   jnp.reshape(interface.write_strength, (1,)), K,
                                   norm_eps=norm_eps)
  allocation = sparse.SparseWeights(index.astype(jnp.int32), top)
  inner = sparse.combine([allocation, jax.tree.map(lambda a: a[0], content)],
                         [interface.allocation_gate, 1 - interface.allocation_gate], K)
  weights = inner._replace(value=interface.write_gate * inner.value)
  memory = sparse.write_memory(state.memory, weights, interface.erase, interface.write_vector)
  return memory, usage, weights


def link_and_read(state: SDNCAccessState, memory: jax.Array, write_weights: sparse.SparseWeights,
                  interface, *, norm_eps: float) -> SDNCAccessState:
  """The links, precedence, reads and read vectors after the write (M_t, w^w_t) -> the
  next state (its usage still u_{t-1}'s or U_{t-1}'s)."""
  K = state.read_weights.index.shape[-1]
  link, link_t, forward, backward = sparse.link_step(
      state.link, state.link_t, write_weights, state.precedence, state.read_weights)
  precedence = sparse.precedence_update(state.precedence, write_weights)
  content = sparse.content_weights(memory, interface.read_keys, interface.read_strengths, K,
                                   norm_eps=norm_eps)
  read_weights = sparse.read_weights(content, forward, backward, interface.read_modes)
  return SDNCAccessState(memory=memory, usage=state.usage, link=link, link_t=link_t,
                         precedence=precedence, read_weights=read_weights,
                         write_weights=write_weights,
                         read_vectors=sparse.read_memory(memory, read_weights))


def access_step(state: SDNCAccessState, interface, *, allocation: str = "lru",
                threshold: float = 0.005, norm_eps: float = addressing.NORM_EPS,
                usage_eps: float = addressing.USAGE_EPS) -> SDNCAccessState:
  """One SDNC step (the module docstring's order) -> the next SDNCAccessState; `interface`
  a `sam.SAMInterface` with read modes ('lru') or an `access.Interface` ('dnc')."""
  if allocation == "dnc":
    memory, usage, write_weights = dnc_write(state, interface, norm_eps=norm_eps,
                                             usage_eps=usage_eps)
    return link_and_read(state._replace(usage=usage), memory, write_weights, interface,
                         norm_eps=norm_eps)
  memory, write_weights = sam.lru_write(state.memory, state.usage, state.read_weights, interface)
  after = link_and_read(state, memory, write_weights, interface, norm_eps=norm_eps)
  return after._replace(usage=sam.usage_update(state.usage, write_weights, after.read_weights,
                                               threshold))


def make(config: SDNCConfig) -> core.Model:
  """The SDNC of `config` as a `core.Model`: the DNC's controller (`controller.make`)
  around `access_step`; recur emits (h_t [L H], r_t [R W])."""
  N, W, R, K = config.memory_size, config.word_size, config.read_heads, config.sparse_k
  mode = config.allocation

  def initial_access():
    return initial_access_state(N, W, R, K, mode, config.dtype)

  def parse(xi):
    if mode == "dnc":
      return access.parse_interface(xi, W, R)
    return sam.parse_interface(xi, W, R, read_modes=True)

  def step(state, xi):
    return access_step(state, parse(xi), allocation=mode, threshold=config.access_threshold,
                       norm_eps=config.norm_eps, usage_eps=config.usage_eps)

  model = controller.make(config, interface_size(W, R, mode), initial_access, step)
  if not config.link_history or config.remat:
    return model
  return model._replace(scan=lambda fn, params, state, xs: history.batch_scan(
      fn, _LINKS, params, state, xs))


def _get_links(state):
  return (state.access.link, state.access.link_t)


def _put_links(state, pair):
  return state._replace(access=state.access._replace(link=pair[0], link_t=pair[1]))


_LINKS = sparse_history.links(_get_links, _put_links)
