"""What a sweep is: its search space, the budget of each trial, the sampler and pruner,
where its study is kept (`Sweep`, `Budget`). Nothing here imports optuna or JAX, so
experiments/sweep.py checks its flags before loading them; `study.py` opens the study.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from dncjax.fields import documented, field as _field
from dncjax.sweeps import space

@documented
@dataclasses.dataclass(frozen=True)
class Budget:
  """What each trial gets, and how often it is evaluated (and may be pruned)."""
  steps: int | None = _field(None, "iterations per trial")
  seconds: float | None = _field(None, "seconds per trial (with --workers > 1 they share the "
                                 "cores)")
  eval_every: int = _field(100, "iterations between evaluations (pruning points)")
  report_interval: int = _field(50, "iterations between progress lines in each trial's "
                                "log.txt")
  sample_length: int = 0

  def __post_init__(self):
    if self.steps is None and self.seconds is None:
      raise ValueError("give each trial a budget: steps or seconds")
    for name in ("steps", "seconds"):
      value = getattr(self, name)
      if value is not None and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if self.eval_every <= 0 or self.report_interval <= 0:
      raise ValueError("eval_every and report_interval must be positive")


@documented
@dataclasses.dataclass(frozen=True)
class Sweep:
  """One search: its folder, space and budget, how trials are drawn and pruned, where the
  study is kept."""
  workdir: str
  space: space.Space
  budget: Budget
  trials: int | None = _field(None, "trials in the sweep (default: the grid's size, or 20)")
  sampler: str = _field("tpe", "Optuna sampler (grid: lists only, every combination once)",
                        choices=("tpe", "random", "grid"))
  pruner: str = _field("median", "stops trials whose dev BPC falls behind",
                       choices=("median", "halving", "none"))
  storage: str | None = _field(None, "Optuna storage shared by workers, e.g. "
                               "postgresql://user:pass@host/db (default: "
                               "sqlite:///WORKDIR/study.db)", metavar="URL")
  study: str | None = _field(None, "study name (default: the workdir's name)")
  data: str | None = _field(None, "UTF-8 text (default: alice29.txt, as alice.py finds it)",
                            metavar="PATH")
  seed: int = _field(0, "sampler seed")
  population: int = _field(1, "trials trained together as one vmapped program")
  keep_top: int = _field(3, "trials whose checkpoints are kept at the end")

  def __post_init__(self):
    if self.sampler not in ("grid", "random", "tpe"):
      raise ValueError(f"sampler must be grid, random or tpe, got {self.sampler!r}")
    if self.pruner not in ("median", "halving", "none"):
      raise ValueError(f"pruner must be median, halving or none, got {self.pruner!r}")
    if self.sampler == "grid":
      self.space.grid()  # raises on ranges
    if self.trials is not None and self.trials <= 0:
      raise ValueError(f"trials must be positive, got {self.trials}")
    if self.population < 1 or self.keep_top < 0:
      raise ValueError("population must be >= 1 and keep_top >= 0")
    if self.seed < 0:
      raise ValueError(f"seed must be >= 0, got {self.seed}")
    shaped = [p.name for p in self.space.params if p.name not in space.VMAPPABLE]
    if self.population > 1 and shaped:
      raise ValueError(f"a population trains one program, so it can only sweep settings that "
                       f"keep array shapes ({', '.join(space.VMAPPABLE)}); not: "
                       f"{', '.join(shaped)}")

  @property
  def path(self) -> pathlib.Path:
    """The workdir as an absolute path."""
    return pathlib.Path(self.workdir).absolute()

  def storage_url(self) -> str:
    """The Optuna storage: --storage, else sqlite:///WORKDIR/study.db."""
    return self.storage or f"sqlite:///{self.path / 'study.db'}"

  def study_name(self) -> str:
    """The study's name: --study, else the workdir's name."""
    return self.study or self.path.name

  def n_trials(self) -> int:
    """Trials to run: the grid's size (or fewer --trials) for the grid
    sampler, else --trials or 20."""
    if self.sampler == "grid":
      return min(self.trials or self.space.grid_size(), self.space.grid_size())
    return self.trials or 20

  def signature(self) -> dict:
    """The search a study was made for; another search under the same name is refused."""
    b = self.budget
    return json.loads(json.dumps({**self.space.signature(), "data": self.data,
                                  "budget": [b.steps, b.seconds, b.eval_every]}))
