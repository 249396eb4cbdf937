"""Tests for dncjax.training.loop (with its records and signals): the schedule of reports,
evaluations and checkpoints, budgets and resumption, NaN/Inf stops that save nothing bad,
stop signals, and the metrics files.

The steps are tiny Python functions on a dict of numpy arrays and the clock is a fake one
that each step moves on by one second, so every line and record is exact."""

import io
import json
import math
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax.training import loop, records, signals
from dncjax.training import progress as timing

ITEMS = 10                             # characters per step
LOSS = 1.5 * math.log(2) * ITEMS       # a step loss of exactly 1.5 BPC


class Clock:
  """Stands in for the `time` module in dncjax.training.loop and .progress: it only moves
  when told to."""

  def __init__(self):
    self.now = 1000.0

  def monotonic(self):
    return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch):
  fake = Clock()
  monkeypatch.setattr(loop, "time", fake)
  monkeypatch.setattr(timing, "time", fake)
  return fake


@pytest.fixture
def sentinel_handlers():
  """SIGINT and SIGTERM handlers of the test's own, restored afterwards: a signal that
  escapes the loop fails the test instead of killing pytest."""
  def sentinel(signum, frame):
    raise AssertionError(f"signal {signum} reached the handler in place before the run")

  old = {s: signal.signal(s, sentinel) for s in (signal.SIGINT, signal.SIGTERM)}
  yield sentinel
  for s, handler in old.items():
    signal.signal(s, handler)


def stepper(clock, loss=lambda n: LOSS, params=lambda n, w: w + 1.0, metrics=None, hook=None):
  """A step function: call n (1, 2, ...) takes one second, returns loss(n) and
  params(n, w) as the new "w" (a float array), and counts itself in "n" (an int)."""
  def step_fn(state, batch):
    assert batch == "batch"
    n = int(state["n"]) + 1
    clock.now += 1.0
    if hook is not None:
      hook(n)
    extra = metrics(n) if metrics is not None else {}
    return {"w": params(n, state["w"]), "n": np.int32(n)}, {"loss": loss(n), **extra}
  return step_fn


class Recorder:
  """The callbacks of one run: what was saved and evaluated, and the printed lines."""

  def __init__(self, clock, metric=lambda step: 2.0, eval_seconds=0.0, after_save=None):
    self.clock, self.metric, self.eval_seconds, self.after_save = (
        clock, metric, eval_seconds, after_save)
    self.saves, self.evals, self.lines = [], [], []

  def save(self, step, state, elapsed):
    self.saves.append((step, {k: np.array(v) for k, v in state.items()}, elapsed))
    if self.after_save is not None:
      self.after_save(step)

  def evaluate(self, state, step):
    self.evals.append(step)
    self.clock.now += self.eval_seconds
    return {"val_bpc": self.metric(step)}

  @property
  def saved_steps(self):
    return [step for step, _, _ in self.saves]


def train(tmp_path, clock, config, rec=None, step_fn=None, start_step=0, resume_step=None,
          state=None, **kwargs):
  rec = rec or Recorder(clock)
  kwargs.setdefault("evaluate", rec.evaluate)
  kwargs.setdefault("progress_bar", False)
  result = loop.run(
      step_fn=step_fn or stepper(clock),
      state=state or {"w": np.zeros(3), "n": np.int32(start_step)},
      next_batch=lambda: "batch", start_step=start_step, config=config,
      items_per_step=ITEMS, log=records.MetricsLog(tmp_path / "metrics.jsonl", resume_step),
      save=rec.save, print_fn=rec.lines.append, **kwargs)
  return result, rec


def progress(lines):
  return [line for line in lines if ", iter " in line]


# ---------------------------------------------------------------------------- the schedule


def test_reports_evaluations_and_checkpoints_follow_the_schedule(tmp_path, clock):
  config = loop.Schedule(steps=10, report_interval=2, eval_every=4, checkpoint_every=3)
  result, rec = train(tmp_path, clock, config)
  assert (result.reason, result.step, result.elapsed) == ("steps", 10, 10.0)
  assert progress(rec.lines) == [
      f"{i:2d}: {2.0 * (i + 1):.3f} s, iter {2 * (i + 1)}, 1.5000 BPC, 10.00 char/s"
      for i in range(5)]
  assert rec.evals == [4, 8, 10]  # and once at the end
  assert rec.saved_steps == [3, 6, 9, 10]  # and once at the end
  assert "  eval at iter 4: val_bpc 2.0000" in rec.lines
  assert result.last_saved == 10 and int(result.state["n"]) == 10
  assert [elapsed for _, _, elapsed in rec.saves] == [3.0, 6.0, 9.0, 10.0]


def test_the_metrics_log_holds_each_report_and_evaluation(tmp_path, clock):
  config = loop.Schedule(steps=4, report_interval=2, eval_every=4)
  train(tmp_path, clock, config)
  logged = records.read_metrics(tmp_path / "metrics.jsonl")
  expected = [{"step": 2, "time": 2.0, "train_bpc": 1.5, "char_per_s": 10.0},
              {"step": 4, "time": 4.0, "train_bpc": 1.5, "char_per_s": 10.0},
              {"step": 4, "time": 4.0, "val_bpc": 2.0}]
  assert len(logged) == len(expected)
  for record, want in zip(logged, expected):
    assert record == pytest.approx(want)


def test_the_end_evaluates_and_saves_once_when_the_schedule_just_did(tmp_path, clock):
  config = loop.Schedule(steps=8, report_interval=4, eval_every=4, checkpoint_every=4)
  _, rec = train(tmp_path, clock, config)
  assert rec.evals == [4, 8] and rec.saved_steps == [4, 8]


def test_without_a_schedule_the_end_evaluates_and_saves_once(tmp_path, clock):
  config = loop.Schedule(steps=5, report_interval=5)
  _, rec = train(tmp_path, clock, config)
  assert rec.evals == [5] and rec.saved_steps == [5]


def test_a_final_evaluation_after_a_checkpoint_of_that_step_saves_it_again(tmp_path, clock):
  config = loop.Schedule(steps=4, report_interval=4, checkpoint_every=4)
  _, rec = train(tmp_path, clock, config)
  assert rec.evals == [4]
  assert rec.saved_steps == [4, 4]  # the second save records the evaluation


def test_without_evaluate_a_step_just_saved_is_not_saved_again(tmp_path, clock):
  config = loop.Schedule(steps=4, report_interval=4, checkpoint_every=4)
  _, rec = train(tmp_path, clock, config, evaluate=None)
  assert rec.saved_steps == [4]


def test_evaluation_and_saving_do_not_count_as_training_time(tmp_path, clock):
  rec = Recorder(clock, eval_seconds=100.0, after_save=lambda step: setattr(
      clock, "now", clock.now + 50.0))
  config = loop.Schedule(steps=4, report_interval=4, eval_every=2, checkpoint_every=2)
  result, rec = train(tmp_path, clock, config, rec)
  assert clock.now == 1000.0 + 4 + 2 * 100.0 + 2 * 50.0  # the wall clock saw them all
  assert progress(rec.lines) == [" 0: 4.000 s, iter 4, 1.5000 BPC, 10.00 char/s"]
  assert result.elapsed == 4.0
  assert [elapsed for _, _, elapsed in rec.saves] == [2.0, 4.0]
  assert [r["time"] for r in records.read_metrics(tmp_path / "metrics.jsonl")
          if "val_bpc" in r] == [2.0, 4.0]


def test_the_first_evaluation_says_it_compiles(tmp_path, clock):
  config = loop.Schedule(steps=4, report_interval=4, eval_every=2)
  _, rec = train(tmp_path, clock, config, Recorder(clock, eval_seconds=3.0))
  assert [line for line in rec.lines if "evaluation" in line] == [
      "compiling the evaluation (the first one compiles it)...",
      "first evaluation in 3.0 s, compilation included"]
  assert rec.lines.index("first evaluation in 3.0 s, compilation included") < rec.lines.index(
      "  eval at iter 2: val_bpc 2.0000")


def test_extra_metrics_are_averaged_over_each_interval(tmp_path, clock):
  step_fn = stepper(clock, loss=lambda n: float(n), metrics=lambda n: {"bit_errors": 10.0 * n})
  config = loop.Schedule(steps=4, report_interval=2)
  _, rec = train(tmp_path, clock, config, step_fn=step_fn, evaluate=None, unit="seq",
                 bpc_scale=1.0, metric="loss", extra=("bit_errors",))
  assert progress(rec.lines) == [
      " 0: 2.000 s, iter 2, 1.5000 loss, 15.0000 bit_errors, 10.00 seq/s",
      " 1: 4.000 s, iter 4, 3.5000 loss, 35.0000 bit_errors, 10.00 seq/s"]
  assert [(r["train_loss"], r["train_bit_errors"], r["seq_per_s"])
          for r in records.read_metrics(tmp_path / "metrics.jsonl")] == [(1.5, 15.0, 10.0),
                                                                      (3.5, 35.0, 10.0)]


def test_on_eval_stops_the_run_after_the_final_checkpoint(tmp_path, clock):
  seen = []

  def on_eval(step, metrics):
    seen.append((step, metrics))
    return "pruned" if step == 4 else None

  config = loop.Schedule(steps=100, report_interval=2, eval_every=2)
  result, rec = train(tmp_path, clock, config, on_eval=on_eval)
  assert (result.reason, result.step) == ("pruned", 4)
  assert seen == [(2, {"val_bpc": 2.0}), (4, {"val_bpc": 2.0})]
  assert rec.evals == [2, 4] and rec.saved_steps == [4]


# ---------------------------------------------------------------------------- budgets


def test_a_time_limit_stops_the_run(tmp_path, clock):
  config = loop.Schedule(timelimit=5.5, report_interval=100)
  result, rec = train(tmp_path, clock, config)
  assert (result.reason, result.step) == ("timelimit", 6)
  assert rec.saved_steps == [6]


class Jitted:
  """A step function as `jax.jit` gives it: `lower(*args).compile()` compiles it ahead of
  time, here taking `seconds` on the clock; `calls` counts the steps it ran."""

  def __init__(self, clock, seconds):
    self.clock, self.seconds, self.step_fn, self.compiled = clock, seconds, stepper(clock), []

  def __call__(self, state, batch):
    assert self.compiled, "the step ran before it was compiled"
    return self.step_fn(state, batch)

  def lower(self, state, batch):
    assert batch == "batch" and int(state["n"]) == 0
    return self

  def compile(self):
    self.clock.now += self.seconds
    self.compiled.append(self.clock.now)
    return self


def test_compilation_does_not_count_against_the_time_limit(tmp_path, clock):
  step_fn = Jitted(clock, seconds=100.0)
  config = loop.Schedule(timelimit=5.5, report_interval=2)
  result, rec = train(tmp_path, clock, config, step_fn=step_fn, evaluate=None)
  assert (result.reason, result.step, result.elapsed) == ("timelimit", 6, 6.0)
  assert step_fn.compiled == [1100.0]  # once, before the first step
  assert rec.lines[:2] == ["compiling the training step...", "compiled in 100.0 s"]
  assert progress(rec.lines)[0] == " 0: 2.000 s, iter 2, 1.5000 BPC, 10.00 char/s"


def test_a_jitted_step_compiled_ahead_is_not_traced_again(tmp_path, clock):
  traces = []

  def step(state, batch):
    traces.append(1)
    return {"w": state["w"] + batch}, {"loss": jnp.sum(state["w"]) + 1.0}

  step_fn, lines = jax.jit(step), []
  result = loop.run(step_fn=step_fn, state={"w": jnp.zeros(3, jnp.float32)},
                    next_batch=lambda: np.ones(3, np.float32), start_step=0,
                    config=loop.Schedule(steps=3), items_per_step=ITEMS,
                    log=records.MetricsLog(tmp_path / "metrics.jsonl"),
                    save=lambda *args: None, print_fn=lines.append, progress_bar=False)
  assert len(traces) == 1 and lines[0] == "compiling the training step..."
  np.testing.assert_array_equal(result.state["w"], [3.0, 3.0, 3.0])


def test_a_time_limit_counts_no_evaluation(tmp_path, clock):
  config = loop.Schedule(timelimit=5.5, report_interval=100, eval_every=1)
  result, rec = train(tmp_path, clock, config, Recorder(clock, eval_seconds=100.0))
  assert (result.reason, result.step, result.elapsed) == ("timelimit", 6, 6.0)
  assert rec.evals == [1, 2, 3, 4, 5, 6]


def test_a_spent_budget_compiles_nothing(tmp_path, clock):
  step_fn = Jitted(clock, seconds=100.0)
  config = loop.Schedule(timelimit=60.0, report_interval=1)
  result, rec = train(tmp_path, clock, config, step_fn=step_fn, elapsed=60.0)
  assert step_fn.compiled == [] and result.step == 0 and rec.lines == []


def test_a_signal_during_compilation_stops_before_the_first_step(tmp_path, clock):
  step_fn = Jitted(clock, seconds=10.0)
  compile_ = step_fn.compile
  step_fn.compile = lambda: (os.kill(os.getpid(), signal.SIGINT), compile_())[1]
  config = loop.Schedule(steps=5, report_interval=1)
  result, rec = train(tmp_path, clock, config, step_fn=step_fn)
  assert (result.reason, result.step) == ("interrupted", 0) and rec.saves == []


class TTY(io.StringIO):
  def isatty(self):
    return True


@pytest.fixture
def bars(monkeypatch):
  """The progress bars `loop.run` makes, drawn into a fake terminal."""
  made = []

  def make(*args, **kwargs):
    made.append(timing.ProgressBar(*args, **kwargs, file=TTY()))
    return made[-1]

  monkeypatch.setattr(loop, "ProgressBar", make)
  return made


def test_under_a_time_limit_the_bar_counts_seconds_of_training(tmp_path, clock, bars):
  config = loop.Schedule(timelimit=5.5, report_interval=100)
  train(tmp_path, clock, config, Recorder(clock, eval_seconds=100.0), elapsed=1.0,
        progress_bar=True)
  (bar,) = bars
  assert (bar.bar.total, bar.bar.unit, bar.bar.n) == (5.5, "s", 5.5)  # 6.0 s, shown to 5.5
  assert bar.bar.postfix == "iter 5"
  assert "| 1/5.5 s of training [" in bar.bar.fp.getvalue()  # drawn at the start


def test_under_a_step_budget_the_bar_counts_iterations(tmp_path, clock, bars):
  config = loop.Schedule(steps=8, timelimit=None, report_interval=100)
  train(tmp_path, clock, config, start_step=3, progress_bar=True)
  (bar,) = bars
  assert (bar.bar.total, bar.bar.unit, bar.bar.n) == (8, "step", 8)


def test_a_resumed_run_counts_its_steps_and_time_from_the_checkpoint(tmp_path, clock):
  config = loop.Schedule(steps=10, timelimit=200.0, report_interval=2)
  step_fn = stepper(clock)
  result, rec = train(tmp_path, clock, config, step_fn=step_fn, start_step=6, elapsed=100.0)
  assert (result.reason, result.step, result.elapsed) == ("steps", 10, 104.0)
  assert int(result.state["n"]) == 10  # four steps ran
  assert progress(rec.lines) == [" 3: 102.000 s, iter 8, 1.5000 BPC, 10.00 char/s",
                                 " 4: 104.000 s, iter 10, 1.5000 BPC, 10.00 char/s"]
  assert [(step, elapsed) for step, _, elapsed in rec.saves] == [(10, 104.0)]


@pytest.mark.parametrize("budget", [dict(steps=10, start_step=10),
                                    dict(timelimit=60.0, elapsed=60.0)])
def test_a_spent_budget_runs_no_step_and_saves_nothing(tmp_path, clock, budget):
  budget = dict(budget)
  start_step = budget.pop("start_step", 3)
  elapsed = budget.pop("elapsed", 0.0)
  config = loop.Schedule(report_interval=1, **budget)
  result, rec = train(tmp_path, clock, config, start_step=start_step, elapsed=elapsed)
  assert result.step == start_step and int(result.state["n"]) == start_step
  assert result.reason == ("steps" if "steps" in budget else "timelimit")
  assert rec.saves == [] and rec.evals == [] and rec.lines == []


@pytest.mark.parametrize("kwargs, name", [
    (dict(), "budget"), (dict(steps=0), "steps"), (dict(steps=-5), "steps"),
    (dict(timelimit=0.0), "timelimit"), (dict(timelimit=-1.0), "timelimit"),
    (dict(steps=5, report_interval=0), "report_interval"),
    (dict(steps=5, eval_every=-1), "eval_every"),
    (dict(steps=5, checkpoint_every=-2), "checkpoint_every")])
def test_loop_config_rejects_nonsense(kwargs, name):
  with pytest.raises(ValueError, match=name):
    loop.Schedule(**kwargs)


def test_loop_config_rejects_a_nan_time_limit():
  with pytest.raises(ValueError, match="timelimit"):
    loop.Schedule(timelimit=math.nan)


# ---------------------------------------------------------------------------- NaN / Inf


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_nonfinite_loss_stops_without_saving_that_step(tmp_path, clock, bad):
  step_fn = stepper(clock, loss=lambda n: bad if n == 5 else LOSS)
  config = loop.Schedule(steps=100, report_interval=2, checkpoint_every=2)
  result, rec = train(tmp_path, clock, config, step_fn=step_fn)
  assert (result.reason, result.step, int(result.state["n"])) == ("nan", 4, 4)
  assert result.detail == f"the loss became {bad} at iter 5"
  assert rec.saved_steps == [2, 4] and rec.evals == []
  assert rec.lines[-1] == f"the loss became {bad} at iter 5: stopping; the bad state is not saved"


def test_parameters_that_become_nan_are_never_saved(tmp_path, clock):
  step_fn = stepper(clock, params=lambda n, w: w + (math.nan if n == 3 else 1.0))
  config = loop.Schedule(steps=100, report_interval=2, checkpoint_every=2)
  result, rec = train(tmp_path, clock, config, step_fn=step_fn)
  assert (result.reason, result.step) == ("nan", 4)
  assert "parameters or optimiser state" in result.detail and "iter 4" in result.detail
  assert rec.saved_steps == [2] and result.last_saved == 2
  assert all(np.isfinite(state["w"]).all() for _, state, _ in rec.saves)


def test_parameters_that_become_nan_are_not_saved_at_the_end(tmp_path, clock):
  step_fn = stepper(clock, params=lambda n, w: w * math.inf if n == 2 else w + 1.0)
  config = loop.Schedule(steps=6, report_interval=2)
  result, rec = train(tmp_path, clock, config, step_fn=step_fn)
  assert (result.reason, result.step, result.last_saved) == ("nan", 6, None)
  assert "parameters or optimiser state" in result.detail and rec.saves == []


def test_a_nan_state_to_start_from_is_refused(tmp_path, clock):
  config = loop.Schedule(steps=2)
  with pytest.raises(loop.TrainingError, match="iter 7 holds NaN"):
    train(tmp_path, clock, config, start_step=7,
          state={"w": np.array([0.0, math.nan]), "n": np.int32(7)})


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_nonfinite_evaluation_stops_and_that_step_is_not_saved(tmp_path, clock, bad):
  rec = Recorder(clock, metric=lambda step: bad if step == 6 else 2.0)
  config = loop.Schedule(steps=100, report_interval=3, eval_every=3, checkpoint_every=3)
  result, rec = train(tmp_path, clock, config, rec)
  assert (result.reason, result.step) == ("nan", 6)
  assert result.detail == "val_bpc became NaN/Inf at iter 6"
  assert rec.evals == [3, 6] and rec.saved_steps == [3]


def test_a_nonfinite_final_evaluation_is_not_saved(tmp_path, clock):
  rec = Recorder(clock, metric=lambda step: math.nan if step == 5 else 2.0)
  config = loop.Schedule(steps=5, report_interval=5, checkpoint_every=4)
  result, rec = train(tmp_path, clock, config, rec)
  assert (result.reason, result.step) == ("nan", 5)
  assert rec.evals == [5] and rec.saved_steps == [4]


def test_raise_if_diverged_names_the_last_good_checkpoint(tmp_path, clock):
  step_fn = stepper(clock, loss=lambda n: math.nan if n == 3 else LOSS)
  config = loop.Schedule(steps=100, report_interval=1, checkpoint_every=2)
  result, _ = train(tmp_path, clock, config, step_fn=step_fn)
  with pytest.raises(loop.TrainingError) as info:
    loop.raise_if_diverged(result, 2, "runs/x/checkpoints")
  message = str(info.value)
  assert "\n" not in message and "the loss became nan at iter 3" in message
  assert message.endswith("the last good checkpoint is iter 2 in runs/x/checkpoints")
  with pytest.raises(loop.TrainingError, match="no checkpoint had been saved yet"):
    loop.raise_if_diverged(result, None, "runs/x/checkpoints")
  loop.raise_if_diverged(loop.LoopResult(5, None, "steps", 1.0, 5), 5, "runs/x")  # no error


# ---------------------------------------------------------------------------- signals


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_step_and_saves_it(tmp_path, clock, capfd,
                                                    sentinel_handlers, signum):
  step_fn = stepper(clock, hook=lambda n: n == 3 and os.kill(os.getpid(), signum))
  config = loop.Schedule(steps=100, report_interval=2, checkpoint_every=2)
  result, rec = train(tmp_path, clock, config, step_fn=step_fn)
  assert (result.reason, result.signum, result.step) == ("interrupted", signum, 3)
  assert rec.saved_steps == [2, 3] and rec.evals == [3] and result.last_saved == 3
  assert "stopping after this step and saving" in capfd.readouterr().err
  for s in (signal.SIGINT, signal.SIGTERM):
    assert signal.getsignal(s) is sentinel_handlers  # restored
  with pytest.raises(signals.Interrupted) as info:
    loop.raise_if_interrupted(result)
  assert info.value.exit_code == 128 + signum
  assert isinstance(info.value, KeyboardInterrupt)


class _Busy:
  """A stream the main thread is writing to when the signal arrives."""

  def write(self, text):
    raise RuntimeError("reentrant call inside the stream")

  flush = write


def test_the_signal_notice_bypasses_the_python_streams(monkeypatch, capfd, sentinel_handlers):
  # A handler that printed through sys.stderr (tee'd into log.txt) raised "reentrant
  # call" when the signal came while the main thread was flushing that same stream.
  monkeypatch.setattr("sys.stderr", _Busy())
  with signals.StopSignals() as stop:
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.requested
  assert "Ctrl-C: stopping after this step" in capfd.readouterr().err


def test_sigterm_gives_exit_code_143_and_sigint_130():
  assert signals.Interrupted(signal.SIGTERM).exit_code == 143
  assert signals.Interrupted().exit_code == 130
  loop.raise_if_interrupted(loop.LoopResult(5, None, "steps", 1.0, 5))  # no error


def test_a_signal_right_after_a_scheduled_save_saves_that_step_again(tmp_path, clock,
                                                                      sentinel_handlers):
  pressed = []

  def press_ctrl_c(step):  # once: a second Ctrl-C would abort at once (os._exit)
    if step == 3 and not pressed:
      pressed.append(step)
      os.kill(os.getpid(), signal.SIGINT)

  rec = Recorder(clock, after_save=press_ctrl_c)
  config = loop.Schedule(steps=100, report_interval=3, checkpoint_every=3)
  result, rec = train(tmp_path, clock, config, rec)
  assert (result.reason, result.step) == ("interrupted", 3)
  assert rec.evals == [3] and rec.saved_steps == [3, 3]


def test_handlers_are_restored_after_a_run_that_raises(tmp_path, clock, sentinel_handlers):
  def failing_step(state, batch):
    raise RuntimeError("boom")

  with pytest.raises(RuntimeError, match="boom"):
    train(tmp_path, clock, loop.Schedule(steps=3), step_fn=failing_step)
  for s in (signal.SIGINT, signal.SIGTERM):
    assert signal.getsignal(s) is sentinel_handlers


# ---------------------------------------------------------------------------- metrics files


def lines_of(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_fresh_metrics_log_removes_the_old_file(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "train_bpc": 3.0}\n')
  log = records.MetricsLog(path)
  assert not path.exists()
  log.write({"step": 1, "train_bpc": 2.0})
  log.write({"step": 2, "train_bpc": 1.0})
  assert lines_of(path) == log.read() == [{"step": 1, "train_bpc": 2.0},
                                          {"step": 2, "train_bpc": 1.0}]


def test_a_resumed_metrics_log_drops_the_records_past_its_step(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps({"step": s, "x": s}) + "\n" for s in (2, 4, 4, 6, 8))
                  + '{"note": "no step"}\n\n')
  log = records.MetricsLog(path, resume_step=4)
  assert log.read() == [{"step": 2, "x": 2}, {"step": 4, "x": 4}, {"step": 4, "x": 4},
                        {"note": "no step"}]
  log.write({"step": 6, "x": 60})
  assert lines_of(path)[-1] == {"step": 6, "x": 60}


def test_a_resumed_metrics_log_without_a_file_creates_none(tmp_path):
  records.MetricsLog(tmp_path / "metrics.jsonl", resume_step=3)
  assert not (tmp_path / "metrics.jsonl").exists()


def test_read_metrics_only_reads(tmp_path):
  path = tmp_path / "metrics.jsonl"
  assert records.read_metrics(path) == [] and not path.exists()
  text = '{"step": 5, "val_bpc": 2.5}\n{"step": 9, "val_bpc": 2.0}\n'
  path.write_text(text)
  assert records.read_metrics(str(path)) == [{"step": 5, "val_bpc": 2.5},
                                          {"step": 9, "val_bpc": 2.0}]
  assert path.read_text() == text


def strict_loads(text):
  def refuse(name):
    raise ValueError(f"not strict JSON: {name}")
  return json.loads(text, parse_constant=refuse)


def test_write_json_writes_nan_and_inf_as_null(tmp_path):
  path = tmp_path / "results.json"
  records.write_json(path, {"a": math.nan, "b": {"c": math.inf, "d": -math.inf, "e": 0.5},
                         "f": np.float64("nan"), "g": "text", "h": 3, "i": None})
  assert strict_loads(path.read_text()) == {"a": None, "b": {"c": None, "d": None, "e": 0.5},
                                            "f": None, "g": "text", "h": 3, "i": None}
  assert path.read_text().endswith("}\n")


def test_write_json_writes_nan_in_a_list_as_null(tmp_path):
  records.write_json(tmp_path / "results.json", {"curve": [1.0, math.nan]})
  assert strict_loads((tmp_path / "results.json").read_text()) == {"curve": [1.0, None]}
