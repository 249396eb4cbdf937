"""Vmapped populations: P char-LM trials trained together as ONE compiled program.

Trials (`charlm.RunConfig`) that differ only in values that leave every array shape alone
(`VMAPPABLE`: the optimiser's hyperparameters, the seed and the model's init_scale) are
stacked on a leading member axis P: params, optimiser state, recurrent state and dropout
keys are [P, ...] arrays, the hyperparameters [P] arrays, and `jax.vmap` of the training
step runs under one `jax.jit`. Each member sees exactly what it would see alone (its own
init, data lanes, dropout and sampling keys, all drawn from its seed), so it trains as
`charlm.train_and_evaluate` would train it, to float32 rounding.

Absent clipping is clipping at +inf, which is the identity, so members with and without
clipping (or weight decay 0) share the program. A member whose loss becomes NaN/Inf is
frozen at its last good state while the others go on. `train_population` leaves in each
member's workdir what `experiments/alice.py` leaves (checkpoints/, best/, metrics.jsonl,
config.json, results.json, metrics.png), so `--resume`, `sample.py` and
`charlm.restore_for_sampling` work on a member as on any run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dncjax import pytrees
from dncjax import models
from dncjax.charlm import job as charlm
from dncjax.training import checkpoint
from dncjax.charlm import data
from dncjax.training import loop
from dncjax.training import plots
from dncjax.training import train
from dncjax.training import workdir as workdir_lock

OPTIMIZER_FIELDS = ("learning_rate", "eps", "clip_norm", "clip_value", "weight_decay")
VMAPPABLE = OPTIMIZER_FIELDS + ("seed", "init_scale")  # init_scale lives in RunConfig.hyper


class Hyper(NamedTuple):
  """The optimiser hyperparameters as arrays: [P] for a population, [] inside the vmap.
  A clip of +inf is no clipping."""
  learning_rate: jax.Array
  eps: jax.Array
  clip_norm: jax.Array
  clip_value: jax.Array
  weight_decay: jax.Array


def check_population(configs: list[charlm.RunConfig]) -> None:
  """ValueError naming the first field (other than VMAPPABLE) in which members differ."""
  if not configs:
    raise ValueError("a population needs at least one member")
  first = configs[0]
  for i, config in enumerate(configs[1:], 1):
    for field in dataclasses.fields(charlm.RunConfig):
      name = field.name
      if name in VMAPPABLE or name == "hyper":
        continue
      if getattr(config, name) != getattr(first, name):
        raise _clash(i, name, getattr(config, name), getattr(first, name))
    mine, theirs = _model_fields(config), _model_fields(first)
    for name in mine:
      if mine[name] != theirs[name]:
        raise _clash(i, name, mine[name], theirs[name])


def _model_fields(config: charlm.RunConfig) -> dict:
  """The model hyperparameters of `config` (defaults filled in) that fix array shapes."""
  resolved = models.make_config(config.model, 1, 1, **dict(config.hyper))
  return {f.name: getattr(resolved, f.name) for f in dataclasses.fields(resolved)
          if f.name not in VMAPPABLE + ("input_size", "output_size")}


def _clash(i: int, name: str, value, first) -> ValueError:
  return ValueError(f"population members may differ only in {', '.join(VMAPPABLE)}; "
                    f"member {i} has {name}={value!r} but member 0 has {name}={first!r}")


def hyper_arrays(configs: list[charlm.RunConfig], dtype) -> Hyper:
  """Each member's optimiser hyperparameters stacked [P] (None clips become +inf)."""
  opts = [c.optimizer() for c in configs]  # validates each member's values
  column = lambda name: jnp.asarray(
      [math.inf if getattr(o, name) is None else getattr(o, name) for o in opts], dtype)
  return Hyper(*(column(name) for name in OPTIMIZER_FIELDS))


def make_optimizer(hyper: Hyper) -> optax.GradientTransformation:
  """train.make_optimizer's chain with every stage present and array hyperparameters:
  clip -> clip_by_global_norm -> add_decayed_weights -> seed Adagrad."""
  return optax.chain(
      optax.clip(hyper.clip_value),
      optax.clip_by_global_norm(hyper.clip_norm),
      optax.add_decayed_weights(hyper.weight_decay),
      optax.adagrad(hyper.learning_rate, initial_accumulator_value=0.0, eps=hyper.eps))


def opt_treedef(params) -> jax.tree_util.PyTreeDef:
  """The tree structure of `make_optimizer`'s state for `params`."""
  one = Hyper(*([1.0] * len(OPTIMIZER_FIELDS)))
  return jax.tree.structure(make_optimizer(one).init(params))


def convert_opt_state(opt_state, target: jax.tree_util.PyTreeDef):
  """`opt_state`'s leaves in the tree structure `target` (the population's chain or a
  member's own); the optional stages hold no arrays, so both chains carry the same leaves."""
  leaves = jax.tree.leaves(opt_state)
  if len(leaves) != target.num_leaves:
    raise ValueError(f"optimiser states do not match: {len(leaves)} leaves, "
                     f"expected {target.num_leaves}")
  return jax.tree.unflatten(target, leaves)


def make_step(model, dropout: float = 0.0, weight_drop: float = 0.0):
  """jit(vmap(step)): (Hyper [P], TrainState [P, ...], Batch [P, B, S], alive [P]) ->
  (TrainState, {'loss' [P], 'grad_norm' [P], 'finite' [P]}). A member that is not alive,
  or whose loss or updated state is not finite, keeps its state unchanged."""

  def member_step(hyper, state, batch, alive):
    step = train.make_train_step(model, make_optimizer(hyper), jit=False, dropout=dropout,
                                 weight_drop=weight_drop)
    new, metrics = step(state, batch)
    finite = jnp.isfinite(metrics["loss"]) & checkpoint.tree_finite(new)
    ok = alive & finite
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state), {**metrics,
                                                                        "finite": finite}

  return jax.jit(jax.vmap(member_step))


def make_eval(model):
  """jit(vmap(charlm's static evaluation)): (params [P, ...], windows) -> summed loss [P]."""
  return jax.jit(jax.vmap(charlm.make_static_eval(model), in_axes=(0, None)))


def stack(trees):
  """Pytrees of equal structure stacked on a new leading axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member(tree, i: int):
  """Member i of a stacked pytree (the leading axis dropped)."""
  return jax.tree.map(lambda a: a[i], tree)


def stack_batches(batches: list[pytrees.Batch]) -> pytrees.Batch:
  return pytrees.Batch(*(np.stack(parts) for parts in zip(*batches)))


@dataclasses.dataclass
class _Member:
  """Host-side bookkeeping of one member."""
  config: charlm.RunConfig
  workdir: pathlib.Path
  setup: charlm.Setup
  opt_treedef: jax.tree_util.PyTreeDef  # of its own train.make_optimizer state
  lanes: data.LaneState
  rng: np.ndarray
  log: loop.MetricsLog
  ckpts: checkpoint.Checkpoints
  best_ckpts: checkpoint.Checkpoints
  step: int = 0
  stopped_by: str | None = None
  stopped_at: float | None = None
  best: dict = dataclasses.field(default_factory=lambda: {"val_bpc": math.inf, "step": None})
  interval_loss: float = 0.0
  interval_steps: int = 0
  last_saved: int | None = None
  last_eval: int | None = None


def train_population(configs: list[charlm.RunConfig], workdirs: list, steps: int | None = None,
                     timelimit: float | None = None, eval_every: int = 500,
                     on_eval: Callable[[int, int, float], str | None] | None = None,
                     out: Callable[[str], None] = print, *, report_interval: int = 20,
                     checkpoint_every: int = 0, keep: int = 3, eval_lanes: int = 1,
                     plot: bool = True) -> list[dict]:
  """Trains the members together; returns each member's results.json summary.

  Every `eval_every` steps and at the end each member's validation BPC is computed and
  `on_eval(member_index, step, val_bpc)` called (a string it returns stops that member
  with that reason, e.g. a pruner's 'pruned'; members stopped or diverged are no longer
  reported). The run ends at `steps`, at `timelimit` seconds, or when no member trains."""
  workdirs = [pathlib.Path(w) for w in workdirs]
  if len(workdirs) != len(configs):
    raise ValueError(f"{len(configs)} configs but {len(workdirs)} workdirs")
  if len({w.resolve() for w in workdirs}) != len(workdirs):
    raise ValueError("population members need distinct workdirs")
  check_population(configs)
  schedule = loop.Schedule(steps, timelimit, report_interval, eval_every, checkpoint_every)
  with contextlib.ExitStack() as held:  # each member's workdir locked, as a single run's
    for workdir in workdirs:
      held.enter_context(workdir_lock.lock(workdir))
    return _train(configs, workdirs, schedule, on_eval, out, keep, eval_lanes, plot)


def _train(configs, workdirs, schedule, on_eval, out, keep, eval_lanes, plot) -> list[dict]:
  configs = [charlm.resolve_config({}, c, w, False)[0] for c, w in zip(configs, workdirs)]
  corpus, batcher, members, state = _build(configs, workdirs, keep)
  first = configs[0]
  hyper = hyper_arrays(configs, members[0].setup.model.config.dtype)
  model = members[0].setup.model  # init_scale only matters to init
  P, chars = len(members), first.batch_size * first.seq_length
  out(f"population of {P} {first.model} members {model.config}; "
      f"{sum(p.size for p in jax.tree.leaves(state.params)) // P:,} parameters each; "
      f"data {corpus.path}")
  step_fn, eval_fn = make_step(model, first.dropout, first.weight_drop), make_eval(model)
  windows = charlm.stack_validation(corpus.val_ids, first.seq_length, eval_lanes)
  n_val = float(windows.targets[1].sum()) if windows is not None else 0.0
  begin = time.monotonic()
  alive = lambda: [m for m in members if m.stopped_by is None]

  def save(m: _Member, i: int, ckpts: checkpoint.Checkpoints) -> None:
    ts = member(state, i)
    ts = ts._replace(opt_state=convert_opt_state(ts.opt_state, m.opt_treedef))
    elapsed = m.stopped_at if m.stopped_at is not None else time.monotonic() - begin
    meta = charlm.checkpoint_meta(m.config, m.setup, m.step, m.lanes, m.best, elapsed)
    ckpts.save(m.step, {"train": ts, "rng": m.rng}, meta)

  def evaluate(at_step: int, which: list[_Member], final: bool = False) -> None:
    if windows is None or not which:
      return
    bpcs = np.asarray(eval_fn(state.params, windows)) / (math.log(2) * n_val)
    for m in which:
      i = members.index(m)
      bpc = float(bpcs[i])
      m.log.write({"step": at_step, "time": time.monotonic() - begin, "val_bpc": bpc})
      m.last_eval = at_step
      if not math.isfinite(bpc):
        m.stopped_by, m.stopped_at = "nan", time.monotonic() - begin
        out(f"member {i}: val_bpc became {bpc} at iter {at_step}: stopped")
        continue
      if bpc < m.best["val_bpc"]:
        m.best = {"val_bpc": bpc, "step": at_step}
        save(m, i, m.best_ckpts)
      reason = on_eval(i, at_step, bpc) if on_eval is not None else None
      if reason and not final:  # as loop.run: the final evaluation stops nothing
        m.stopped_by, m.stopped_at = str(reason), time.monotonic() - begin
    shown = {members.index(m): bpcs[members.index(m)] for m in which}
    best = min(shown, key=shown.get)
    out(f"  eval at iter {at_step}: val_bpc best {shown[best]:.4f} (member {best}), mean "
        f"{np.mean(list(shown.values())):.4f} over {len(shown)} members")

  step, reports, interval_start = 0, 0, time.monotonic()
  while True:
    reason = schedule.spent(step, time.monotonic() - begin)
    if reason:
      break
    if not alive():
      reason = "stopped"
      break
    moved = [batcher.next(m.lanes) for m in members]
    mask = np.array([m.stopped_by is None for m in members])
    state, metrics = step_fn(hyper, state, stack_batches([b for _, b in moved]), mask)
    losses, finite = np.asarray(metrics["loss"]), np.asarray(metrics["finite"])
    step += 1
    for i, m in enumerate(members):
      if m.stopped_by is not None:
        continue
      if not finite[i]:
        m.stopped_by, m.stopped_at = "nan", time.monotonic() - begin
        what = (f"loss became {losses[i]}" if not math.isfinite(losses[i])
                else "parameters or optimiser state became NaN/Inf")
        out(f"member {i}: {what} at iter {step}: frozen at iter {m.step}")
        continue
      m.lanes, m.step = moved[i][0], step
      m.interval_loss, m.interval_steps = m.interval_loss + float(losses[i]), m.interval_steps + 1
    if step % schedule.report_interval == 0:
      now = time.monotonic()
      _report(members, reports, step, now - begin, now - interval_start, chars, out)
      reports, interval_start = reports + 1, now
    paused = time.monotonic()  # evaluation and saving do not count as training time
    if schedule.eval_every and step % schedule.eval_every == 0:
      evaluate(step, alive())
    if schedule.checkpoint_every and step % schedule.checkpoint_every == 0:
      for m in alive():
        save(m, members.index(m), m.ckpts)
        m.last_saved = m.step
    interval_start += time.monotonic() - paused
  evaluate(step, [m for m in alive() if m.last_eval != m.step and m.step > 0], final=True)
  summaries, end = [], time.monotonic() - begin
  for i, m in enumerate(members):
    if m.stopped_by is None:
      m.stopped_by, m.stopped_at = reason, end
    if m.last_saved != m.step and m.step > 0:
      save(m, i, m.ckpts)  # a diverged member: its last good state
    summaries.append(_finish(m, i, P))
  reasons = [s["stopped_by"] for s in summaries]
  best = min(range(P), key=lambda i: summaries[i]["best_val_bpc"])
  out(f"population stopped at iter {step} after {end:.1f} s ("
      + ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons)))
      + f"); best validation {summaries[best]['best_val_bpc']:.4f} BPC: member {best} at iter "
      f"{summaries[best]['best_step']}, {members[best].workdir}")
  if plot:
    for m in members:
      plots.plot_metrics(m.log.read(), m.workdir / "metrics.png",
                         title=f"{m.config.model} on {pathlib.Path(corpus.path).name}")
  return summaries


def _report(members: list[_Member], report: int, step: int, time_s: float, interval_s: float,
            chars: int, out) -> None:
  """Each live member's train_bpc record, and the progress line over the population."""
  rate = chars / max(interval_s, 1e-9)  # characters per second of one member's steps
  bpcs = []
  for m in members:
    if m.stopped_by is None:
      bpc = m.interval_loss / (math.log(2) * chars * m.interval_steps)
      m.log.write({"step": step, "time": time_s, "train_bpc": bpc,
                   "char_per_s": rate * m.interval_steps})
      bpcs.append(bpc)
  trained = sum(m.interval_steps for m in members)
  if bpcs:
    out("%2d: %.3f s, iter %d, %.4f BPC best / %.4f mean over %d members, %.2f char/s, "
        "%.2f member-steps/s" % (report, time_s, step, min(bpcs), float(np.mean(bpcs)),
                                 len(bpcs), rate * trained, rate * trained / chars))
  for m in members:
    m.interval_loss, m.interval_steps = 0.0, 0


def _build(configs: list[charlm.RunConfig], workdirs: list[pathlib.Path], keep: int):
  """(corpus, batcher, members, stacked TrainState [P, ...]) of a fresh population: each
  member's init, lanes and keys are those charlm.initial_run_state gives it alone."""
  first = configs[0]
  corpus = data.load_corpus(first.data, first.val_fraction, first.seq_length)
  batcher = data.lane_batcher(corpus.train_ids, first.batch_size, first.seq_length,
                              first.overlap)
  members, states = [], []
  for config, workdir in zip(configs, workdirs):
    setup = charlm.Setup(corpus, *charlm.make_model(config, corpus.vocab.size), batcher)
    ts, lanes, rng = charlm.initial_run_state(setup, config)
    states.append(ts._replace(opt_state=convert_opt_state(ts.opt_state,
                                                          opt_treedef(ts.params))))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    members.append(_Member(config, workdir, setup, jax.tree.structure(ts.opt_state), lanes,
                           rng, loop.MetricsLog(workdir / "metrics.jsonl"),
                           checkpoint.Checkpoints(workdir / "checkpoints", keep=keep),
                           checkpoint.Checkpoints(workdir / "best", keep=1)))
  return corpus, batcher, members, stack(states)


def _finish(m: _Member, index: int, size: int) -> dict:
  """Closes a member's checkpoints and writes its results.json; returns the summary."""
  m.ckpts.close()
  m.best_ckpts.close()
  summary = {"step": m.step, "elapsed_s": m.stopped_at, "stopped_by": m.stopped_by,
             "best_val_bpc": m.best["val_bpc"], "best_step": m.best["step"],
             "population": {"index": index, "size": size}}
  train_records = [r for r in m.log.read() if "train_bpc" in r]
  if train_records:
    summary["train_bpc"] = train_records[-1]["train_bpc"]
  loop.write_json(m.workdir / "results.json", summary)
  return summary
