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

`with_average` appends a stage that changes no update and keeps a moving average of the
parameters (`averaged_parameters`); `evaluated` reads it. Without it the state is the
chain's alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dncjax.training.config import (  # the settings live there, without JAX
    DEFAULT_EPS, HYPERPARAMETERS, NO_CLIP, RMS_DECAY, RULES, OptimizerConfig)

__all__ = ["DEFAULT_EPS", "HYPERPARAMETERS", "NO_CLIP", "RMS_DECAY", "RULES", "OptimizerConfig",
           "Stages", "make", "with_hyperparams", "AverageState", "averaged_parameters",
           "with_average", "evaluated", "rule_state"]


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
  if _averages(opt_state):
    return (with_hyperparams(opt_state[0], **values), opt_state[1])
  unknown = set(values) - set(HYPERPARAMETERS)
  if unknown:
    raise ValueError(f"not an optimiser hyperparameter: {', '.join(sorted(unknown))}")
  hyper = {**opt_state.hyperparams,
           **{k: jnp.full_like(opt_state.hyperparams[k], v) for k, v in values.items()}}
  return opt_state._replace(hyperparams=hyper)


class AverageState(NamedTuple):
  """count t, the updates averaged; average, the parameters' average a_t."""
  count: jax.Array
  average: Any


def averaged_parameters(decay: float) -> optax.GradientTransformation:
  """A stage that leaves the updates as they are and averages the parameters p_t that they
  make: a_t = a_{t-1} + r_t (p_t - a_{t-1}), r_t = (1 - decay) / (1 - decay^t), a_0 = p_0.

  That is the exponential moving average of p_1 .. p_t with weights decay^(t-s), divided by
  their sum (optax.ema's debiasing): a uniform (Polyak) average while t << 1 / (1 - decay),
  an exponential one after. The parameters a run evaluates (Polyak and Juditsky, 1992;
  AWD-LSTM's averaged SGD, Merity et al., 2018)."""
  def init(params):
    return AverageState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.array, params))

  def update(updates, state, params):
    count = state.count + 1

    def step(a, p, u):
      t = count.astype(a.dtype)
      rate = (1 - decay) / (1 - jnp.power(jnp.asarray(decay, a.dtype), t))
      return a + rate * (p + u - a)

    return updates, AverageState(count, jax.tree.map(step, state.average, params, updates))

  return optax.GradientTransformation(init, update)


def with_average(optimizer, decay: float):
  """`optimizer` followed by `averaged_parameters(decay)`; `optimizer` itself at decay 0."""
  return optax.chain(optimizer, averaged_parameters(decay)) if decay else optimizer


def _averages(opt_state) -> bool:
  return (isinstance(opt_state, tuple) and len(opt_state) == 2
          and isinstance(opt_state[1], AverageState))


def evaluated(params, opt_state):
  """The parameters to evaluate: the average `opt_state` keeps (`with_average`), else
  `params`."""
  return opt_state[1].average if _averages(opt_state) else params


def rule_state(opt_state):
  """The update rule's chain's state (`make`'s), without the average."""
  return opt_state[0] if _averages(opt_state) else opt_state
