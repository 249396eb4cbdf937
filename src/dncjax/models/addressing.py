"""The DNC's memory addressing: the equations of Graves et al. (Nature 538, 2016), Methods.

Pure functions for ONE example (batch with `jax.vmap`); one write head, R read heads,
memory M [N, W]. Symbols follow the paper:

  C(M, k, beta)[i] = softmax_i(beta * D(k, M[i]))          content weights (D cosine)
  psi_t  = prod_i (1 - f^i_t w^{r,i}_{t-1})                 retention            [N]
  u_t    = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) psi_t  usage                [N]
  a_t[phi_t[j]] = (1 - u_t[phi_t[j]]) prod_{i<j} u_t[phi_t[i]]
                                                            allocation (phi_t sorts u_t up)
  w^w_t  = g^w_t (g^a_t a_t + (1 - g^a_t) c^w_t)            write weights        [N]
  M_t    = M_{t-1} (E - w^w_t e_t^T) + w^w_t v_t^T          erase then add       [N, W]
  L_t[i, j] = (1 - w^w_t[i] - w^w_t[j]) L_{t-1}[i, j] + w^w_t[i] p_{t-1}[j],  L_t[i, i] = 0
  p_t    = (1 - sum_i w^w_t[i]) p_{t-1} + w^w_t            precedence           [N]
  f^i_t  = L_t w^{r,i}_{t-1},  b^i_t = L_t^T w^{r,i}_{t-1}  forward / backward   [R, N]
  w^{r,i}_t = pi^i_t[1] b^i_t + pi^i_t[2] c^{r,i}_t + pi^i_t[3] f^i_t
  r^i_t  = M_t^T w^{r,i}_t                                  read vectors         [R, W]

Not in the paper, optional in the DNC (Csordas & Schmidhuber, ICLR 2019): link
distribution sharpness, S(d, s)_i = (d_i + eps)^s / sum_j (d_j + eps)^s applied to f^i_t
and b^i_t with a per-head s >= 1 (`sharpen`), and key masking, a mask m in (0, 1)^W per
key that the cosine applies to both the key and the memory, D(k * m, M[i] * m).

Two numerical guards, both keyword arguments defaulting to 1e-6: `norm_eps` sits inside
the square roots of the norms of the cosine (finite values and gradients at a zero
memory row or key), and `usage_eps` clamps usage to eps + (1 - eps) u before allocation
(so no product of usages is exactly zero, as in deepmind/dnc).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dncjax.models import native
from dncjax.models.hparams import NORM_EPS, USAGE_EPS

SHARPEN_EPS = 1e-6
RANKS_MAX_N = 128  # allocation by ranks (N^2 compares) up to here, by a sort above


def cosine_similarity(memory_NxW: jax.Array, keys_HxW: jax.Array, *,
                      masks_HxW: jax.Array | None = None,
                      norm_eps: float = NORM_EPS) -> jax.Array:
  """D(k^h, M[i]) = k^h . M[i] / (sqrt(|k^h|^2 + eps) sqrt(|M[i]|^2 + eps)) -> [H, N].

  H is the number of keys (R read heads, or 1 for the write head). With `masks_HxW`
  (key masking) it is D(k^h * m^h, M[i] * m^h), each key's mask applied to both sides;
  computed with m^2 weighting the products, without a masked copy of M per key.
  """
  if masks_HxW is None:
    dot_HxN = keys_HxW @ memory_NxW.T
    memory_sq_HxN = jnp.sum(memory_NxW * memory_NxW, axis=-1)[None, :]
  else:
    mask_sq_HxW = masks_HxW * masks_HxW
    keys_HxW = keys_HxW * masks_HxW
    dot_HxN = (keys_HxW * masks_HxW) @ memory_NxW.T      # sum_k k m^2 M[i]
    memory_sq_HxN = mask_sq_HxW @ (memory_NxW * memory_NxW).T  # |M[i] * m^h|^2
  key_norm_H = jnp.sqrt(jnp.sum(keys_HxW * keys_HxW, axis=-1) + norm_eps)
  return dot_HxN / (key_norm_H[:, None] * jnp.sqrt(memory_sq_HxN + norm_eps))


def content_weights(memory_NxW: jax.Array, keys_HxW: jax.Array, strengths_H: jax.Array, *,
                    masks_HxW: jax.Array | None = None,
                    norm_eps: float = NORM_EPS) -> jax.Array:
  """C(M, k^h, beta^h) = softmax over the N slots of beta^h D(k^h, M) -> [H, N].

  `strengths_H` are already transformed (oneplus, so >= 1); `masks_HxW` as in
  `cosine_similarity`.
  """
  similarity_HxN = cosine_similarity(memory_NxW, keys_HxW, masks_HxW=masks_HxW,
                                     norm_eps=norm_eps)
  return jax.nn.softmax(strengths_H[:, None] * similarity_HxN, axis=-1)


def retention(free_gates_R: jax.Array, read_weights_prev_RxN: jax.Array) -> jax.Array:
  """The memory retention vector psi_t = prod_i (1 - f^i_t w^{r,i}_{t-1}) -> [N]."""
  return jnp.prod(1 - free_gates_R[:, None] * read_weights_prev_RxN, axis=0)


def usage_update(usage_N: jax.Array, write_weights_prev_N: jax.Array, free_gates_R: jax.Array,
                 read_weights_prev_RxN: jax.Array) -> jax.Array:
  """u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) psi_t, with the retention
  psi_t = prod_i (1 - f^i_t w^{r,i}_{t-1}) -> [N]."""
  written_N = usage_N + write_weights_prev_N - usage_N * write_weights_prev_N
  return written_N * retention(free_gates_R, read_weights_prev_RxN)


def allocation_weights(usage_N: jax.Array, *, usage_eps: float = USAGE_EPS,
                       by_ranks: bool | None = None) -> jax.Array:
  """a_t[phi_t[j]] = (1 - u_t[phi_t[j]]) prod_{i<j} u_t[phi_t[i]] -> [N], sums to <= 1.

  phi_t lists the slots by ascending usage (ties go to the lower index). Usage is first
  clamped to eps + (1 - eps) u. Two forms of the same weights, gradients to every u_t[i]
  (the order itself is piecewise constant):
    sorted    phi_t from a stable argsort, the exclusive cumulative product along it, the
              weights scattered back;
    by ranks  slot i comes before slot j when u_i < u_j (or u_i = u_j and i < j), and
              a_t[j] = (1 - u_t[j]) exp(sum_{i before j} log u_t[i]): N^2 compares, no
              sort, which XLA runs faster for small N.
  `by_ranks` None takes ranks for N <= RANKS_MAX_N.
  """
  usage_N = usage_eps + (1 - usage_eps) * usage_N
  if by_ranks is None:
    by_ranks = usage_N.shape[-1] <= RANKS_MAX_N
  if by_ranks:
    return (1 - usage_N) * jnp.exp(_log_product_before(usage_N))
  order_N = _argsort(usage_N)                               # phi_t
  sorted_usage_N = usage_N[order_N]
  # Exclusive cumulative product prod_{i<j}: jnp.cumprod is inclusive, so shift it.
  inclusive_N = jnp.cumprod(sorted_usage_N)
  exclusive_N = jnp.concatenate([jnp.ones_like(inclusive_N[:1]), inclusive_N[:-1]])
  sorted_allocation_N = (1 - sorted_usage_N) * exclusive_N
  return jnp.zeros_like(usage_N).at[order_N].set(sorted_allocation_N, unique_indices=True)


def _argsort(usage_N: jax.Array) -> jax.Array:
  """Stable ascending order of the usages: the CPU kernel's radix sort where the native
  kernels are used (`native.sort_usable`), else XLA's sort."""
  if native.sort_usable(usage_N.dtype):
    return native.argsort(usage_N)
  return jnp.argsort(usage_N, stable=True)


def _log_product_before(usage_N: jax.Array) -> jax.Array:
  """sum_{i before j} log u[i] for each slot j -> [N] (before: lower usage, then lower
  index). A usage of 0 (only when usage_eps rounds to 0 in the dtype) counts as the
  dtype's smallest normal number, so the sum stays finite and so do its gradients."""
  index_N = jnp.arange(usage_N.shape[-1])
  lower_NxN = usage_N[:, None] < usage_N[None, :]
  tie_NxN = (usage_N[:, None] == usage_N[None, :]) & (index_N[:, None] < index_N[None, :])
  log_N = jnp.log(jnp.maximum(usage_N, jnp.finfo(usage_N.dtype).tiny))
  return jnp.sum(jnp.where(lower_NxN | tie_NxN, log_N[:, None], 0), axis=0)


def write_weights(memory_prev_NxW: jax.Array, write_key_W: jax.Array, write_strength: jax.Array,
                  allocation_N: jax.Array, allocation_gate: jax.Array, write_gate: jax.Array, *,
                  write_mask_W: jax.Array | None = None,
                  norm_eps: float = NORM_EPS) -> jax.Array:
  """w^w_t = g^w_t (g^a_t a_t + (1 - g^a_t) c^w_t) -> [N], with the write content weights
  c^w_t = C(M_{t-1}, k^w_t, beta^w_t) on the memory BEFORE this step's write.

  write_strength, allocation_gate and write_gate are scalars (beta^w >= 1, gates in [0, 1]);
  `write_mask_W` masks the write key's look-up (key masking).
  """
  masks = None if write_mask_W is None else write_mask_W[None]
  content_N = content_weights(memory_prev_NxW, write_key_W[None],
                              jnp.reshape(write_strength, (1,)), masks_HxW=masks,
                              norm_eps=norm_eps)[0]
  return write_gate * (allocation_gate * allocation_N + (1 - allocation_gate) * content_N)


def write_memory(memory_NxW: jax.Array, write_weights_N: jax.Array, erase_W: jax.Array,
                 write_vector_W: jax.Array) -> jax.Array:
  """M_t = M_{t-1} (E - w^w_t e_t^T) + w^w_t v_t^T -> [N, W] (E the all-ones matrix)."""
  return (memory_NxW * (1 - jnp.outer(write_weights_N, erase_W))
          + jnp.outer(write_weights_N, write_vector_W))


def precedence_update(precedence_N: jax.Array, write_weights_N: jax.Array) -> jax.Array:
  """p_t = (1 - sum_i w^w_t[i]) p_{t-1} + w^w_t -> [N]."""
  return (1 - jnp.sum(write_weights_N)) * precedence_N + write_weights_N


def link_update(link_NxN: jax.Array, precedence_prev_N: jax.Array,
                write_weights_N: jax.Array) -> jax.Array:
  """L_t[i, j] = (1 - w^w_t[i] - w^w_t[j]) L_{t-1}[i, j] + w^w_t[i] p_{t-1}[j] -> [N, N],
  with a zero diagonal. Takes the PREVIOUS precedence p_{t-1} (update p after L)."""
  w_col, w_row = write_weights_N[:, None], write_weights_N[None, :]
  link_NxN = (1 - w_col - w_row) * link_NxN + w_col * precedence_prev_N[None, :]
  return link_NxN * (1 - jnp.eye(link_NxN.shape[0], dtype=link_NxN.dtype))


def directional_weights(link_NxN: jax.Array,
                        read_weights_prev_RxN: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(f_t, b_t), each [R, N]: forward f^i_t = L_t w^{r,i}_{t-1},
  backward b^i_t = L_t^T w^{r,i}_{t-1}."""
  # One einsum each, contracting L in place: `w @ L.T` would materialise (and, under
  # autodiff, store) a transposed copy of L per step, the costliest array at large N.
  forward_RxN = jnp.einsum("ij,rj->ri", link_NxN, read_weights_prev_RxN)
  backward_RxN = jnp.einsum("ij,ri->rj", link_NxN, read_weights_prev_RxN)
  return forward_RxN, backward_RxN


def sharpen(weights_RxN: jax.Array, sharpness_R: jax.Array, *,
            eps: float = SHARPEN_EPS) -> jax.Array:
  """S(d, s)_i = (d_i + eps)^s / sum_j (d_j + eps)^s for each row d and its s -> [R, N].

  Csordas & Schmidhuber's link distribution sharpness control, for the directional
  weights f_t, b_t (entries >= 0): s >= 1 concentrates a row on its largest entries,
  and every row sums to 1, so weight that leaked off a forward chain returns to it.
  Computed as softmax_i(s log(d_i + eps)), the same value without powers of small
  numbers; a row of zeros (no link yet) becomes uniform.
  """
  logs_RxN = jnp.log(jnp.maximum(weights_RxN, 0) + eps)  # max: float round-off below 0
  return jax.nn.softmax(sharpness_R[:, None] * logs_RxN, axis=-1)


def read_weights(content_RxN: jax.Array, forward_RxN: jax.Array, backward_RxN: jax.Array,
                 read_modes_Rx3: jax.Array) -> jax.Array:
  """w^{r,i}_t = pi^i_t[1] b^i_t + pi^i_t[2] c^{r,i}_t + pi^i_t[3] f^i_t -> [R, N].

  The modes pi^i_t are ordered (backward, content, forward), as in the paper.
  """
  return (read_modes_Rx3[:, 0:1] * backward_RxN + read_modes_Rx3[:, 1:2] * content_RxN
          + read_modes_Rx3[:, 2:3] * forward_RxN)


def read_memory(memory_NxW: jax.Array, read_weights_RxN: jax.Array) -> jax.Array:
  """r^i_t = M_t^T w^{r,i}_t -> [R, W]."""
  return read_weights_RxN @ memory_NxW
