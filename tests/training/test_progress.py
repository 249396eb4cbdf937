"""dncjax.training.progress: the stopwatch of training time, compiling ahead of it, and
the tqdm bar (in seconds of training under a time limit, else in iterations)."""

import io

import pytest

from dncjax.training import progress
from dncjax.training.config import Schedule


class Clock:
  """Stands in for the `time` module: it only moves when told to."""

  def __init__(self):
    self.now = 50.0

  def monotonic(self):
    return self.now


@pytest.fixture
def clock(monkeypatch):
  fake = Clock()
  monkeypatch.setattr(progress, "time", fake)
  return fake


class TTY(io.StringIO):
  def isatty(self):
    return True


def test_the_stopwatch_counts_only_while_it_runs(clock):
  watch = progress.Stopwatch(elapsed=10.0)
  clock.now += 100.0
  assert watch.seconds() == 10.0
  watch.start()
  clock.now += 2.0
  assert watch.seconds() == 12.0  # read while running
  watch.stop()
  clock.now += 100.0
  assert watch.seconds() == 12.0


def test_compile_ahead_compiles_a_jitted_function_and_says_how_long(clock):
  lowered = []

  class Jitted:
    def lower(self, *args):
      lowered.append(args)
      return self

    def compile(self):
      clock.now += 7.3

  lines = []
  progress.compile_ahead(Jitted(), (1, 2), "the step", lines.append)
  assert lowered == [(1, 2)] and lines == ["compiling the step...", "compiled in 7.3 s"]
  progress.compile_ahead(lambda a, b: None, (1, 2), "a plain function", lines.append)
  assert len(lines) == 2


def test_under_a_time_limit_the_bar_shows_seconds_of_training_up_to_the_limit():
  bar = progress.ProgressBar(Schedule(timelimit=60.0), 7, 12.5, True, file=TTY())
  assert (bar.bar.total, bar.bar.n, bar.bar.unit) == (60.0, 12.5, "s")
  bar.update(8, 30.0)
  assert (bar.bar.n, bar.bar.postfix) == (30.0, "iter 8")
  bar.update(9, 61.0)
  assert bar.bar.n == 60.0
  bar.close()


def test_under_a_step_budget_the_bar_shows_iterations():
  bar = progress.ProgressBar(Schedule(steps=100), 7, 12.5, True, file=TTY())
  assert (bar.bar.total, bar.bar.n, bar.bar.unit) == (100, 7, "step")
  bar.update(8, 13.0)
  assert bar.bar.n == 8
  bar.close()


def test_the_bar_stays_off_without_a_terminal_or_when_not_asked():
  schedule = Schedule(timelimit=5.0)
  assert progress.ProgressBar(schedule, 0, 0.0, True, file=io.StringIO()).bar.disable
  assert progress.ProgressBar(schedule, 0, 0.0, False, file=TTY()).bar.disable
  assert not progress.ProgressBar(schedule, 0, 0.0, True, file=TTY()).bar.disable
