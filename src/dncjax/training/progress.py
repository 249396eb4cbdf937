"""What a run's time counts and what it shows while it trains.

A `Stopwatch` counts seconds of training: it runs only while a session trains, so the
time limit, the progress line's T and rate and a checkpoint's `elapsed` leave out
compilation, evaluation, sampling and saving. `compile_ahead` compiles a jitted step
before the clock starts, saying so. `ProgressBar` is the tqdm bar below the progress lines.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import tqdm

from dncjax.training.config import Schedule


class Stopwatch:
  """Seconds of training: `elapsed` (what the run had trained before a resume) plus the
  time it has run between `start()` and `stop()` calls."""

  def __init__(self, elapsed: float = 0.0):
    self.counted, self.started = elapsed, None

  def start(self) -> None:
    """Starts counting: training begins."""
    self.started = time.monotonic()

  def stop(self) -> None:
    """Stops counting, adding the time since `start()`."""
    self.counted += time.monotonic() - self.started
    self.started = None

  def seconds(self) -> float:
    """Seconds of training so far, a running interval included."""
    running = 0.0 if self.started is None else time.monotonic() - self.started
    return self.counted + running


def compile_ahead(fn, args: tuple, what: str, out: Callable[[str], None]) -> None:
  """Compiles the jitted `fn` for `args` ahead of time, saying so and how long it took, so
  that its first call runs at once (jit keeps the executable); a plain function is left."""
  lower = getattr(fn, "lower", None)
  if lower is None:
    return
  out(f"compiling {what}...")
  start = time.monotonic()
  lower(*args).compile()
  out(f"compiled in {time.monotonic() - start:.1f} s")


class ProgressBar:
  """The tqdm bar below the progress lines, on a terminal: seconds of training out of the
  time limit (with the time left) under a time limit, else iterations out of the steps."""

  def __init__(self, schedule: Schedule, step: int, seconds: float, show: bool, file=None):
    file = file or sys.stderr
    self.limit = schedule.timelimit
    common = dict(dynamic_ncols=True, leave=False, file=file,
                  disable=not (show and file.isatty()))
    if self.limit is not None:
      self.bar = tqdm.tqdm(total=self.limit, initial=min(seconds, self.limit), unit="s",
                           bar_format="{l_bar}{bar}| {n:.0f}/{total:g} s of training "
                           "[{elapsed}<{remaining}{postfix}]", **common)
    else:
      self.bar = tqdm.tqdm(total=schedule.steps, initial=step, unit="step", **common)

  def update(self, step: int, seconds: float) -> None:
    """Advances the bar after iteration `step`: to `seconds` of training under a time
    limit, else by one iteration."""
    if self.limit is None:
      self.bar.update(1)
      return
    self.bar.set_postfix_str(f"iter {step}", refresh=False)
    self.bar.update(min(seconds, self.limit) - self.bar.n)

  def write(self, line: str) -> None:
    """Prints `line` above the bar (plainly if the bar is off)."""
    if self.bar.disable:
      print(line, flush=True)
    else:
      self.bar.write(line)

  def close(self) -> None:
    """Closes the bar (it leaves no line behind)."""
    self.bar.close()
