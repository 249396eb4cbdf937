"""The one training schedule: progress, evaluation, checkpoints, budgets and stops.

`drive(schedule, session, ...)` is the schedule. It asks a session to compile its
step, then for one update at a time and, on the schedule's steps, for a progress report,
an evaluation and a checkpoint; it stops at the step budget, at the time limit, on Ctrl-C
or SIGTERM (after saving), when a session's evaluation asks it to (a sweep's pruner), or
when the session itself says so. At the end it asks for the final evaluation and
checkpoint. The single run (`Trainer`, below) and a vmapped population
(`dncjax.sweeps.population`) are its two sessions.

Time is training time: a `Stopwatch` runs only while the session trains, so the time
limit, the T of the progress line, its rate and a checkpoint's `elapsed` leave out
compilation (the step is compiled ahead of time, before the clock starts), evaluation,
sampling and saving; a resumed run goes on from the seconds its checkpoint had trained.

`run(...)` trains one model with a jitted `step_fn(state, batch) -> (state, {'loss'})`
and prints the seed's progress line every `report_interval` steps

  I: T s, iter N, X BPC, Y char/s

(I the report number, T seconds of training since the run began (resumes included), X
the mean BPC over the interval, Y the characters trained on per second of training). On
a terminal a tqdm bar runs below it: seconds of training out of the time limit, with the
time left, under `--timelimit`; otherwise iterations out of `--steps`. It stops WITHOUT
saving the bad state when the loss, an evaluation metric or the state about to be saved
(parameters, optimiser state) is NaN/Inf.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from typing import Any, Callable, Protocol

from dncjax.training import finite
from dncjax.training.config import Schedule  # noqa: F401  (the schedule's home)
from dncjax.training.progress import ProgressBar, Stopwatch, compile_ahead
from dncjax.training.records import MetricsLog
from dncjax.training.signals import Interrupted, StopSignals


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. a NaN loss): one-line message, non-zero exit."""


class Session(Protocol):
  """What `drive` asks of a run; a returned reason ('nan', 'pruned', ...) stops it."""

  def prepare(self) -> None:
    """Compiles the step (the clock does not run yet)."""
  def train(self) -> str | None:
    """One update (the clock runs); a reason to stop (e.g. 'nan') or None."""
  def report(self, index: int, step: int, seconds: float, interval_s: float) -> None:
    """Report `index` at `step`: `seconds` of training, `interval_s` since the last one."""
  def evaluate(self, step: int) -> str | None:
    """Evaluates at `step`; a reason to stop (e.g. 'nan', 'pruned') or None."""
  def save(self, step: int) -> bool:
    """Checkpoints at `step`; False: the state was not fit to save (the run stops: 'nan')."""
  def stopped(self) -> str | None:
    """A reason to stop before the next step, or None."""
  def finish(self, step: int, reason: str) -> str:
    """The final evaluation and save at `step`; the reason the run stopped ('nan' if they
    failed, else `reason`)."""


def drive(schedule: Schedule, session: Session, start_step: int, clock: Stopwatch,
          on_step: Callable[[int, float], Any] = lambda step, seconds: None
          ) -> tuple[int, str, int | None]:
  """Runs `session` on `schedule` from `start_step`, the time limit counted on `clock`,
  which runs only while the session trains; `on_step(step, seconds)` follows each step.
  Returns (step, reason, the signal that stopped it or None)."""
  step, stop, reports = start_step, None, start_step // schedule.report_interval
  interval_start, prepared = clock.seconds(), False
  with StopSignals() as signals:
    while True:
      reason = stop or schedule.spent(step, clock.seconds()) or session.stopped()
      if reason:
        break
      if signals.requested:
        reason = "interrupted"
        break
      if not prepared:  # compiled before the first step, then the budgets are seen again
        session.prepare()
        prepared = True
        continue
      clock.start()
      try:
        reason = session.train()
      finally:
        clock.stop()
      if reason:
        break
      step += 1
      on_step(step, clock.seconds())
      if step % schedule.report_interval == 0:
        now = clock.seconds()
        session.report(reports, step, now, now - interval_start)
        reports, interval_start = reports + 1, now
      if schedule.eval_every and step % schedule.eval_every == 0:
        stop = session.evaluate(step)
      if stop != "nan" and schedule.checkpoint_every and step % schedule.checkpoint_every == 0:
        stop = stop if session.save(step) else "nan"
    if reason != "nan" and step > start_step:
      reason = session.finish(step, reason)
  return step, reason, signals.signum


@dataclasses.dataclass
class LoopResult:
  """Where and why `run` stopped: the step and state there, the reason, the seconds of
  training, the last step checkpointed, what went wrong (for 'nan') and the signal."""
  step: int
  state: Any
  reason: str       # 'steps', 'timelimit', 'interrupted', 'nan' or a reason from on_eval
  elapsed: float    # seconds of training, resumes included (see Stopwatch)
  last_saved: int | None
  detail: str = ""  # what went wrong, for reason 'nan'
  signum: int | None = None  # the signal that interrupted the run


def nonfinite(metrics: dict) -> list[str]:
  """The names of the float metrics that are NaN or Inf."""
  return [k for k, v in metrics.items()
          if isinstance(v, float) and not math.isfinite(v)]


class Trainer:
  """The session of one model: its state, interval means, evaluations and saves."""

  def __init__(self, step_fn, state, next_batch, log: MetricsLog, save, evaluate, on_eval,
               items_per_step: int, unit: str, bpc_scale: float, metric: str,
               extra: tuple[str, ...], out: Callable[[str], None], clock: Stopwatch,
               start_step: int = 0):
    self.step_fn, self.state, self.next_batch, self.log = step_fn, state, next_batch, log
    self._save, self._evaluate, self.on_eval = save, evaluate, on_eval
    self.items, self.unit, self.scale, self.metric, self.extra = (items_per_step, unit,
                                                                  bpc_scale, metric, extra)
    self.out, self.clock = out, clock
    self.step, self.last_saved, self.last_eval = start_step, None, None
    self.pending = None  # the first batch, drawn to compile the step
    self.diverged: list[str] = []  # what became NaN/Inf, once it did
    self._clear()

  def _clear(self):
    self.interval_loss, self.interval_steps = 0.0, 0
    self.interval_extra = dict.fromkeys(self.extra, 0.0)

  def prepare(self) -> None:
    """Draws the first batch (trained on first) and compiles the step for it."""
    self.pending = self.next_batch()
    compile_ahead(self.step_fn, (self.state, self.pending), "the training step", self.out)

  def train(self) -> str | None:
    """One update on the next batch, added to the interval's means; 'nan' (the state kept)
    if the loss is NaN/Inf."""
    batch, self.pending = self.pending if self.pending is not None else self.next_batch(), None
    new_state, metrics = self.step_fn(self.state, batch)
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
      self.diverged.append(f"the loss became {loss} at iter {self.step + 1}")
      return "nan"
    self.state, self.step = new_state, self.step + 1
    self.interval_loss, self.interval_steps = self.interval_loss + loss, self.interval_steps + 1
    for name in self.extra:
      self.interval_extra[name] += float(metrics[name])
    return None

  def report(self, index: int, step: int, seconds: float, interval_s: float) -> None:
    """Prints and logs the progress line: the interval's mean metric(s) and rate."""
    value = self.interval_loss / self.interval_steps * self.scale
    rate = self.items * self.interval_steps / max(interval_s, 1e-9)
    means = {name: total / self.interval_steps for name, total in self.interval_extra.items()}
    shown = "".join(f", {v:.4f} {name}" for name, v in means.items())
    self.out("%2d: %.3f s, iter %d, %.4f %s%s, %.2f %s/s" % (
        index, seconds, step, value, self.metric, shown, rate, self.unit))
    self.log.write({"step": step, "time": seconds, f"train_{self.metric.lower()}": value,
                    **{f"train_{name}": v for name, v in means.items()},
                    f"{self.unit}_per_s": rate})
    self._clear()

  def evaluate(self, step: int) -> str | None:
    """Logs and prints the job's evaluation; 'nan' if a metric is NaN/Inf, else `on_eval`'s
    reason."""
    if self._evaluate is None:
      return None
    first, start = self.last_eval is None, time.monotonic()
    if first:
      self.out("compiling the evaluation (the first one compiles it)...")
    metrics = self._evaluate(self.state, step)
    if first:
      self.out(f"first evaluation in {time.monotonic() - start:.1f} s, compilation included")
    self.log.write({"step": step, "time": self.clock.seconds(), **metrics})
    self.out("  eval at iter %d: %s" % (step, ", ".join(f"{k} {v:.4f}"
                                                         for k, v in metrics.items())))
    self.last_eval = step
    bad = nonfinite(metrics)
    if bad:
      self.diverged.append(f"{', '.join(bad)} became NaN/Inf at iter {step}")
      return "nan"
    return self.on_eval(step, metrics) if self.on_eval is not None else None

  def save(self, step: int) -> bool:
    """Checkpoints the state, unless it holds NaN/Inf (then False)."""
    if not finite.all_finite(self.state):
      self.diverged.append(f"the parameters or optimiser state became NaN/Inf by iter {step}")
      return False
    self._save(step, self.state, self.clock.seconds())
    self.last_saved = step
    return True

  def stopped(self) -> str | None:
    """None: one model stops on its schedule, a NaN or an evaluation's reason."""
    return None

  def finish(self, step: int, reason: str) -> str:
    """The final evaluation, unless this step had one; a save unless this step's state
    is saved and its evaluation came before that save."""
    evaluated_now = self._evaluate is not None and self.last_eval != step
    if evaluated_now and self.evaluate(step) == "nan":
      return "nan"
    if (self.last_saved != step or evaluated_now) and not self.save(step):
      return "nan"
    return reason


def run(*, step_fn: Callable, state: Any, next_batch: Callable[[], Any], start_step: int,
        config: Schedule, items_per_step: int, log: MetricsLog,
        save: Callable[[int, Any, float], None], evaluate: Callable | None = None,
        elapsed: float = 0.0, unit: str = "char", bpc_scale: float | None = None,
        metric: str = "BPC", extra: tuple[str, ...] = (),
        print_fn: Callable[[str], None] | None = None,
        on_eval: Callable[[int, dict], str | None] | None = None,
        progress_bar: bool = True) -> LoopResult:
  """Trains one model from `start_step` on schedule `config`; returns where and why it
  stopped.

  `next_batch()` gives the next batch (the caller owns the data position, so its `save`
  callback can store it); `save(step, state, elapsed)` writes a checkpoint, `elapsed` the
  seconds of training (`elapsed` here: those before this run);
  `evaluate(state, step) -> dict` returns metrics to log and print (e.g. val_bpc);
  the training metric printed is loss * bpc_scale (default 1 / (ln 2 * items_per_step)),
  named `metric` in the line and `train_<metric>` (lower case) in the log; each step
  metric named in `extra` is averaged over the interval, printed and logged as `train_<name>`.
  `on_eval(step, metrics)` sees each evaluation; a string it returns stops the run with that
  reason (a sweep's pruner: 'pruned'), after the usual final checkpoint.

  A state is saved only if every float in it is finite (`finite.all_finite`); a NaN/Inf
  loss, evaluation metric or state stops the run with reason 'nan' and the bad state unsaved.
  An evaluation at the end that comes after the last checkpoint of that step saves it again,
  so the checkpoint's record of the best evaluation matches what the caller kept of it.
  """
  scale = bpc_scale if bpc_scale is not None else 1.0 / (math.log(2) * items_per_step)
  clock = Stopwatch(elapsed)
  bar = ProgressBar(config, start_step, elapsed, progress_bar)
  out = print_fn or bar.write
  trainer = Trainer(step_fn, state, next_batch, log, save, evaluate, on_eval, items_per_step,
                    unit, scale, metric, extra, out, clock, start_step)
  if not finite.all_finite(state):  # (also compiles the check before the first save)
    raise TrainingError(f"the state training starts from at iter {start_step} holds NaN/Inf")
  try:
    step, reason, signum = drive(config, trainer, start_step, clock, on_step=bar.update)
  finally:
    bar.close()
  if reason == "nan":
    out(f"{trainer.diverged[0]}: stopping; the bad state is not saved")
  return LoopResult(step, trainer.state, reason, clock.seconds(), trainer.last_saved,
                    detail=trainer.diverged[0] if trainer.diverged else "", signum=signum)


def raise_if_diverged(result: LoopResult, latest_checkpoint: int | None, directory) -> None:
  """TrainingError naming the last good checkpoint when the run stopped at a NaN/Inf."""
  if result.reason != "nan":
    return
  where = (f"the last good checkpoint is iter {latest_checkpoint} in {directory}"
           if latest_checkpoint is not None else "no checkpoint had been saved yet")
  raise TrainingError(f"training diverged (NaN/Inf): {result.detail} (try a lower --lr or "
                      f"--clip_norm); {where}")


def raise_if_interrupted(result: LoopResult) -> None:
  """`Interrupted` (exit status 128 + signal) when a signal stopped the run."""
  if result.reason == "interrupted":
    raise Interrupted(result.signum or signal.SIGINT)
