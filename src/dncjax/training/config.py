"""The training machinery's settings: the optimiser, the schedule, where a run goes.

Frozen dataclasses, checked in `__post_init__` (errors name the flags), whose fields carry
their flags' help. Nothing here imports JAX, so a script can check its flags before
loading it. `optim.make` builds the optax chain of an `OptimizerConfig`, `loop.drive`
follows a `Schedule`, `run.run` takes `RunOptions`.
"""

from __future__ import annotations

import dataclasses

from dncjax import checks
from dncjax.fields import documented, field

RULES = ("adagrad", "rmsprop", "adam")
DEFAULT_EPS = {"adagrad": 1e-8, "rmsprop": 1e-10, "adam": 1e-8}
RMS_DECAY = 0.9
NO_CLIP = 3.4028234663852886e38  # float32's largest: a clip that never bites, finite in any dtype
DYNAMIC_RULES = ("adagrad", "rms")  # dynamic evaluation's update rules (dynamic.py)
HYPERPARAMETERS = ("learning_rate", "eps", "momentum", "clip_norm", "clip_value",
                   "weight_decay")


def _flag(name: str) -> str:
  return "--lr" if name == "learning_rate" else f"--{name}"


@documented
@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """An update rule and its hyperparameters (checked here, errors name the flags)."""
  name: str = field("adagrad", "update rule", flag="--optimizer", choices=RULES)
  learning_rate: float = field(0.1, "learning rate", flag="--lr")
  eps: float | None = field(None, "epsilon inside the square root (none: adagrad and adam "
                            "1e-8, rmsprop 1e-10)")
  momentum: float = field(0.0, "RMSProp momentum")
  clip_norm: float | None = field(None, "clip gradients by global norm (none: no clip; "
                                  "tasks.py: 0 for none)")
  clip_value: float | None = field(None, "clip each gradient entry to [-v, v] (none: no clip)")
  weight_decay: float = field(0.0, "L2 weight decay added to the gradient")

  def __post_init__(self):
    checks.check_choice("--optimizer", self.name, RULES)
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


@documented
@dataclasses.dataclass(frozen=True)
class Schedule:
  """When to stop, report, evaluate and save (may change when a run is resumed)."""
  steps: int | None = field(None, "stop after this many iterations in all")
  timelimit: float | None = field(None, "stop after this many seconds of training in all "
                                  "(compilation, evaluation and saving not counted)")
  report_interval: int = field(20, "iterations between progress lines")
  eval_every: int = field(0, "iterations between evaluations (0: at the end only)")
  checkpoint_every: int = field(0, "iterations between checkpoints (0: at the end only)")

  def __post_init__(self):
    if self.steps is None and self.timelimit is None:
      raise ValueError("give a step budget (--steps) or a time limit (--timelimit)")
    for name in ("steps", "report_interval"):
      value = getattr(self, name)
      if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                or value <= 0):
        raise ValueError(f"--{name} must be a positive integer, got {value!r}")
    checks.check_number("--timelimit", self.timelimit, 0, low_open=True, optional=True)
    for name in ("eval_every", "checkpoint_every"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"--{name} must be an integer >= 0, got {value!r}")

  def spent(self, step: int, seconds: float) -> str | None:
    """'steps' or 'timelimit' once that budget is used up, else None."""
    if self.steps is not None and step >= self.steps:
      return "steps"
    if self.timelimit is not None and seconds >= self.timelimit:
      return "timelimit"
    return None


@documented
@dataclasses.dataclass(frozen=True)
class RunOptions:
  """Where and how long to run (may change between a run and its resumption)."""
  workdir: str = field(help="the run's folder: checkpoints, metrics, plots, logs")
  resume: bool = field(False, "continue from the latest checkpoint")
  schedule: Schedule = Schedule(steps=1)  # a job's scripts give their own
  keep: int = field(3, "latest checkpoints kept")
  progress_bar: bool = field(True, "a tqdm bar below the progress lines, on a terminal")

  def __post_init__(self):
    if not isinstance(self.keep, int) or isinstance(self.keep, bool) or self.keep <= 0:
      raise ValueError(f"--keep must be a positive integer, got {self.keep!r}")
