"""What a sweep is (Sweep: its search space, Budget, sampler, pruner) and its Optuna study.

A sweep of the char-LM run (experiments/alice.py) is an Optuna study, kept in a storage
(storage.py): by default an SQLite file, study.db, in the sweep's folder. Each trial is
one alice.py run in <workdir>/trials/NNNN, trained for a fixed budget of steps or seconds,
reported to the pruner at each evaluation and scored by its best dev BPC, on the
development split (runs.py); no trial reads the held-out tail. Workers ask the study for
trials until it holds `trials` of them (workers.py); an interrupted trial does not count:
it is retried (trials.py).
"""

from __future__ import annotations

import pathlib

import optuna

from dncjax.sweeps import errors, space, storage as sweep_storage
from dncjax.sweeps.config import Budget, Sweep  # noqa: F401  (their home: no optuna there)

STUDY_ATTR = "dncjax_sweep"


def make_sampler(sweep: Sweep, seed: int) -> optuna.samplers.BaseSampler:
  """The sampler of `sweep`; a grid's trials are all queued (see `trials.queue_grid`), so it
  draws nothing there."""
  if sweep.sampler in ("grid", "random"):
    return optuna.samplers.RandomSampler(seed=seed)
  return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
  """The sweep's Optuna pruner: median (after 2 trials, from the second
  evaluation on), successive halving, or none."""
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

