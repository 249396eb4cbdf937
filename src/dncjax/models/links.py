"""The temporal link step with few passes over L: L_t, f_t and b_t from L_{t-1}, and a
hand-derived backward pass.

One step of the paper's temporal links (addressing.link_update, then
addressing.directional_weights), for ONE example:

  A[i, j]  = (1 - w[i] - w[j]) L[i, j] + w[i] p[j]         w = w^w_t, p = p_{t-1}, L = L_{t-1}
  L'[i, j] = A[i, j] for i != j, 0 on the diagonal         L' = L_t
  f[r, i]  = sum_j L'[i, j] v[r, j]                          v = w^r_{t-1}, f = f_t
  b[r, j]  = sum_i L'[i, j] v[r, i]                          b = b_t

L is the [N, N] array of the DNC; everything else is [N] or [R, N]. Written as above,
automatic differentiation reads and writes [N, N] arrays some forty times per step
(products, their transposes, the mask, the recomputed L'). Here f and b come from L
itself, expanding A:

  f[r, i] = (1 - w[i]) (L v_r)[i] - (L (w v_r))[i] + w[i] (p . v_r) - A[i, i] v[r, i]

(b likewise with L^T), so the forward pass reads L twice (two matrix products with 2R
columns each) besides computing L'. The backward pass, given the cotangents gL' of L',
gf of f and gb of b:

  H[i, j]  = (gL'[i, j] + sum_r gf[r, i] v[r, j] + sum_r v[r, i] gb[r, j])  for i != j, else 0
  gL[i, j] = (1 - w[i] - w[j]) H[i, j]
  gw[k]    = sum_j H[k, j] (p[j] - L[k, j]) - sum_i H[i, k] L[i, k]
  gp[j]    = sum_i H[i, j] w[i]
  gv[r]    = gf[r] L' + gb[r] L'^T,  expanded in L as f and b are

It saves only (L, w, p, v): nothing [N, N] besides the L_{t-1} that the scan keeps as
its carry anyway, and no L' is recomputed. `tests/models/test_links.py` checks values and
gradients against addressing.link_update and addressing.directional_weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dncjax.models import hooks, native


def _diag_a(L_NxN, w_N, p_N):
  """A[i, i] = (1 - 2 w[i]) L[i, i] + w[i] p[i]: what the expansions must take back."""
  return (1 - 2 * w_N) * jnp.diagonal(L_NxN) + w_N * p_N


def _directional(L_NxN, w_N, p_N, v_RxN, a_diag_N):
  """(f, b) of L' = the masked A, computed from L (see the module doc)."""
  R = v_RxN.shape[0]
  stacked_2RxN = jnp.concatenate([v_RxN, w_N * v_RxN])
  rows_2RxN = jnp.einsum("ij,rj->ri", L_NxN, stacked_2RxN)  # L v_r and L (w v_r)
  cols_2RxN = jnp.einsum("ij,ri->rj", L_NxN, stacked_2RxN)  # L^T v_r and L^T (w v_r)
  pv_R1, wv_R1 = v_RxN @ p_N[:, None], v_RxN @ w_N[:, None]
  forward = ((1 - w_N) * rows_2RxN[:R] - rows_2RxN[R:] + w_N * pv_R1 - a_diag_N * v_RxN)
  backward = ((1 - w_N) * cols_2RxN[:R] - cols_2RxN[R:] + p_N * wv_R1 - a_diag_N * v_RxN)
  return forward, backward


def _new_link(L_NxN, w_N, p_N):
  """L' = the masked A."""
  N = L_NxN.shape[0]
  A = (1 - w_N[:, None] - w_N[None, :]) * L_NxN + w_N[:, None] * p_N[None, :]
  return jnp.where(jnp.eye(N, dtype=bool), jnp.zeros((), L_NxN.dtype), A)


HOOK = "link step"  # `hooks.override(HOOK, step)`: history.py's link step


def link_step(L_NxN: jax.Array, w_N: jax.Array, p_N: jax.Array,
              v_RxN: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(L_t [N, N], f_t [R, N], b_t [R, N]) from L_{t-1}, w^w_t, p_{t-1} and w^r_{t-1}:
  addressing.link_update then addressing.directional_weights. On the CPU the native
  kernel (`native.link_step`, one pass over L each way), elsewhere `xla_link_step`;
  chosen at trace time (`native.usable`, $DNCJAX_LINK_KERNEL); inside
  `hooks.override(HOOK, step)`, that step."""
  if (step := hooks.current(HOOK)) is not None:
    return step(L_NxN, w_N, p_N, v_RxN)
  if native.usable(L_NxN.dtype, L_NxN.shape[-1]):
    return native.link_step(L_NxN, w_N, p_N, v_RxN)
  return xla_link_step(L_NxN, w_N, p_N, v_RxN)


@jax.custom_vjp
def xla_link_step(L_NxN: jax.Array, w_N: jax.Array, p_N: jax.Array,
                  v_RxN: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """link_step as XLA operations, in fewer passes over L than automatic differentiation
  of the paper's equations (the module doc)."""
  forward, backward = _directional(L_NxN, w_N, p_N, v_RxN, _diag_a(L_NxN, w_N, p_N))
  return _new_link(L_NxN, w_N, p_N), forward, backward


def _link_step_fwd(L_NxN, w_N, p_N, v_RxN):
  return xla_link_step(L_NxN, w_N, p_N, v_RxN), (L_NxN, w_N, p_N, v_RxN)


def _link_step_bwd(residuals, cotangents):
  L_NxN, w_N, p_N, v_RxN = residuals
  gL_new, gf_RxN, gb_RxN = cotangents
  N = L_NxN.shape[0]
  # H: the cotangent of A (masked), the rank-2R terms as one [N, 2R] x [2R, N] product.
  rank_NxN = jnp.einsum("ri,rj->ij", jnp.concatenate([gf_RxN, v_RxN]),
                        jnp.concatenate([v_RxN, gb_RxN]))
  H = jnp.where(jnp.eye(N, dtype=bool), jnp.zeros((), L_NxN.dtype), gL_new + rank_NxN)
  gL = (1 - w_N[:, None] - w_N[None, :]) * H
  HL = H * L_NxN
  gw = H @ p_N - jnp.sum(HL, axis=1) - jnp.sum(HL, axis=0)
  gp = w_N @ H
  # gv[r] = gf[r] L' + gb[r] L'^T: the directional products of L' again, with the
  # cotangents in place of v and the roles of rows and columns swapped.
  a_diag = _diag_a(L_NxN, w_N, p_N)
  R = v_RxN.shape[0]
  from_f = jnp.einsum("ij,ri->rj", L_NxN, jnp.concatenate([gf_RxN * (1 - w_N), gf_RxN]))
  from_b = jnp.einsum("ij,rj->ri", L_NxN, jnp.concatenate([gb_RxN, gb_RxN * w_N]))
  gv = (from_f[:R] - w_N * from_f[R:] + p_N * (gf_RxN @ w_N)[:, None] - a_diag * gf_RxN
        + (1 - w_N) * from_b[:R] - from_b[R:] + w_N * (gb_RxN @ p_N)[:, None]
        - a_diag * gb_RxN)
  return gL, gw, gp, gv


xla_link_step.defvjp(_link_step_fwd, _link_step_bwd)
