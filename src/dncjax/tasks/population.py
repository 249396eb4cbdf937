"""Several seeds of one task setting trained together as ONE vmapped, jitted program.

`train_population(options, run_options, given, seeds=K)` trains seeds S .. S + K - 1 (S:
--seed) of the setting the flags `given` make. Each member is the `job.TaskJob` of its
seed in `<workdir>/seed<N>/`, with the initial parameters, evaluation sets, batches
(`job.batch_at`), curriculum, held-out choice (best/) and test sets of the single run of
that seed; states and batches are stacked on a leading member axis and one
jit(vmap(step)) trains them all (`training.population`), each as alone, to float
rounding. Each member writes what a single run writes, so tasks_report.py, `job.restore`
and a single --resume read it as any run; `<workdir>/population.json` names the seeds,
`<workdir>/log.txt` keeps the console.
On the one schedule (`loop.drive`), Ctrl-C or SIGTERM saves every member; --resume goes
on as the uninterrupted population would; a member whose loss, state or evaluation turns
NaN/Inf is frozen (and saved) at its last good state while the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
from typing import Callable

import jax
import numpy as np

from dncjax import configs, pytrees
from dncjax.tasks import config as config_lib, job as job_lib, metrics
from dncjax.tasks.config import Options
from dncjax.training import (checkpoint, compile_cache, console, loop, losses, population,
                             progress, records, run, signals, train, workdir)

POPULATION_FILE = "population.json"


def member_folder(folder: str | pathlib.Path, seed: int) -> pathlib.Path:
  """The folder of the member of seed `seed`: `<folder>/seed<seed>`."""
  return pathlib.Path(folder) / f"seed{seed}"


def seeds_of(given: configs.Given, run_options: run.RunOptions, count: int) -> list[int]:
  """The members' seeds: --seed (default 0) and the `count` - 1 after it; on a resume,
  those the population's population.json names (--seeds, and --seed if given, agree)."""
  folder = pathlib.Path(run_options.workdir)
  if not run_options.resume:
    first = given.value("seed", config_lib.RunConfig.seed)
    return list(range(first, first + count))
  path = folder / POPULATION_FILE
  try:
    seeds = [int(s) for s in json.loads(path.read_text())["seeds"]]
  except (OSError, ValueError, KeyError, TypeError):
    raise checkpoint.CheckpointError(f"--resume: {path} does not name a population's seeds "
                                     f"(was {folder} trained with --seeds?)") from None
  if len(seeds) != count:
    raise checkpoint.CheckpointError(f"--resume: {folder} holds the seeds {seeds}, not "
                                     f"--seeds {count}")
  if "seed" in given and given.value("seed") != seeds[0]:
    raise checkpoint.CheckpointError(f"--resume: the population in {folder} starts at seed "
                                     f"{seeds[0]}, not --seed {given.value('seed')}")
  return seeds


@dataclasses.dataclass(kw_only=True)
class Member(population.Member):
  """A member: its seed and its `job.TaskJob` (config, model, evaluation sets, plots)."""
  seed: int
  job: job_lib.TaskJob


class TaskSession(population.Session):
  """The `loop.Session` of a task population: per-member progress records and
  evaluations, keyed as a single run's (train_loss, eval_<metric>, ...)."""
  extra = ("bit_errors",)

  def __init__(self, members: list[Member], state, step_fn, eval_fn, sets: dict, out,
               clock: progress.Stopwatch, step: int):
    super().__init__(members, state, step_fn, out, clock, step)
    self.eval_fn, self.sets = eval_fn, sets
    self.config = members[0].job.config

  def draw(self):
    """Each member's batch at the population's iteration (`job.batch_at` of its seed and
    curriculum level), as `metrics.to_batch` makes it, stacked [P, B, ...] on the host."""
    dtype, seqs = self.config.model.dtype, [job_lib.batch_at(m.job.config, self.step,
                                                             m.job.level) for m in self.members]
    return [None] * len(seqs), population.stack_batches([pytrees.Batch(
        np.asarray(s.inputs, dtype), (np.asarray(s.targets, dtype), np.asarray(s.mask, dtype)),
        np.ones(len(s.inputs), bool)) for s in seqs])

  def name(self, m: Member) -> str:
    """How lines name member `m`: 'seed N'."""
    return f"seed {m.seed}"

  def prepare_evaluation(self) -> None:
    """Compiles the evaluation of each set's shape, before the clock starts."""
    for name, batch in self.sets.items():
      progress.compile_ahead(self.eval_fn, (self.state.params, batch),
                             f"the population's evaluation ({name})", self.out)

  def report(self, index: int, step: int, seconds: float, interval_s: float) -> None:
    """Each live member's record (as a single run's) and one line over the population."""
    size, rows = self.config.batch_size, []
    for m in self.alive():
      if m.interval_steps:
        row = {"train_loss": m.interval_loss / m.interval_steps,
               "train_bit_errors": m.interval_extra["bit_errors"] / m.interval_steps}
        m.log.write({"step": step, "time": seconds, **row,
                     "seq_per_s": size * m.interval_steps / max(interval_s, 1e-9)})
        rows.append(row)
    trained = sum(m.interval_steps for m in self.members) / max(interval_s, 1e-9)
    if rows:
      self.out("%2d: %.3f s, iter %d, %.4f loss, %.4f bit_errors (mean over %d members; best "
               "%.4f), %.2f seq/s, %.2f member-steps/s" % (
                   index, seconds, step, np.mean([r["train_loss"] for r in rows]),
                   np.mean([r["train_bit_errors"] for r in rows]), len(rows),
                   min(r["train_bit_errors"] for r in rows), size * trained, trained))
    self.clear_intervals()

  def evaluate(self, step: int, which: list | None = None, final: bool = False) -> None:
    """Each set's metrics of the members `which` (default: those alive), each one's choice
    and curriculum (`job.TaskJob`), logged as a single run's; NaN/Inf stops a member."""
    which = self.alive() if which is None else which
    if not which:
      return None
    values = {name: {k: np.asarray(v) for k, v in self.eval_fn(self.state.params, b).items()}
              for name, b in self.sets.items()}
    shown = []
    for m in which:
      i = self.members.index(m)
      mine = {f"{name}_{k}": float(v[i]) for name, got in values.items() for k, v in got.items()}
      m.job.choose(population.member(self.state, i), step, mine)  # with --select_length
      if m.job.curriculum is not None:  # its level's set, and the level's step up
        mine.update(m.job.judge(population.member(self.state, i), step))
      m.log.write({"step": step, "time": self.clock.seconds(), **mine})
      m.last_eval = step
      bad = loop.nonfinite(mine)
      if bad:
        self._stop(m, "nan")
        self.out(f"{self.name(m)}: {', '.join(bad)} became NaN/Inf at iter {step}: stopped")
      shown.append(mine)
    self.out(f"  eval at iter {step} over {len(shown)} members: " + ", ".join(
        f"{key} {_spread([s[key] for s in shown])}" for key in shown[0]
        if key.endswith("bit_errors")))
    return None

  def save_member(self, m: Member, ckpts: checkpoint.Checkpoints) -> None:
    """Member `m`'s checkpoint, as the single run of its seed writes it."""
    elapsed = m.stopped_at if m.stopped_at is not None else self.clock.seconds()
    meta = run.checkpoint_meta(m.job.kind, m.job.config, m.job.model.config, m.step, elapsed,
                               **m.job.meta(m.step))
    ckpts.save(m.step, {"train": population.member(self.state, self.members.index(m))}, meta)

  def summary(self, index: int, m: Member) -> dict:
    """Member `m`'s results.json: a single run's (`job.summarize`), and its place."""
    summary = m.job.summarise(_result(m, population.member(self.state, index)), m.log.read())
    return {**summary, "population": {"index": index, "seeds": [n.seed for n in self.members]}}


def _result(m: Member, state=None) -> loop.LoopResult:  # as run.run's, for the job
  return loop.LoopResult(m.step, state, m.stopped_by, m.stopped_at, m.last_saved)


def _spread(values: list[float]) -> str:
  """'mean (min..max)' of `values`."""
  return f"{np.mean(values):.4f} ({min(values):.4f}..{max(values):.4f})"


def train_population(options: Options, run_options: run.RunOptions,
                     given: configs.Given = configs.Given(), seeds: int = 2,
                     out: Callable[[str], None] = print) -> list[dict]:
  """Trains (or, with `run_options.resume`, resumes) `seeds` seeds of the setting `given`
  as one program in `run_options.workdir`; returns each member's results.json summary.
  Holds the locks of the workdir and of every member's folder while it runs."""
  given = config_lib.as_run_settings(given)
  folder = pathlib.Path(run_options.workdir)
  chosen = seeds_of(given, run_options, seeds)
  with contextlib.ExitStack() as held:
    held.enter_context(workdir.lock(folder, "population"))
    held.enter_context(console.kept(folder / "log.txt", enabled=out is print))
    for i, seed in enumerate(chosen):
      held.enter_context(workdir.lock(member_folder(folder, seed), f"population member {i}"))
    return _train(options, run_options, given, folder, chosen, out)


def _train(options, run_options, given, folder, seeds, out) -> list[dict]:
  compile_cache.enable(out)
  members, state, start, elapsed = _build(options, run_options, given, folder, seeds, out)
  first = members[0].job
  model, config, schedule = first.model, first.config, run_options.schedule
  out(f"population of {len(members)} seeds ({seeds[0]} .. {seeds[-1]}) of task {config.task}; "
      f"T = {config.task.time_steps}")
  out(f"model {config.model_name} {model.config}; "
      f"{sum(p.size for p in jax.tree.leaves(population.member(state.params, 0))):,} "
      f"parameters each; workdir {folder}")
  step_fn = population.vmap_step(train.make_train_step(
      model, first.optimizer, losses.sigmoid_cross_entropy, jit=False,
      metrics_fn=metrics.task_metrics))
  sets = {name: population.stack([m.job.sets[name] for m in members]) for name in first.sets}
  clock = progress.Stopwatch(elapsed)
  session = TaskSession(members, state, step_fn, jax.jit(jax.vmap(metrics.make_evaluate(model))),
                        sets, out, clock, start)
  bar = progress.ProgressBar(schedule, start, elapsed, run_options.progress_bar)
  try:
    step, reason, signum = loop.drive(schedule, session, start, clock, on_step=bar.update)
  finally:
    bar.close()
  summaries = session.close(reason)
  for m, summary in zip(members, summaries):  # plots and the member's last line
    m.job.close()
    m.job.finish(_result(m), summary, m.log.read())
  _conclude(members, summaries, step, clock.seconds(), options.target, out)
  if reason == "interrupted":  # every member saved
    out(f"checkpoints saved at iter {step}: continue with --resume --seeds {len(seeds)}")
    raise signals.Interrupted(signum) if signum else signals.Interrupted()
  return summaries


def _conclude(members, summaries, step, seconds, target, out) -> None:
  """The population's last line; TrainingError when every member diverged."""
  reasons = [s["stopped_by"] for s in summaries]
  ends = [s["eval_bit_errors"] for s in summaries if s.get("eval_bit_errors") is not None]
  out(f"population stopped at iter {step} after {seconds:.1f} s of training ("
      + ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons))) + ")"
      + (f"; eval_bit_errors {_spread(ends)}, {sum(e < target for e in ends)}/{len(ends)} "
         f"< {target}" if ends else ""))
  if all(r == "nan" for r in reasons):
    raise loop.TrainingError(f"training diverged (NaN/Inf) in every member (seeds "
                             f"{members[0].seed} .. {members[-1].seed}): try a lower --lr or "
                             f"--clip_norm")


def _build(options, run_options, given, folder, seeds, out):
  """(members, their TrainStates stacked [P, ...], the population's step, its seconds of
  training): each member resolved, built and (on a resume) restored as the single run
  of its seed is; a member whose latest checkpoint is behind the others stays stopped."""
  resume, defaults = run_options.resume, config_lib.defaults_for(given)
  resolved = []
  for seed in seeds:  # every config first: a refusal leaves every folder as it was
    job, mine = job_lib.TaskJob(options, out=_prefixed(out, seed)), member_folder(folder, seed)
    resolved.append((seed, job, mine,
                     *run.resolve(job, defaults, _with_seed(given, seed), mine, resume)))
  _check_alike([(mine, config) for _, _, mine, config, _, _ in resolved])
  if not resume:
    records.write_json(folder / POPULATION_FILE, {"seeds": list(seeds)})
  members, states = [], []
  for seed, job, mine, config, ckpts, meta in resolved:
    job.config, job.workdir, job.run_options = config, mine, run_options
    job.build(config, meta)
    items, step, done = job.fresh(), 0, 0.0
    if ckpts is not None:
      step, meta, items = ckpts.restore_latest(items, job.is_ours, job.what, say=job.out,
                                               set_aside=True)
      items, done = job.restored(items, meta), meta["elapsed"]
    else:
      ckpts = checkpoint.Checkpoints(mine / "checkpoints", keep=run_options.keep)
    job.open_selection(resume)
    members.append(Member(workdir=mine, log=None, ckpts=ckpts, seed=seed, job=job, step=step,
                          stopped_at=done, last_saved=step if resume else None))
    states.append(items["train"])
  start = max(m.step for m in members)
  elapsed = max(m.stopped_at for m in members if m.step == start)
  for m in members:
    m.log = run.open_log(m.job, m.workdir, m.step, resume)
    if m.step == start:
      m.stopped_at = None
    else:
      m.stopped_by = _behind(m)
      m.job.out(f"its latest checkpoint is iter {m.step}, behind the population's iter "
                f"{start}: it stays stopped ({m.stopped_by})")
  if resume:
    out(f"resumed {folder} at iter {start} ({elapsed:.1f} s trained)")
  return members, population.stack(states), start, elapsed


def _prefixed(out: Callable[[str], None], seed: int) -> Callable[[str], None]:
  return lambda line: out(f"seed {seed}: {line}")


def _with_seed(given: configs.Given, seed: int) -> configs.Given:
  """`given` with the seed `seed` (the member's) in place of any --seed."""
  return configs.Given(given.without("seed").settings
                       + (configs.Setting("seed", "--seed", seed, ("--seed",)),))


def _check_alike(members: list[tuple[pathlib.Path, config_lib.RunConfig]]) -> None:
  """CheckpointError unless the members' configs differ in their seed alone."""
  first_folder, first = members[0]
  for mine, config in members[1:]:
    if dataclasses.replace(config, seed=first.seed) != first:
      raise checkpoint.CheckpointError(
          f"--resume: {mine} holds a run of another setting than {first_folder} (a "
          f"population's members differ in their seed alone)")


def _behind(m: Member) -> str:
  """Why a member behind the others stopped: 'nan' if its results.json says so."""
  path = m.workdir / "results.json"
  summary = json.loads(path.read_text()) if path.exists() else {}
  return "nan" if (summary.get("stopped_by"), summary.get("step")) == ("nan", m.step) else "behind"
