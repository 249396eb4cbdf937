"""The DNC's carries over time as the arrays a memory plot draws (as
notebooks/dnc_memory.ipynb does, after the Nature paper's Fig. 1).

`memory_arrays(config, params, carries)` takes `DNCState`s stacked over time, leaves
[..., T, ...] (e.g. `linen.carries` gives [B, T, ...]), and returns per step:

  write_weights    w^w_t           [..., T, N]
  read_weights     w^r_t           [..., T, R, N]
  usage            u_t             [..., T, N]
  memory           M_t             [..., T, N, W]
  link             L_t             [..., T, N, N]   (the notebook draws the last step)
  read_modes       pi_t            [..., T, R, 3]   (backward, content, forward)
  write_gate       g^w_t           [..., T]
  allocation_gate  g^a_t           [..., T]
  free_gates       f_t             [..., T, R]

The gates and read modes are not in the state: they come from the interface vector
xi_t = W_hi h_t + b_i of the controller output h_t the state keeps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dncjax.models import access, hparams


def memory_arrays(config, params: dict, carries) -> dict[str, jax.Array]:
  """The arrays above from `carries` (a `dnc.DNCState`, leaves [..., T, ...]) and the
  core's flat `params` (for W_hi, b_i); ValueError for a config that is not the DNC's."""
  if not isinstance(config, hparams.DNCConfig):
    raise ValueError(f"memory_arrays draws the DNC's memory (a DNCConfig), got "
                     f"{type(config).__name__}")
  state = carries.access
  h_LH = jnp.concatenate([layer.h for layer in carries.controller], axis=-1)  # h_t [..., L H]
  xi = h_LH @ params["Whi"].T + params["bi"]                                # xi_t [..., X]
  lead = xi.shape[:-1]
  parse = lambda v: access.parse_interface(v, config.word_size, config.read_heads,
                                           config.link_sharpness, config.key_masking)
  interface = jax.vmap(parse)(xi.reshape((-1, xi.shape[-1])))
  unflat = lambda a: a.reshape(lead + a.shape[1:])
  return {
      "write_weights": state.write_weights,
      "read_weights": state.read_weights,
      "usage": state.usage,
      "memory": state.memory,
      "link": state.link,
      "read_modes": unflat(interface.read_modes),
      "write_gate": unflat(interface.write_gate),
      "allocation_gate": unflat(interface.allocation_gate),
      "free_gates": unflat(interface.free_gates),
  }
