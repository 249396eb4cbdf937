"""A population's members and the session that trains them on the one schedule
(`training.loop.drive`): per-member progress records, evaluations, checkpoints and stops;
and the stacking of members' pytrees on a leading member axis."""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dncjax import pytrees
from dncjax.charlm import batches, data, job
from dncjax.charlm.config import RunConfig
from dncjax.training import checkpoint, progress, records, run


def stack(trees):
  """Pytrees of equal structure stacked on a new leading axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member(tree, i: int):
  """Member i of a stacked pytree (the leading axis dropped)."""
  return jax.tree.map(lambda a: a[i], tree)


def stack_batches(batches: list[pytrees.Batch]) -> pytrees.Batch:
  """The members' batches stacked on a leading member axis: Batch [P, B, ...]."""
  return pytrees.Batch(*(np.stack(parts) for parts in zip(*batches)))


@dataclasses.dataclass
class Member:
  """Host-side bookkeeping of one member."""
  config: RunConfig
  workdir: pathlib.Path
  model: Any
  vocab: data.Vocab
  lanes: batches.LaneState
  rng: np.ndarray
  log: records.MetricsLog
  ckpts: checkpoint.Checkpoints
  best_ckpts: checkpoint.Checkpoints
  step: int = 0
  stopped_by: str | None = None
  stopped_at: float | None = None
  best: dict = dataclasses.field(default_factory=job.fresh_best)
  interval_loss: float = 0.0
  interval_steps: int = 0
  last_saved: int | None = None
  last_eval: int | None = None


class PopulationSession:
  """The `loop.Session` of a population: one vmapped step for every member, each member
  frozen at its last good state once its loss or state is NaN/Inf or `on_eval` stops it.
  Its times (records, checkpoints' `elapsed`) are seconds of training on `clock`."""

  def __init__(self, members: list[Member], state, batcher, step_fn, eval_fn, windows,
               chars: int, on_eval: Callable[[int, int, float], str | None] | None,
               out: Callable[[str], None], clock: progress.Stopwatch):
    self.members, self.state, self.batcher = members, state, batcher
    self.step_fn, self.eval_fn, self.windows, self.chars = step_fn, eval_fn, windows, chars
    self.n_val = float(windows.targets[1].sum()) if windows is not None else 0.0
    self.on_eval, self.out, self.clock, self.step = on_eval, out, clock, 0

  def alive(self) -> list[Member]:
    """The members still training (not stopped)."""
    return [m for m in self.members if m.stopped_by is None]

  def _stop(self, m: Member, reason: str) -> None:
    m.stopped_by, m.stopped_at = reason, self.clock.seconds()

  def prepare(self) -> None:
    """Compiles the vmapped step (for the first batches, which `train` draws again) and
    the evaluation, before the clock starts."""
    batch = stack_batches([self.batcher.next(m.lanes)[1] for m in self.members])
    alive = np.array([m.stopped_by is None for m in self.members])
    progress.compile_ahead(self.step_fn, (self.state, batch, alive),
                           "the population's training step", self.out)
    if self.windows is not None:
      progress.compile_ahead(self.eval_fn, (self.state.params, self.windows),
                             "the population's evaluation", self.out)

  def train(self) -> str | None:
    """One vmapped update of every live member; a member whose loss or state turns NaN/Inf
    keeps its last good state and stops. None: the run goes on (see `stopped`)."""
    moved = [self.batcher.next(m.lanes) for m in self.members]
    mask = np.array([m.stopped_by is None for m in self.members])
    self.state, metrics = self.step_fn(self.state, stack_batches([b for _, b in moved]), mask)
    losses, finite = np.asarray(metrics["loss"]), np.asarray(metrics["finite"])
    self.step += 1
    for i, m in enumerate(self.members):
      if m.stopped_by is not None:
        continue
      if not finite[i]:
        self._stop(m, "nan")
        what = (f"loss became {losses[i]}" if not math.isfinite(losses[i])
                else "parameters or optimiser state became NaN/Inf")
        self.out(f"member {i}: {what} at iter {self.step}: frozen at iter {m.step}")
        continue
      m.lanes, m.step = moved[i][0], self.step
      m.interval_loss, m.interval_steps = m.interval_loss + float(losses[i]), m.interval_steps + 1
    return None

  def stopped(self) -> str | None:
    """'stopped' once no member is alive, else None."""
    return None if self.alive() else "stopped"

  def report(self, index: int, step: int, seconds: float, interval_s: float) -> None:
    """Each live member's train_bpc record, and the progress line over the population."""
    rate = self.chars / max(interval_s, 1e-9)  # characters per second of one member's steps
    bpcs = []
    for m in self.alive():
      bpc = m.interval_loss / (math.log(2) * self.chars * m.interval_steps)
      m.log.write({"step": step, "time": seconds, "train_bpc": bpc,
                   "char_per_s": rate * m.interval_steps})
      bpcs.append(bpc)
    trained = sum(m.interval_steps for m in self.members)
    if bpcs:
      self.out("%2d: %.3f s, iter %d, %.4f BPC best / %.4f mean over %d members, %.2f char/s, "
               "%.2f member-steps/s" % (index, seconds, step, min(bpcs), float(np.mean(bpcs)),
                                        len(bpcs), rate * trained, rate * trained / self.chars))
    for m in self.members:
      m.interval_loss, m.interval_steps = 0.0, 0

  def evaluate(self, step: int, which: list[Member] | None = None, final: bool = False) -> None:
    """Dev BPC, on the development split, of the members `which` (default: those alive)."""
    which = self.alive() if which is None else which
    if self.windows is None or not which:
      return None
    bpcs = np.asarray(self.eval_fn(self.state.params, self.windows)) / (math.log(2) * self.n_val)
    shown = {}
    for m in which:
      i = self.members.index(m)
      shown[i] = bpc = float(bpcs[i])
      m.log.write({"step": step, "time": self.clock.seconds(), "dev_bpc": bpc})
      m.last_eval = step
      if not math.isfinite(bpc):
        self._stop(m, "nan")
        self.out(f"member {i}: dev_bpc became {bpc} at iter {step}: stopped")
        continue
      if bpc < m.best["dev_bpc"]:
        m.best = {"dev_bpc": bpc, "step": step}
        self._save(m, m.best_ckpts)
      reason = self.on_eval(i, step, bpc) if self.on_eval is not None else None
      if reason and not final:  # as a single run: the final evaluation stops nothing
        self._stop(m, str(reason))
    best = min(shown, key=shown.get)
    self.out(f"  eval at iter {step}: dev_bpc best {shown[best]:.4f} (member {best}), mean "
             f"{np.mean(list(shown.values())):.4f} over {len(shown)} members")
    return None

  def _save(self, m: Member, ckpts: checkpoint.Checkpoints) -> None:
    elapsed = m.stopped_at if m.stopped_at is not None else self.clock.seconds()
    meta = run.checkpoint_meta(job.KIND, m.config, m.model.config, m.step, elapsed,
                               **job.meta_extra(m.vocab, m.lanes, m.best))
    ckpts.save(m.step, {"train": member(self.state, self.members.index(m)), "rng": m.rng}, meta)

  def save(self, step: int) -> bool:
    """Checkpoints each live member; True (a NaN member is frozen, never saved)."""
    for m in self.alive():
      self._save(m, m.ckpts)
      m.last_saved = m.step
    return True

  def finish(self, step: int, reason: str) -> str:
    """The final evaluation of each live member not evaluated at its last step; returns
    `reason` (the final saves and results.json are `close`'s)."""
    self.evaluate(step, [m for m in self.alive() if m.last_eval != m.step and m.step > 0],
                  final=True)
    return reason

  def close(self, reason: str) -> list[dict]:
    """Each member's last save (a diverged member: its last good state) and results.json."""
    summaries, end = [], self.clock.seconds()
    for i, m in enumerate(self.members):
      if m.stopped_by is None:
        m.stopped_by, m.stopped_at = reason, end
      if m.last_saved != m.step and m.step > 0:
        self._save(m, m.ckpts)
      m.ckpts.close()
      m.best_ckpts.close()
      summary = {"step": m.step, "elapsed_s": m.stopped_at, "stopped_by": m.stopped_by,
                 "best_dev_bpc": m.best["dev_bpc"], "best_step": m.best["step"],
                 "population": {"index": i, "size": len(self.members)}}
      train_records = [r for r in m.log.read() if "train_bpc" in r]
      if train_records:
        summary["train_bpc"] = train_records[-1]["train_bpc"]
      records.write_json(m.workdir / "results.json", summary)
      summaries.append(summary)
    return summaries
