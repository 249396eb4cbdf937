"""A char-LM population's members and the session that trains them on the one schedule
(`training.loop.drive`): per-member progress records, dev BPC, best checkpoints and
stops, on the population skeleton of `training.population` (which also stacks the
members' pytrees on a leading member axis)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from dncjax.charlm import batches, data, job
from dncjax.charlm.config import RunConfig
from dncjax.training import checkpoint, optim, population, progress, run
from dncjax.training.population import member, stack, stack_batches

__all__ = ["Member", "PopulationSession", "member", "stack", "stack_batches"]


@dataclasses.dataclass(kw_only=True)
class Member(population.Member):
  """Host-side bookkeeping of one member: its config, model, data lanes and sampling key,
  best checkpoint and best dev BPC (and `population.Member`'s)."""
  config: RunConfig
  model: Any
  vocab: data.Vocab
  lanes: batches.LaneState
  rng: np.ndarray
  best_ckpts: checkpoint.Checkpoints
  best: dict = dataclasses.field(default_factory=job.fresh_best)

  def close(self) -> None:
    """Waits for the member's checkpoints (latest and best) and closes them."""
    self.ckpts.close()
    self.best_ckpts.close()


class PopulationSession(population.Session):
  """The `loop.Session` of a char-LM population (`population.Session`): each member
  frozen at its last good state once its loss or state is NaN/Inf or `on_eval` stops it.
  Its times (records, checkpoints' `elapsed`) are seconds of training on `clock`."""

  def __init__(self, members: list[Member], state, batcher, step_fn, eval_fn, windows,
               chars: int, on_eval: Callable[[int, int, float], str | None] | None,
               out: Callable[[str], None], clock: progress.Stopwatch):
    super().__init__(members, state, step_fn, out, clock)
    self.batcher, self.eval_fn, self.windows, self.chars = batcher, eval_fn, windows, chars
    self.n_val = float(windows.targets[1].sum()) if windows is not None else 0.0
    self.on_eval = on_eval

  def draw(self):
    """Each member's next lanes and window (the lanes move only if it trains on it)."""
    moved = [self.batcher.next(m.lanes) for m in self.members]
    return [lanes for lanes, _ in moved], stack_batches([b for _, b in moved])

  def take(self, m: Member, drawn) -> None:
    """The member trained on its window: its lanes move on."""
    m.lanes = drawn

  def prepare_evaluation(self) -> None:
    """Compiles the population's evaluation, before the clock starts."""
    if self.windows is not None:
      progress.compile_ahead(self.eval_fn, (self.state.params, self.windows),
                             "the population's evaluation", self.out)

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
    self.clear_intervals()

  def evaluate(self, step: int, which: list[Member] | None = None, final: bool = False) -> None:
    """Dev BPC, on the development split, of the members `which` (default: those alive)."""
    which = self.alive() if which is None else which
    if self.windows is None or not which:
      return None
    params = optim.evaluated(self.state.params, self.state.opt_state)  # --average's
    bpcs = np.asarray(self.eval_fn(params, self.windows)) / (math.log(2) * self.n_val)
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
        self.save_member(m, m.best_ckpts, evaluated=True)
      reason = self.on_eval(i, step, bpc) if self.on_eval is not None else None
      if reason and not final:  # as a single run: the final evaluation stops nothing
        self._stop(m, str(reason))
    best = min(shown, key=shown.get)
    self.out(f"  eval at iter {step}: dev_bpc best {shown[best]:.4f} (member {best}), mean "
             f"{np.mean(list(shown.values())):.4f} over {len(shown)} members")
    return None

  def save_member(self, m: Member, ckpts: checkpoint.Checkpoints,
                  evaluated: bool = False) -> None:
    """Member `m`'s checkpoint as a single run's: its state (`evaluated`: with the
    parameters evaluated, as best/ keeps them), sampling key and metadata."""
    elapsed = m.stopped_at if m.stopped_at is not None else self.clock.seconds()
    meta = run.checkpoint_meta(job.KIND, m.config, m.model.config, m.step, elapsed,
                               **job.meta_extra(m.vocab, m.lanes, m.best))
    state = member(self.state, self.members.index(m))
    ckpts.save(m.step, {"train": job.evaluated(state) if evaluated else state, "rng": m.rng},
               meta)

  def summary(self, index: int, m: Member) -> dict:
    """Member `m`'s results.json: where and why it stopped, its best dev BPC."""
    summary = {"step": m.step, "elapsed_s": m.stopped_at, "stopped_by": m.stopped_by,
               "best_dev_bpc": m.best["dev_bpc"], "best_step": m.best["step"],
               "population": {"index": index, "size": len(self.members)}}
    train_records = [r for r in m.log.read() if "train_bpc" in r]
    if train_records:
      summary["train_bpc"] = train_records[-1]["train_bpc"]
    return summary
