"""What a sweep is (Sweep: its search space, Budget, sampler, pruner) and its Optuna study.

A sweep of the char-LM run (experiments/alice.py) is an Optuna study, kept in a storage
(storage.py): by default an SQLite file, study.db, in the sweep's folder. Each trial is
one alice.py run in <workdir>/trials/NNNN, trained for a fixed budget of steps or seconds,
reported to the pruner at each evaluation and scored by its best validation BPC
(runs.py). Workers ask the study for trials until it holds `trials` of them (workers.py);
an interrupted trial does not count: it is retried (trials.py).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import optuna

from dncjax.fields import field as _field
from dncjax.sweeps import errors, population, space, storage as sweep_storage

STUDY_ATTR = "dncjax_sweep"


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
  pruner: str = _field("median", "stops trials whose validation BPC falls behind",
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
    shaped = [p.name for p in self.space.params if p.name not in population.VMAPPABLE]
    if self.population > 1 and shaped:
      raise ValueError(f"a population trains one program, so it can only sweep settings that "
                       f"keep array shapes ({', '.join(population.VMAPPABLE)}); not: "
                       f"{', '.join(shaped)}")

  @property
  def path(self) -> pathlib.Path:
    return pathlib.Path(self.workdir).absolute()

  def storage_url(self) -> str:
    return self.storage or f"sqlite:///{self.path / 'study.db'}"

  def study_name(self) -> str:
    return self.study or self.path.name

  def n_trials(self) -> int:
    if self.sampler == "grid":
      return min(self.trials or self.space.grid_size(), self.space.grid_size())
    return self.trials or 20

  def signature(self) -> dict:
    """The search a study was made for; another search under the same name is refused."""
    b = self.budget
    return json.loads(json.dumps({**self.space.signature(), "data": self.data,
                                  "budget": [b.steps, b.seconds, b.eval_every]}))


def make_sampler(sweep: Sweep, seed: int) -> optuna.samplers.BaseSampler:
  """The sampler of `sweep`; a grid's trials are all queued (see `trials.queue_grid`), so it
  draws nothing there."""
  if sweep.sampler in ("grid", "random"):
    return optuna.samplers.RandomSampler(seed=seed)
  return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
  if sweep.pruner == "median":  # from the second evaluation on: early BPC says little
    return optuna.pruners.MedianPruner(n_startup_trials=2,
                                       n_warmup_steps=sweep.budget.eval_every)
  if sweep.pruner == "halving":
    return optuna.pruners.SuccessiveHalvingPruner()
  return optuna.pruners.NopPruner()


def open_study(sweep: Sweep) -> optuna.Study:
  """The sweep's study, created on first use; refused if it was made for another search."""
  url = sweep.storage_url()
  storage = sweep_storage.open_storage(url)
  try:
    study = optuna.create_study(storage=storage, study_name=sweep.study_name(),
                                direction="minimize", load_if_exists=True,
                                sampler=make_sampler(sweep, sweep.seed),
                                pruner=make_pruner(sweep))
  except Exception as e:
    raise errors.SweepError(f"cannot open study {sweep.study_name()!r} in "
                            f"{sweep_storage.shown(url)}: "
                            f"{sweep_storage.error_line(e, url)}") from None
  saved, wanted = study.user_attrs.get(STUDY_ATTR), sweep.signature()
  if saved is None:
    study.set_user_attr(STUDY_ATTR, wanted)
  elif saved != wanted:
    diff = [f"{k}: {saved.get(k)} (study) vs {wanted[k]} (now)" for k in wanted
            if saved.get(k) != wanted[k]]
    raise errors.SweepError(f"study {sweep.study_name()!r} in {sweep_storage.shown(url)} was "
                            f"made for another search ({'; '.join(diff)}): run it with its own "
                            f"settings, or choose another --study or --workdir")
  return study


def existing(workdir: str, storage: str | None = None, study: str | None = None,
             keep_top: int = 3) -> tuple[Sweep, optuna.Study]:
  """The sweep and study already in `workdir` (or `storage`), rebuilt from what the study
  recorded: for reports, without the command line that made it."""
  path = pathlib.Path(workdir).absolute()
  if storage is None and not (path / "study.db").exists():
    raise errors.SweepError(f"no sweep in {path} (no study.db; give --storage if it lives "
                            f"elsewhere)")
  url, name = storage or f"sqlite:///{path / 'study.db'}", study or path.name
  try:
    found = optuna.load_study(study_name=name, storage=sweep_storage.open_storage(url))
  except KeyError:
    raise errors.SweepError(f"no study {name!r} in {sweep_storage.shown(url)}") from None
  sig = found.user_attrs.get(STUDY_ATTR)
  if sig is None:
    raise errors.SweepError(f"study {name!r} in {sweep_storage.shown(url)} was not made by "
                            f"dncjax's sweep")
  searched = space.Space(tuple(space.Param.parse(t) for t in sig["params"]),
                         tuple(sorted(space.parse_fixed(t) for t in sig["fixed"])))
  steps, seconds, eval_every = sig["budget"]
  return Sweep(workdir, searched, Budget(steps, seconds, eval_every), storage=storage,
               study=study, data=sig["data"], keep_top=keep_top), found

