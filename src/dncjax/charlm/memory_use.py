"""What a char-LM memory core does with its memory, on the development split.

Ablations (`ABLATIONS`, `ablated`): the trained parameters run with part of the memory
taken away, each scored as training's evaluations score the development split (one lane,
state carried across windows; `dncjax.charlm.evaluate`):
  "windows": memory, usage, links, weights and reads wiped at the start of every window
    (the model's `reset_memory`): nothing carried from one window to the next;
  "wiped": the access state reset before every step, so a read sees only the current
    step's write: no storage across steps;
  "no_reads": the read vectors r_t the controller and the output see replaced by zeros:
    no memory at all.
The BPC each adds over the trained model is what that part of the memory is worth.

`trace` runs the dense DNC over a text, one character at a time, keeping every step's
access state and interface; `statistics` sums it up (gates, read modes, slots in use, the
age of the content each head reads) and `figure` draws an excerpt.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dncjax import models
from dncjax.charlm import evaluate
from dncjax.models import access, core

ABLATIONS = ("windows", "wiped", "no_reads")


def ablated(model: core.Model, how: str) -> core.Model:
  """`model` (a memory core: dnc, sdnc, sam) with the memory part `how` taken away (see
  the module doc); its parameters are the same."""
  if how == "windows":
    return models.build(dataclasses.replace(model.config, reset_memory=True))
  recur = model.recur
  if how == "wiped":
    def changed(params, state, x):
      return recur(params, state._replace(access=model.initial_state().access), x)
  elif how == "no_reads":
    def changed(params, state, x):
      blank = state.access._replace(read_vectors=jnp.zeros_like(state.access.read_vectors))
      state, (h, reads) = recur(params, state._replace(access=blank), x)
      return state, (h, jnp.zeros_like(reads))
  else:
    raise ValueError(f"unknown ablation {how!r}: one of {', '.join(ABLATIONS)}")
  return core.split_model(model.init, model.initial_state, changed, model.readout,
                          model.truncate, model.config)


def ablation_bpcs(model: core.Model, params, ids: np.ndarray, seq_length: int) -> dict:
  """{"trained": BPC, each ablation: BPC} of `params` on the split `ids`, in windows of
  `seq_length`, one lane, state carried (as training's evaluations)."""
  windows = evaluate.stack_validation(ids, seq_length, 1)
  scored = {"trained": model, **{how: ablated(model, how) for how in ABLATIONS}}
  return {name: evaluate.static_bpc(evaluate.make_static_eval(m), params, windows)
          for name, m in scored.items()}


class Trace(NamedTuple):
  """Every step of one lane: the access states ([T, ...] each) and the interfaces."""
  access: access.AccessState
  interface: access.Interface


def trace(model: core.Model, params, ids: np.ndarray) -> Trace:
  """The dense DNC's access state and interface at every step over the text `ids`, from
  the initial state."""
  c = model.config
  if not hasattr(model.initial_state(), "access") or not hasattr(c, "link_sharpness"):
    raise ValueError(f"the trace reads the dense DNC's access, not {type(c).__name__}'s")

  @jax.jit
  def run(params, xs):
    def body(state, x):
      state, _ = model.step(params, state, x)
      h = jnp.concatenate([layer.h for layer in state.controller])
      xi = params["Whi"] @ h + params["bi"]  # xi_t, the interface vector
      interface = access.parse_interface(xi, c.word_size, c.read_heads, c.link_sharpness,
                                         c.key_masking)
      return state, (state.access, interface)
    return jax.lax.scan(body, model.initial_state(), xs)[1]

  return Trace(*run(params, jnp.asarray(ids, jnp.int32)))


def read_ages(write_TxN: np.ndarray, read_TxRxN: np.ndarray) -> np.ndarray:
  """[T, R]: per step and head, the mean age in steps of the content it reads. A slot's
  content ages by one each step and a write of weight w^w_t[n] replaces that share of it:
  a_t[n] = (1 - w^w_t[n]) (a_{t-1}[n] + 1), a_{-1} = 0 (the erase vector is left out);
  a head's age is sum_n w^r_t[r, n] a_t[n] / sum_n w^r_t[r, n] (NaN where it reads
  nothing)."""
  age_N = np.zeros(write_TxN.shape[1])
  ages = np.full(read_TxRxN.shape[:2], np.nan)
  for t in range(len(write_TxN)):
    age_N = (1 - write_TxN[t]) * (age_N + 1)
    weight_R = read_TxRxN[t].sum(-1)
    ok = weight_R > 1e-6
    ages[t, ok] = (read_TxRxN[t] @ age_N)[ok] / weight_R[ok]
  return ages


def statistics(traced: Trace) -> dict:
  """Means over the steps of a trace: write and allocation gates, each head's read modes
  (backward, content, forward), slots in use (sum of u_t), and the median and mean age of
  the content each head reads (`read_ages`)."""
  a, i = traced.access, traced.interface
  ages = read_ages(np.asarray(a.write_weights), np.asarray(a.read_weights))
  modes = np.asarray(i.read_modes).mean(0)  # [R, 3]
  return {"steps": int(a.usage.shape[0]), "slots": int(a.usage.shape[1]),
          "write_gate": float(np.mean(i.write_gate)),
          "allocation_gate": float(np.mean(i.allocation_gate)),
          "read_modes": [dict(zip(("backward", "content", "forward"), map(float, m)))
                         for m in modes],
          "slots_in_use": float(np.asarray(a.usage).sum(-1).mean()),
          "read_age_median": [float(np.nanmedian(h)) for h in ages.T],
          "read_age_mean": [float(np.nanmean(h)) for h in ages.T]}


def figure(traced: Trace, text: str, title: str):
  """A matplotlib figure of the trace over `text` (its characters on the x axis): write
  weights, each head's read weights, usage, and the read modes of head 1."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  a, T = traced.access, len(text)
  rows = [("write weights", a.write_weights)]
  rows += [(f"read weights, head {r + 1}", a.read_weights[:, r])
           for r in range(a.read_weights.shape[1])]
  rows += [("usage", a.usage)]
  fig, axes = plt.subplots(len(rows) + 1, 1, figsize=(max(8, T / 9), 1.6 * (len(rows) + 1)),
                           sharex=True, constrained_layout=True)
  for ax, (name, weights_TxN) in zip(axes, rows):
    ax.imshow(np.asarray(weights_TxN[:T]).T, aspect="auto", cmap="viridis", vmin=0, vmax=1,
              interpolation="nearest", origin="lower")
    ax.set_ylabel("slot")
    ax.set_title(name, fontsize=9)
  modes = np.asarray(traced.interface.read_modes[:T, 0])
  axes[-1].stackplot(np.arange(T), modes.T, labels=("backward", "content", "forward"),
                     step="mid")
  axes[-1].set_ylim(0, 1)
  axes[-1].set_title("read modes, head 1", fontsize=9)
  axes[-1].legend(loc="upper left", fontsize=7, ncol=3)
  axes[-1].set_xticks(np.arange(T), [c if c.strip() else "␣" for c in text], fontsize=6)
  fig.suptitle(title, fontsize=10)
  return fig
