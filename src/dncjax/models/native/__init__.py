"""The temporal link step as a CPU kernel: one pass over the [N, N] link matrix forward and
one backward (`link_kernel.cc`), called through XLA's FFI, also on a history of link
matrices (`history_start`, `history_step`, `history_backward`: `history.py`); the DNC's
write and read around it (`access_kernel.cc`, wrapped by `native.access`); the sparse
links' decay (`sparse_link_kernel.cc`, `sparse_decay`: one pass over the [N, K] entries each
way); and the allocation's stable argsort (`sort_kernel.cc`, `argsort`: a radix sort).

`link_step(L, w, p, v)` has the values and gradients of `links.xla_link_step` (the same
equations, summed in another order: equal to float rounding, tested); any leading batch
axes (vmap over examples, population members) become the kernel's lanes. The library is
compiled with the machine's C++ compiler the first time a process needs it and kept in the
user cache (`build.py`).

Which implementation `links.link_step` uses is chosen when a function is traced:
DNCJAX_LINK_KERNEL=auto (the default: this kernel for float32/float64 on the CPU backend
from N = AUTO_MIN_SIZE on, XLA's otherwise or where it cannot be built, saying why once),
`native` (this kernel; an error where it cannot be), `xla` (never this kernel).
`select(kind)` sets it in a process. The same choice governs `argsort` (`sort_usable`:
the kernel wherever the link kernel would be used for a large N) and the write and read
kernels of `native.access` (wherever the link kernel is used).
"""

from __future__ import annotations

import ctypes
import sys

import jax
import jax.numpy as jnp
import numpy as np

from dncjax import checks
from dncjax.models.native import build

VARIABLE = checks.LINK_KERNEL_VARIABLE
AUTO_MIN_SIZE = 16  # `auto` leaves smaller link matrices to XLA (as fast there, no FFI calls)
KINDS = checks.LINK_KERNELS
_TARGETS = {"forward": "DncjaxLinkForward", "backward": "DncjaxLinkBackward",
            "history start": "DncjaxLinkHistoryStart",
            "history forward": "DncjaxLinkHistoryForward",
            "history backward": "DncjaxLinkHistoryBackward",
            "argsort": "DncjaxArgsort",
            "content top k": "DncjaxContentTopK",
            "sparse forward": "DncjaxSparseDecayForward",
            "sparse backward": "DncjaxSparseDecayBackward",
            "sparse journal start": "DncjaxSparseJournalStart",
            "sparse journal forward": "DncjaxSparseJournalForward",
            "sparse journal set": "DncjaxSparseJournalSet",
            "sparse journal backward": "DncjaxSparseJournalBackward",
            "write forward": "DncjaxAccessWriteForward",
            "write backward": "DncjaxAccessWriteBackward",
            "read forward": "DncjaxAccessReadForward",
            "read backward": "DncjaxAccessReadBackward"}
_DTYPES = {jnp.dtype(jnp.float32): "F32", jnp.dtype(jnp.float64): "F64"}
_state: dict = {"kind": None, "loaded": None, "error": None, "warned": False}


def select(kind: str | None) -> None:
  """Which link step later traces use: 'auto', 'native' or 'xla' (None: $DNCJAX_LINK_KERNEL)."""
  if kind is not None:
    checks.check_choice("link kernel", kind, KINDS)
  _state["kind"] = kind


def kind() -> str:
  """The selected kind: select()'s, else $DNCJAX_LINK_KERNEL's, else 'auto'."""
  return _state["kind"] or checks.link_kernel()


def load() -> None:
  """Builds (if needed) and loads the library and registers its targets with XLA, once;
  raises build.BuildError where that fails."""
  if _state["loaded"]:
    return
  if _state["error"] is not None:
    raise _state["error"]
  try:
    library = ctypes.cdll.LoadLibrary(str(build.library()))
    handlers = {base + suffix: getattr(library, base + suffix)
                for base in _TARGETS.values() for suffix in _DTYPES.values()}
  except (build.BuildError, OSError, AttributeError) as e:
    _state["error"] = e if isinstance(e, build.BuildError) else build.BuildError(str(e))
    raise _state["error"] from e
  for name, handler in handlers.items():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(handler), platform="cpu")
  _state["loaded"] = library


def usable(dtype, memory_size: int) -> bool:
  """Whether a trace now uses the kernel for a link matrix of `dtype` and N =
  `memory_size` (see the module doc)."""
  chosen = kind()
  if chosen == "xla":
    return False
  if chosen == "native":
    load()
    return True
  if (jax.default_backend() != "cpu" or jnp.dtype(dtype) not in _DTYPES
      or memory_size < AUTO_MIN_SIZE):
    return False
  try:
    load()
  except build.BuildError as e:
    if not _state["warned"]:
      _state["warned"] = True
      print(f"dncjax: the native link kernel is not used ({e}); XLA's link step instead "
            f"({VARIABLE}=xla hides this)", file=sys.stderr)
    return False
  return True


def sort_usable(dtype) -> bool:
  """Whether a trace now uses `argsort`'s kernel for keys of `dtype`: where the link
  kernel would be used for a large N (the same choice, $DNCJAX_LINK_KERNEL)."""
  return usable(dtype, AUTO_MIN_SIZE)


def argsort(keys_N: jax.Array) -> jax.Array:
  """The stable ascending order of keys [..., N] along the last axis, int32, as
  `jnp.argsort(keys, stable=True)` (`sort_kernel.cc`: a radix sort; -0.0 before +0.0).
  An order has no gradient: the keys enter as constants."""
  keys_N = jax.lax.stop_gradient(keys_N)
  return _call("argsort", (jax.ShapeDtypeStruct(keys_N.shape, jnp.int32),), keys_N)[0]


def _call(direction: str, outputs, *args, aliases=None, **attributes):
  """The kernel of `direction` for the dtype of args[0], with results shaped as `outputs`
  (and the kernel's attributes, if any)."""
  load()
  name = _TARGETS[direction] + _DTYPES[jnp.dtype(args[0].dtype)]
  shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in outputs]
  return jax.ffi.ffi_call(name, shapes, vmap_method="broadcast_all",
                          input_output_aliases=aliases)(*args, **attributes)


def content_top_k(memory_NxW: jax.Array, keys_HxW: jax.Array, strengths_H: jax.Array, k: int,
                  norm_eps: float) -> jax.Array:
  """The K slots [..., H, K] (int32) of the largest beta^h D(k^h, M[i]) per key, largest
  first, ties to the lower slot: `jax.lax.top_k` of `addressing.cosine_similarity` times
  the strengths, in one pass over M (`content_kernel.cc`; equal up to float rounding of
  the scores). No gradient: the inputs enter as constants."""
  memory_NxW, keys_HxW, strengths_H = jax.lax.stop_gradient((memory_NxW, keys_HxW,
                                                             strengths_H))
  shape = jax.ShapeDtypeStruct(keys_HxW.shape[:-1] + (k,), jnp.int32)
  return _call("content top k", (shape,), memory_NxW, keys_HxW, strengths_H,
               eps=np.float64(norm_eps))[0]


@jax.custom_vjp
def link_step(L_NxN: jax.Array, w_N: jax.Array, p_N: jax.Array,
              v_RxN: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(L_t, f_t, b_t) from L_{t-1}, w^w_t, p_{t-1} and w^r_{t-1}, as links.xla_link_step."""
  return tuple(_call("forward", (L_NxN, v_RxN, v_RxN), L_NxN, w_N, p_N, v_RxN,
                     aliases={0: 0}))


def _forward(L_NxN, w_N, p_N, v_RxN):
  return link_step(L_NxN, w_N, p_N, v_RxN), (L_NxN, w_N, p_N, v_RxN)


def _backward(residuals, cotangents):
  # (L, w, p, v) and the cotangents (gL', gf, gb) in; (gL, gw, gp, gv) out, gL over gL'.
  return tuple(_call("backward", residuals, *residuals, *cotangents, aliases={4: 0}))


link_step.defvjp(_forward, _backward)


def history_start(L_NxN: jax.Array, slots: int) -> jax.Array:
  """A history H [..., slots, N, N] of link matrices whose slot 0 is L_NxN [..., N, N];
  the kernel writes nothing else (each later slot is written by `history_step` before it
  is read)."""
  shape = L_NxN.shape[:-2] + (slots,) + L_NxN.shape[-2:]
  return _call("history start", (jax.ShapeDtypeStruct(shape, L_NxN.dtype),), L_NxN)[0]


def history_step(H_SxNxN: jax.Array, t: jax.Array, w_N: jax.Array, p_N: jax.Array,
                 v_RxN: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(H with slot t + 1 = L_t, f_t, b_t) from slot t = L_{t-1} and w^w_t, p_{t-1}, w^r_{t-1}:
  link_step's forward pass on a history of link matrices, in place (H's buffer is the
  result's). Not differentiable itself: `history.py` differentiates the unroll."""
  t = jnp.broadcast_to(jnp.asarray(t, jnp.int32), w_N.shape[:-1])  # one per lane
  return tuple(_call("history forward", (H_SxNxN, v_RxN, v_RxN), H_SxNxN, t, w_N, p_N,
                     v_RxN, aliases={0: 0}))


def history_backward(H_SxNxN: jax.Array, t: jax.Array, w_N, p_N, v_RxN, gL_NxN, gf_RxN,
                     gb_RxN) -> tuple[jax.Array, ...]:
  """link_step's backward pass with L = slot t of H: (gL, gw, gp, gv) from the cotangents
  (gL', gf, gb), gL written over gL'."""
  t = jnp.broadcast_to(jnp.asarray(t, jnp.int32), w_N.shape[:-1])
  return tuple(_call("history backward", (gL_NxN, w_N, p_N, v_RxN), H_SxNxN, t, w_N, p_N,
                     v_RxN, gL_NxN, gf_RxN, gb_RxN, aliases={5: 0}))


@jax.custom_vjp
def sparse_decay(value_NxK: jax.Array, index_NxK: jax.Array, written_index: jax.Array,
                 written_value: jax.Array) -> jax.Array:
  """(1 - w[i] - w[index[i, k]]) value[i, k] with w = w^w_t given by its slots and values,
  as `sparse`'s XLA form (`sparse_link_kernel.cc`)."""
  return _call("sparse forward", (value_NxK,), value_NxK, index_NxK, written_index,
               written_value)[0]


def _sparse_forward(value_NxK, index_NxK, written_index, written_value):
  residuals = (value_NxK, index_NxK, written_index, written_value)
  return sparse_decay(*residuals), residuals


def _sparse_backward(residuals, cotangent_NxK):
  value_NxK, index_NxK, written_index, written_value = residuals
  g_value, g_written = _call("sparse backward", (value_NxK, written_value), *residuals,
                             cotangent_NxK)
  no_cotangent = lambda x: np.zeros(x.shape, jax.dtypes.float0)
  return g_value, no_cotangent(index_NxK), no_cotangent(written_index), g_written


sparse_decay.defvjp(_sparse_forward, _sparse_backward)


def sparse_journal_start(V_NxK: jax.Array, V_t_NxK: jax.Array, steps: int):
  """(V [..., 2, N, K], jidx, jval [..., steps 2 N K], offsets [..., steps + 1]): the sparse
  links' values (the rows of L and of L^T) stacked, and an empty journal for `steps` steps
  (`sparse_journal_kernel.cc`; the kernel writes only offsets[0])."""
  lead, (n, k) = V_NxK.shape[:-2], V_NxK.shape[-2:]
  shapes = ((*lead, 2, n, k), V_NxK.dtype), ((*lead, steps * 2 * n * k), jnp.int32), (
      (*lead, steps * 2 * n * k), V_NxK.dtype), ((*lead, steps + 1), jnp.int32)
  return tuple(_call("sparse journal start", [jax.ShapeDtypeStruct(*a) for a in shapes],
                     V_NxK, V_t_NxK))


def _lane_steps(t, like):
  return jnp.broadcast_to(jnp.asarray(t, jnp.int32), like.shape[:-1])  # one per lane


def sparse_journal_forward(V, J, journal, t, written_index, written_value, rows0, rows1):
  """(V, journal, V0, J0, V1, J1): step t's decay of both directions by w^w_t, in place,
  the entries it changes journalled (journal = (jidx, jval, offsets)), and the decayed rows
  `rows0` [K0] of direction 0 and `rows1` [K1] of direction 1 (values and slots [K0, K];
  [K1, K]). Not differentiable itself (`sparse_history.py`)."""
  k = V.shape[-1]
  rows = lambda r: (jax.ShapeDtypeStruct(r.shape + (k,), V.dtype),
                    jax.ShapeDtypeStruct(r.shape + (k,), jnp.int32))
  V, *out = _call("sparse journal forward", (V, *journal, *rows(rows0), *rows(rows1)), V, J,
                  *journal, _lane_steps(t, written_index), written_index, written_value,
                  rows0, rows1, aliases={0: 0, 2: 1, 3: 2, 4: 3})
  return (V, tuple(out[:3]), *out[3:])


def sparse_journal_set(V, J, rows0, rows1, V0, J0, V1, J1, reads):
  """(V, J, RV0, RJ0, RV1, RJ1): rows0, rows1 of V and J set to (V0, J0) and (V1, J1) in
  place, then the rows `reads` [..., C] of each direction (values and slots [..., C, K])."""
  shape = reads.shape + (V.shape[-1],)
  gathered = (jax.ShapeDtypeStruct(shape, V.dtype), jax.ShapeDtypeStruct(shape, jnp.int32))
  return tuple(_call("sparse journal set", (V, J, *gathered, *gathered), V, J, rows0, rows1,
                     V0, J0, V1, J1, reads,
                     aliases={0: 0, 1: 1}))


def sparse_journal_backward(V, J, journal, t, written_index, written_value, G, rows0, rows1,
                            D0, D1, J0, J1, reads, gR0, gR1, gM0, gM1):
  """(G, gu, V, J), in place: from V_{t+1}, J_{t+1} and the cotangent G [..., 2, N, K] of
  V_{t+1}, G completed (gR0, gR1 [..., C, K] added at the rows `reads`, then gM0, gM1
  written over rows0, rows1), the rows put back to their decayed values D0, D1 and slots
  J0, J1, then step t's journal undone in V with G scaled by the decay and gu [Kw] (both
  directions) from it: V_t, J_t and the cotangent of V_t."""
  return tuple(_call("sparse journal backward", (G, written_value, V, J), V, J, *journal,
                     _lane_steps(t, written_index), written_index, written_value, G, rows0,
                     rows1, D0, D1, J0, J1, reads, gR0, gR1, gM0, gM1,
                     aliases={8: 0, 0: 2, 1: 3}))
