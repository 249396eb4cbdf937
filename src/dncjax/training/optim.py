"""The one optimiser: a frozen `OptimizerConfig` and the optax chain it builds.

  clip each entry to [-clip_value, clip_value]     (the seed's np.clip)
  -> clip by global norm at clip_norm              (Pascanu et al., 2013)
  -> add weight_decay * p to the gradient          (L2, before the update rule)
  -> the update rule: adagrad | rmsprop | adam

The numbers are `optax.inject_hyperparams` hyperparameters, held as arrays in the
optimiser state (an absent clip as NO_CLIP, the largest float32: a clip that leaves every
finite gradient as it is and keeps the state finite, so the NaN/Inf guards of checkpoints
stay strict). The three optional stages are stateless, so whether they are compiled in
(`Stages`: only those a config uses; for a vmapped population, those any member uses)
leaves the state's tree alone: every config of one rule, a single run, a population whose
members differ in these numbers, and a checkpoint all hold the same tree. A stage that
changes nothing is left out rather than run: it would cost time, and even a clamp at +inf
changes how XLA fuses the norm's reduction, and so the last bit of the updates.

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


@dataclasses.dataclass(frozen=True)
class Stages:
  """Which of the optional (stateless) stages are compiled into the chain."""
  clip_value: bool = False
  clip_norm: bool = False
  weight_decay: bool = False

  @classmethod
  def of(cls, *configs: OptimizerConfig) -> "Stages":
    """The stages any of `configs` uses (a population compiles them all in, at values
    that change nothing for the members that do not)."""
    return cls(any(c.clip_value is not None for c in configs),
               any(c.clip_norm is not None for c in configs),
               any(c.weight_decay != 0 for c in configs))


def _chain(name, with_clip_value, with_clip_norm, with_decay, learning_rate, eps, momentum,
           clip_norm, clip_value, weight_decay):
  if name == "adagrad":
    rule = optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=eps)
  elif name == "rmsprop":
    rule = optax.rmsprop(learning_rate, decay=RMS_DECAY, eps=eps, momentum=momentum)
  else:
    rule = optax.adam(learning_rate, eps=eps)
  stage = lambda on, transform: transform if on else optax.identity()  # all stateless
  return optax.chain(stage(with_clip_value, optax.clip(clip_value)),
                     stage(with_clip_norm, optax.clip_by_global_norm(clip_norm)),
                     stage(with_decay, optax.add_decayed_weights(weight_decay)), rule)


def make(config: OptimizerConfig, stages: Stages | None = None
         ) -> optax.GradientTransformationExtraArgs:
  """The chain of `config`; its state holds the hyperparameters (in the params' dtype).
  `stages` (default: those `config` uses) says which optional stages are compiled in."""
  stages = Stages.of(config) if stages is None else stages
  return optax.inject_hyperparams(_chain, static_args="name")(  # bools are static too
      name=config.name, with_clip_value=stages.clip_value, with_clip_norm=stages.clip_norm,
      with_decay=stages.weight_decay, **config.hyperparams())


def with_hyperparams(opt_state, **values):
  """`opt_state` with some hyperparameters replaced (e.g. dynamic evaluation's rate)."""
  unknown = set(values) - set(HYPERPARAMETERS)
  if unknown:
    raise ValueError(f"not an optimiser hyperparameter: {', '.join(sorted(unknown))}")
  hyper = {**opt_state.hyperparams,
           **{k: jnp.full_like(opt_state.hyperparams[k], v) for k, v in values.items()}}
  return opt_state._replace(hyperparams=hyper)
