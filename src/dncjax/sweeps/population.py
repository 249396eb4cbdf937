"""Vmapped populations: P char-LM trials trained together as ONE compiled program.

Trials (`charlm.config.RunConfig`) that differ only in values that leave every array
shape alone (`VMAPPABLE`: the optimiser's numbers, the seed and the model's init_scale) are
stacked on a leading member axis P: params, optimiser state (which holds each member's
optimiser hyperparameters, `training.optim`), recurrent state and dropout keys are
[P, ...] arrays, and `jax.vmap` of the training step runs under one `jax.jit` (the
stacking, the vmapped step and the session's skeleton are `training.population`'s). Each
member sees exactly what it would see alone (its own init, data lanes, dropout and
sampling keys, all drawn from its seed), so it trains as `charlm.job.train_and_evaluate`
would train it, to float rounding (the optimiser's optional stages that any member uses
run for all, at values that change nothing for the others: `optim.Stages`).

The population runs on the same schedule as a single run (`training.loop.drive`): Ctrl-C
or SIGTERM stops it after the step, saves every member and raises `Interrupted`. A
member whose loss or state becomes NaN/Inf is frozen at its last good state while the
others go on. `train_population` leaves in each member's workdir what
`experiments/alice.py` leaves (checkpoints/, best/, metrics.jsonl, config.json,
results.json, metrics.png), so `--resume`, `sample.py` and `charlm.restore` work on a
member as on any run.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
from typing import Callable

import jax

from dncjax import configs
from dncjax.charlm import batches, data, evaluate, job
from dncjax.charlm.config import RunConfig
from dncjax.sweeps.members import Member, PopulationSession
from dncjax.sweeps.space import VMAPPABLE
from dncjax.training import (checkpoint, compile_cache, loop, optim, plots, progress, records,
                             signals, train, workdir)
from dncjax.training.population import stack, vmap_step



_SHOWN = {"model.name": "model", "data.path": "data"}  # settings named as their flags


def check_population(configs_: list[RunConfig]) -> None:
  """ValueError naming the first setting (other than VMAPPABLE) in which members differ."""
  if not configs_:
    raise ValueError("a population needs at least one member")
  first = _shaping(configs_[0])
  for i, config in enumerate(configs_[1:], 1):
    mine = _shaping(config)
    for name, value in mine.items():
      if value != first.get(name):
        raise ValueError(f"population members may differ only in {', '.join(VMAPPABLE)}; "
                         f"member {i} has {name}={value!r} but member 0 has "
                         f"{name}={first.get(name)!r}")


def _shaping(config: RunConfig) -> dict:
  """Every setting of `config` outside VMAPPABLE, by its last name ('hidden', 'model')."""
  flat = {}

  def walk(tree: dict, prefix: str) -> None:
    for key, value in tree.items():
      path = prefix + key
      if isinstance(value, dict):
        walk(value, path + ".")
      elif path not in VMAPPABLE.values():
        flat[_SHOWN.get(path, key)] = value

  walk(configs.to_json(config), "")
  return flat


def make_optimizer(configs_: list[RunConfig]):
  """The one optimiser of a population (its numbers live in each member's state)."""
  return optim.with_average(optim.make(configs_[0].optim,  # --average: shared by all
                                      optim.Stages.of(*(c.optim for c in configs_))),
                           configs_[0].average)


def make_step(model, optimizer, dropout: float = 0.0, weight_drop: float = 0.0):
  """jit(vmap(step)): (TrainState [P, ...], Batch [P, B, S], alive [P]) -> (TrainState,
  {'loss' [P], 'grad_norm' [P], 'finite' [P]}). A member that is not alive, or whose loss
  or updated state is not finite, keeps its state unchanged (`population.vmap_step`)."""
  return vmap_step(train.make_train_step(model, optimizer, jit=False, dropout=dropout,
                                         weight_drop=weight_drop))


def make_eval(model):
  """jit(vmap(static evaluation)): (params [P, ...], windows) -> summed loss [P]."""
  return jax.jit(jax.vmap(evaluate.make_static_eval(model), in_axes=(0, None)))


def train_population(configs_: list[RunConfig], workdirs: list, steps: int | None = None,
                     timelimit: float | None = None, eval_every: int = 500,
                     on_eval: Callable[[int, int, float], str | None] | None = None,
                     out: Callable[[str], None] = print, *, report_interval: int = 20,
                     checkpoint_every: int = 0, keep: int = 3, eval_lanes: int = 1,
                     plot: bool = True) -> list[dict]:
  """Trains the members together; returns each member's results.json summary.

  Every `eval_every` steps and at the end each member's dev BPC (on the development split)
  is computed and `on_eval(member_index, step, dev_bpc)` called (a string it returns stops
  that member with that reason, e.g. a pruner's 'pruned'; members stopped or diverged are
  no longer reported). The run ends at `steps`, at `timelimit` seconds of training
  (compilation and evaluation not counted), or when no member trains."""
  workdirs = [pathlib.Path(w) for w in workdirs]
  if len(workdirs) != len(configs_):
    raise ValueError(f"{len(configs_)} configs but {len(workdirs)} workdirs")
  if len({w.resolve() for w in workdirs}) != len(workdirs):
    raise ValueError("population members need distinct workdirs")
  check_population(configs_)
  schedule = loop.Schedule(steps, timelimit, report_interval, eval_every, checkpoint_every)
  with contextlib.ExitStack() as held:  # each member's workdir locked, as a single run's
    for folder in workdirs:
      held.enter_context(workdir.lock(folder))
    return _train(configs_, workdirs, schedule, on_eval, out, keep, eval_lanes, plot)


def _train(configs_, workdirs, schedule, on_eval, out, keep, eval_lanes, plot) -> list[dict]:
  compile_cache.enable(out)
  for folder in workdirs:
    checkpoint.refuse_existing(folder / "checkpoints", folder / "best")
  first = configs_[0]
  corpus, batcher, members, state = _build(configs_, workdirs, keep)
  model, optimizer = members[0].model, make_optimizer(configs_)  # init_scale: init only
  out(f"population of {len(members)} {first.model_name} members {model.config}; "
      f"{sum(p.size for p in jax.tree.leaves(state.params)) // len(members):,} parameters "
      f"each; data {corpus.path}")
  windows = evaluate.stack_validation(corpus.dev_ids, first.data.seq_length, eval_lanes)
  session = PopulationSession(
      members, state, batcher, make_step(model, optimizer, first.dropout, first.weight_drop),
      make_eval(model), windows, first.data.batch_size * first.data.seq_length, on_eval, out,
      progress.Stopwatch())
  step, reason, signum = loop.drive(schedule, session, 0, session.clock)
  summaries = session.close(reason)
  reasons = [s["stopped_by"] for s in summaries]
  best = min(range(len(members)), key=lambda i: summaries[i]["best_dev_bpc"])
  out(f"population stopped at iter {step} after {session.clock.seconds():.1f} s of training ("
      + ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons)))
      + f"); best dev {summaries[best]['best_dev_bpc']:.4f} BPC: member {best} at iter "
      f"{summaries[best]['best_step']}, {members[best].workdir}")
  if plot:
    for m in members:
      plots.plot_metrics(m.log.read(), m.workdir / "metrics.png",
                         title=f"{m.config.model_name} on {pathlib.Path(corpus.path).name}")
  if reason == "interrupted":  # each member saved: the caller decides what a stop means
    raise signals.Interrupted(signum) if signum else signals.Interrupted()
  return summaries


def _build(configs_: list[RunConfig], workdirs: list[pathlib.Path], keep: int):
  """(corpus, batcher, members, stacked TrainState [P, ...]) of a fresh population: each
  member's init, lanes and keys are those a single run of its config gives it."""
  d = configs_[0].data
  corpus = data.load(d)
  batcher = batches.lane_batcher(corpus.train_ids, d.batch_size, d.seq_length, d.overlap)
  stages = optim.Stages.of(*(c.optim for c in configs_))
  members, states = [], []
  for config, folder in zip(configs_, workdirs):
    model, _ = job.build_model(config, corpus.vocab.size)
    own = optim.with_average(optim.make(config.optim, stages), config.average)  # its numbers
    ts, lanes, rng = job.initial_run_state(model, own, batcher, config)
    states.append(ts)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    members.append(Member(config=config, workdir=folder, model=model, vocab=corpus.vocab,
                          lanes=lanes, rng=rng,
                          log=records.MetricsLog(folder / "metrics.jsonl"),
                          ckpts=checkpoint.Checkpoints(folder / "checkpoints", keep=keep),
                          best_ckpts=checkpoint.Checkpoints(folder / "best", keep=1)))
  return corpus, batcher, members, stack(states)

