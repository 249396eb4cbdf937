"""The training loop shared by the experiments: progress, evaluation, checkpoints, stops.

It runs a jitted `step_fn(state, batch) -> (state, {'loss': ...})` and prints the seed's
progress line every `report_interval` steps

  I: T s, iter N, X BPC, Y char/s

(I the report number, T seconds since the run began (resumes included), X the mean BPC
over the interval, Y the characters trained on per second). On a terminal a tqdm bar
runs below it; elsewhere only the lines are printed. It evaluates every `eval_every`
steps, saves every `checkpoint_every` steps and at the end (step budget, time limit,
Ctrl-C or SIGTERM), and stops WITHOUT saving the bad state when the loss, an evaluation
metric or the state about to be saved (parameters, optimiser state) is NaN/Inf.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import signal
import sys
import time
from typing import Any, Callable

import tqdm

from dncjax.training import checkpoint


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  steps: int | None = None          # stop after this many steps in all (None: no limit)
  timelimit: float | None = None    # stop after this many seconds in all (None: no limit)
  report_interval: int = 20         # steps between progress lines
  eval_every: int = 0               # steps between evaluations (0: only at the end)
  checkpoint_every: int = 0         # steps between checkpoints (0: only at the end)

  def __post_init__(self):
    if self.steps is None and self.timelimit is None:
      raise ValueError("give a step budget or a time limit")
    for name in ("steps", "timelimit"):
      value = getattr(self, name)
      if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive, got {value}")
    if self.report_interval <= 0:
      raise ValueError(f"report_interval must be positive, got {self.report_interval}")
    for name in ("eval_every", "checkpoint_every"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


  def spent(self, step: int, seconds: float) -> str | None:
    """'steps' or 'timelimit' once that budget is used up, else None."""
    if self.steps is not None and step >= self.steps:
      return "steps"
    if self.timelimit is not None and seconds >= self.timelimit:
      return "timelimit"
    return None


def read_metrics(path: str | pathlib.Path) -> list[dict]:
  """The records of a metrics.jsonl (none if it does not exist); only reads."""
  path = pathlib.Path(path)
  if not path.exists():
    return []
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def write_json(path: str | pathlib.Path, record: dict) -> None:
  """`record` as strict JSON (NaN and Inf, which JSON lacks, written as null)."""
  clean = lambda v: (None if isinstance(v, float) and not math.isfinite(v) else
                     {k: clean(x) for k, x in v.items()} if isinstance(v, dict) else
                     [clean(x) for x in v] if isinstance(v, (list, tuple)) else v)
  pathlib.Path(path).write_text(json.dumps(clean(record), indent=2, allow_nan=False) + "\n")


class MetricsLog:
  """Append-only JSON lines (one record per report/evaluation) in `path`. Opening one
  without `resume_step` starts a new log (the old file is removed): to only read a
  run's records, use `read_metrics`."""

  def __init__(self, path: str | pathlib.Path, resume_step: int | None = None):
    self.path = pathlib.Path(path)
    if resume_step is not None and self.path.exists():  # drop records past the checkpoint
      kept = [l for l in self.path.read_text().splitlines()
              if l.strip() and json.loads(l).get("step", 0) <= resume_step]
      self.path.write_text("".join(l + "\n" for l in kept))
    elif resume_step is None and self.path.exists():
      self.path.unlink()

  def write(self, record: dict) -> None:
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")

  def read(self) -> list[dict]:
    return read_metrics(self.path)


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. a NaN loss): one-line message, non-zero exit."""


class Interrupted(KeyboardInterrupt):
  """A run stopped by a signal after saving; `exit_code` is 128 + the signal number
  (130 for Ctrl-C, 143 for SIGTERM), as shells report a process killed by it."""

  def __init__(self, signum: int = signal.SIGINT):
    super().__init__(signal.Signals(signum).name)
    self.exit_code = 128 + int(signum)


@dataclasses.dataclass
class LoopResult:
  step: int
  state: Any
  reason: str       # 'steps', 'timelimit', 'interrupted', 'nan' or a reason from on_eval
  elapsed: float
  last_saved: int | None
  detail: str = ""  # what went wrong, for reason 'nan'
  signum: int | None = None  # the signal that interrupted the run


class StopSignals:
  """The first Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step
  and save; a second one exits at once (status 128 + signal) without saving. orbax
  writes each checkpoint into a temporary folder and renames it when complete, so the
  latest complete checkpoint survives an abort."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signum: int | None = None

  @property
  def requested(self) -> bool:
    return self.signum is not None

  def __enter__(self):
    self._old = {s: signal.getsignal(s) for s in self.SIGNALS}
    for s in self.SIGNALS:
      signal.signal(s, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.requested:
      print("\naborted without saving", file=sys.stderr, flush=True)
      os._exit(128 + signum)  # pylint: disable=protected-access
    self.signum = signum
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    print(f"\n{name}: stopping after this step and saving a checkpoint "
          "(press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

  def __exit__(self, *exc):
    for s, handler in self._old.items():
      signal.signal(s, handler)


def nonfinite(metrics: dict) -> list[str]:
  """The names of the float metrics that are NaN or Inf."""
  return [k for k, v in metrics.items()
          if isinstance(v, float) and not math.isfinite(v)]


def run(*, step_fn: Callable, state: Any, next_batch: Callable[[], Any], start_step: int,
        config: LoopConfig, items_per_step: int, log: MetricsLog,
        save: Callable[[int, Any, float], None], evaluate: Callable | None = None,
        elapsed: float = 0.0, unit: str = "char", bpc_scale: float | None = None,
        metric: str = "BPC", extra: tuple[str, ...] = (),
        print_fn: Callable[[str], None] | None = None,
        on_eval: Callable[[int, dict], str | None] | None = None,
        progress_bar: bool = True) -> LoopResult:
  """Trains from `start_step`; returns where and why it stopped.

  `next_batch()` gives the next batch (the caller owns the data position, so its `save`
  callback can store it); `save(step, state, elapsed)` writes a checkpoint;
  `evaluate(state, step) -> dict` returns metrics to log and print (e.g. val_bpc);
  the training metric printed is loss * bpc_scale (default 1 / (ln 2 * items_per_step)),
  named `metric` in the line and `train_<metric>` (lower case) in the log; each step
  metric named in `extra` is averaged over the interval, printed and logged as `train_<name>`.
  `on_eval(step, metrics)` sees each evaluation; a string it returns stops the run with that
  reason (a sweep's pruner: 'pruned'), after the usual final checkpoint.

  A state is saved only if every float in it is finite (`checkpoint.all_finite`); a NaN/Inf
  loss, evaluation metric or state stops the run with reason 'nan' and the bad state unsaved.
  An evaluation at the end that comes after the last checkpoint of that step saves it again,
  so the checkpoint's record of the best evaluation matches what the caller kept of it.
  """
  bpc_scale = bpc_scale if bpc_scale is not None else 1.0 / (math.log(2) * items_per_step)
  begin = time.monotonic() - elapsed
  bar = tqdm.tqdm(total=config.steps, initial=start_step, unit="step", dynamic_ncols=True,
                  disable=not (progress_bar and sys.stderr.isatty()), leave=False)
  out = print_fn or (lambda line: bar.write(line) if not bar.disable else print(line, flush=True))
  step, last_saved, last_eval, reports = start_step, None, None, start_step // config.report_interval
  interval_loss, interval_steps, interval_start = 0.0, 0, time.monotonic()
  interval_extra = dict.fromkeys(extra, 0.0)
  diverged = []  # what became NaN/Inf, once it did

  def do_eval():
    nonlocal last_eval
    if evaluate is None:
      return None
    metrics = evaluate(state, step)
    log.write({"step": step, "time": time.monotonic() - begin, **metrics})
    out("  eval at iter %d: %s" % (step, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())))
    last_eval = step
    bad = nonfinite(metrics)
    if bad:
      diverged.append(f"{', '.join(bad)} became NaN/Inf at iter {step}")
      return "nan"
    return on_eval(step, metrics) if on_eval is not None else None

  def do_save() -> bool:
    nonlocal last_saved
    if not checkpoint.all_finite(state):
      diverged.append(f"the parameters or optimiser state became NaN/Inf by iter {step}")
      return False
    save(step, state, time.monotonic() - begin)
    last_saved = step
    return True

  stop = None  # a reason given by on_eval
  if not checkpoint.all_finite(state):  # (also compiles the check before the first save)
    raise TrainingError(f"the state training starts from at iter {start_step} holds NaN/Inf")
  with StopSignals() as signals:
    while True:
      reason = stop or config.spent(step, time.monotonic() - begin)
      if reason:
        break
      if signals.requested:
        reason = "interrupted"
        break
      new_state, metrics = step_fn(state, next_batch())
      loss = float(metrics["loss"])
      if not math.isfinite(loss):
        diverged.append(f"the loss became {loss} at iter {step + 1}")
        reason = "nan"
        break
      state, step = new_state, step + 1
      bar.update(1)
      interval_loss, interval_steps = interval_loss + loss, interval_steps + 1
      for name in extra:
        interval_extra[name] += float(metrics[name])
      if step % config.report_interval == 0:
        now = time.monotonic()
        bpc = interval_loss / interval_steps * bpc_scale
        rate = items_per_step * interval_steps / max(now - interval_start, 1e-9)
        means = {name: total / interval_steps for name, total in interval_extra.items()}
        shown = "".join(f", {value:.4f} {name}" for name, value in means.items())
        out("%2d: %.3f s, iter %d, %.4f %s%s, %.2f %s/s" % (reports, now - begin, step, bpc,
                                                            metric, shown, rate, unit))
        log.write({"step": step, "time": now - begin, f"train_{metric.lower()}": bpc,
                   **{f"train_{name}": value for name, value in means.items()},
                   f"{unit}_per_s": rate})
        reports += 1
        interval_loss, interval_steps, interval_start = 0.0, 0, now
        interval_extra = dict.fromkeys(extra, 0.0)
      paused = time.monotonic()  # evaluation and saving do not count as training time
      if config.eval_every and step % config.eval_every == 0:
        stop = do_eval()
      if stop != "nan" and config.checkpoint_every and step % config.checkpoint_every == 0:
        stop = stop if do_save() else "nan"
      interval_start += time.monotonic() - paused
    bar.close()
    if reason != "nan" and step > start_step:
      evaluated_now = evaluate is not None and last_eval != step
      if evaluated_now and do_eval() == "nan":
        reason = "nan"
      elif (last_saved != step or evaluated_now) and not do_save():
        reason = "nan"
  if reason == "nan":
    out(f"{diverged[0]}: stopping; the bad state is not saved")
  return LoopResult(step, state, reason, time.monotonic() - begin, last_saved,
                    detail=diverged[0] if diverged else "", signum=signals.signum)


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
