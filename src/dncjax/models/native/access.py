"""The DNC's memory access around the temporal link step as CPU kernels (`access_kernel.cc`,
maths per lane in `access_lanes.h`): the write (usage u_t, allocation a_t, write weights
w^w_t, erase and add) and the read (read content weights, read weights w^r_t, read vectors
r_t), each one call forward and one backward for the whole batch, each taking the raw
interface vector xi_t and applying `access.parse_interface`'s transforms to its part.

`write` and `read` have the values and gradients of `addressing`'s functions (the same
equations in another order of summation: equal to float rounding, tested in
tests/models/test_native_access.py); any leading batch axes become the kernels' lanes.
`access.access_step` uses them where the link kernel is used (`native.usable`: the
same choice, $DNCJAX_LINK_KERNEL, and N), unless key masking or de-allocation is on
(those stay XLA's) or the DNC's `access_kernels` is off.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from dncjax.models import native


def _attributes(norm_eps: float, usage_eps: float | None = None) -> dict:
  attributes = {"norm_eps": np.float64(norm_eps)}
  if usage_eps is not None:
    attributes["usage_eps"] = np.float64(usage_eps)
  return attributes


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _write(norm_eps, usage_eps, memory, usage, write_prev, read_prev, xi):
  inputs = (memory, usage, write_prev, read_prev, xi)
  return tuple(native._call("write forward", (usage, usage, memory), *inputs,
                            **_attributes(norm_eps, usage_eps)))


def _write_forward(norm_eps, usage_eps, *inputs):
  return _write(norm_eps, usage_eps, *inputs), inputs


def _write_backward(norm_eps, usage_eps, inputs, cotangents):
  return tuple(native._call("write backward", inputs, *inputs, *cotangents,
                            **_attributes(norm_eps, usage_eps)))


_write.defvjp(_write_forward, _write_backward)


def write(memory_NxW: jax.Array, usage_N: jax.Array, write_prev_N: jax.Array,
          read_prev_RxN: jax.Array, xi_X: jax.Array, *, norm_eps: float,
          usage_eps: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(u_t, w^w_t, M_t) from M_{t-1}, u_{t-1}, w^w_{t-1}, w^r_{t-1} and the raw interface
  vector xi_t [X] (its write part transformed as `access.parse_interface` does): as
  `addressing.usage_update`, `allocation_weights`, `write_weights` and `write_memory`."""
  return _write(norm_eps, usage_eps, memory_NxW, usage_N, write_prev_N, read_prev_RxN, xi_X)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _read(norm_eps, memory, forward, backward, xi):
  vectors = jax.ShapeDtypeStruct(forward.shape[:-1] + memory.shape[-1:], memory.dtype)
  return tuple(native._call("read forward", (forward, vectors), memory, forward, backward, xi,
                            **_attributes(norm_eps)))


def _read_forward(norm_eps, *inputs):
  return _read(norm_eps, *inputs), inputs


def _read_backward(norm_eps, inputs, cotangents):
  return tuple(native._call("read backward", inputs, *inputs, *cotangents,
                            **_attributes(norm_eps)))


_read.defvjp(_read_forward, _read_backward)


def read(memory_NxW: jax.Array, forward_RxN: jax.Array, backward_RxN: jax.Array,
         xi_X: jax.Array, *, norm_eps: float) -> tuple[jax.Array, jax.Array]:
  """(w^r_t, r_t) from M_t, f_t, b_t and the raw interface vector xi_t [X] (its read keys,
  strengths and modes transformed as `access.parse_interface` does): as
  `addressing.content_weights`, `read_weights` and `read_memory`."""
  return _read(norm_eps, memory_NxW, forward_RxN, backward_RxN, xi_X)
