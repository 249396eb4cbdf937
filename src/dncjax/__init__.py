"""dncjax: the Differentiable Neural Computer, LSTM and RNN as pure functional JAX cores.

Notation used throughout (shapes are written into names, e.g. `memory_NxW`):

  B  batch (lanes)          S  window length (time steps of one update)
  T  time                   V  vocabulary / output size     I  input size
  H  controller hidden size
  N  memory slots           W  word size                    R  read heads

Paper symbols (Graves et al., Nature 538, 2016, Methods): M_t memory, u_t usage,
psi_t retention, a_t allocation, p_t precedence, L_t temporal link matrix,
w^r read weights, w^w write weights, r_t read vectors.

Packages: `models` (the cores and their registry), `training` (losses, optimiser, steps,
loop, checkpoints), `charlm` (the character-level language model job), `tasks` (the
algorithmic tasks job), `sweeps` (hyperparameter search and populations).
"""

from dncjax.models import build, make_config, make_model, model_names

__all__ = ["Model", "batch_unroll", "build", "make_config", "make_model", "model_names",
           "unroll"]


def __getattr__(name: str):
  """`Model`, `unroll` and `batch_unroll` load `dncjax.models.core` (and JAX) when first used,
  so importing dncjax (e.g. a script answering --help) does not load JAX."""
  if name in ("Model", "unroll", "batch_unroll"):
    from dncjax.models import core  # pylint: disable=import-outside-toplevel
    return getattr(core, name)
  raise AttributeError(f"module 'dncjax' has no attribute {name!r}")
