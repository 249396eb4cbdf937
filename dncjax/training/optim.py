"""The one optimiser: a frozen `OptimizerConfig` and the optax chain it builds.

  clip each entry to [-clip_value, clip_value]     (the seed's np.clip)
  -> clip by global norm at clip_norm              (Pascanu et al., 2013)
  -> add weight_decay * p to the gradient          (L2, before the update rule)
  -> the update rule: adagrad | rmsprop | adam

Every stage is always present (an absent clip is a clip at NO_CLIP, the largest float32,
which leaves every finite gradient as it is, and keeps the state finite so that the NaN/Inf
guards of checkpoints stay strict; no weight decay is a decay of 0), and the numbers are
`optax.inject_hyperparams` hyperparameters, held as arrays in the optimiser state. So
every config of one rule gives the same state structure: a single run, a vmapped
population whose members differ in these numbers, and a checkpoint all hold the same
tree. Entry clipping is compiled in only where some config asks for it (`clip_values`):
a clamp that changes nothing still changes how XLA fuses the norm's reduction, and so
the last bit of the updates.

Adagrad is the seed's: G_t = G_{t-1} + g^2 (G_0 = 0), p -= lr g / sqrt(G_t + eps).
RMSProp is deepmind/dnc's (decay 0.9, eps inside the square root) with momentum.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax

from dncjax import checks

RULES = ("adagrad", "rmsprop", "adam")
DEFAULT_EPS = {"adagrad": 1e-8, "rmsprop": 1e-10, "adam": 1e-8}
RMS_DECAY = 0.9
NO_CLIP = float(np.finfo(np.float32).max)  # a clip that never bites, finite in any dtype
HYPERPARAMETERS = ("learning_rate", "eps", "momentum", "clip_norm", "clip_value",
                   "weight_decay")


def _flag(name: str) -> str:
  return "--lr" if name == "learning_rate" else f"--{name}"


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """An update rule and its hyperparameters (checked here, errors name the flags)."""
  name: str = dataclasses.field(default="adagrad", metadata={
      "flag": "--optimizer", "help": "update rule: " + ", ".join(RULES)})
  learning_rate: float = dataclasses.field(default=0.1, metadata={
      "flag": "--lr", "help": "learning rate"})
  eps: float | None = dataclasses.field(default=None, metadata={
      "help": "epsilon inside the square root (none: adagrad and adam 1e-8, rmsprop 1e-10)"})
  momentum: float = dataclasses.field(default=0.0, metadata={"help": "RMSProp momentum"})
  clip_norm: float | None = dataclasses.field(default=None, metadata={
      "help": "clip gradients by global norm (tasks.py: 0 for none)"})
  clip_value: float | None = dataclasses.field(default=None, metadata={
      "help": "clip each gradient entry to [-v, v]"})
  weight_decay: float = dataclasses.field(default=0.0, metadata={
      "help": "L2 weight decay added to the gradient"})

  def __post_init__(self):
    if self.name not in RULES:
      raise ValueError(f"--optimizer must be one of {', '.join(RULES)}, got {self.name!r}")
    checks.check_number("--lr", self.learning_rate, 0, low_open=True)
    checks.check_number("--eps", self.eps, 0, low_open=True, optional=True)
    checks.check_number("--momentum", self.momentum, 0, 1, high_open=True)
    checks.check_number("--weight_decay", self.weight_decay, 0)
    for name in ("clip_norm", "clip_value"):
      checks.check_number(_flag(name), getattr(self, name), 0, low_open=True, optional=True)

  def hyperparams(self) -> dict[str, float]:
    """The numbers of the chain: eps resolved, an absent clip as NO_CLIP."""
    eps = DEFAULT_EPS[self.name] if self.eps is None else self.eps
    inf = lambda v: NO_CLIP if v is None else float(v)
    return {"learning_rate": float(self.learning_rate), "eps": float(eps),
            "momentum": float(self.momentum), "clip_norm": inf(self.clip_norm),
            "clip_value": inf(self.clip_value), "weight_decay": float(self.weight_decay)}


def _chain(name, clip_values, learning_rate, eps, momentum, clip_norm, clip_value,
           weight_decay):
  if name == "adagrad":
    rule = optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=eps)
  elif name == "rmsprop":
    rule = optax.rmsprop(learning_rate, decay=RMS_DECAY, eps=eps, momentum=momentum)
  else:
    rule = optax.adam(learning_rate, eps=eps)
  entries = optax.clip(clip_value) if clip_values else optax.identity()  # both stateless
  return optax.chain(entries, optax.clip_by_global_norm(clip_norm),
                     optax.add_decayed_weights(weight_decay), rule)


def make(config: OptimizerConfig, clip_values: bool | None = None
         ) -> optax.GradientTransformationExtraArgs:
  """The chain of `config`; its state holds the hyperparameters (in the params' dtype).
  `clip_values` (default: whether `config` clips entries) compiles in the entry clip, for
  a population some of whose members clip."""
  if clip_values is None:
    clip_values = config.clip_value is not None
  return optax.inject_hyperparams(_chain, static_args=("name", "clip_values"))(
      name=config.name, clip_values=bool(clip_values), **config.hyperparams())


def with_hyperparams(opt_state, **values):
  """`opt_state` with some hyperparameters replaced (e.g. dynamic evaluation's rate)."""
  unknown = set(values) - set(HYPERPARAMETERS)
  if unknown:
    raise ValueError(f"not an optimiser hyperparameter: {', '.join(sorted(unknown))}")
  hyper = {**opt_state.hyperparams,
           **{k: jnp.full_like(opt_state.hyperparams[k], v) for k, v in values.items()}}
  return opt_state._replace(hyperparams=hyper)
