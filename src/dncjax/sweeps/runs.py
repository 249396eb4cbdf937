"""Running asked trials: each as one char-LM run (alice.py's), or several as one vmapped
population, reported to the pruner at each evaluation and told to the study at the end.

The only module that trains: the calls into dncjax.charlm and population.train_population
are here.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import TrialState

from dncjax import configs
from dncjax.charlm import batches, data, job as charlm
from dncjax.charlm.config import Options
from dncjax.sweeps import population, space as space_lib, study as sweep_lib, trials
from dncjax.sweeps.space import Space
from dncjax.training import checkpoint, loop, run

Say = Callable[[str], None]  # where a worker's progress lines go


def trial_errors() -> tuple[type[BaseException], ...]:
  """The errors that fail a trial (bad settings or data, files, training) with a message."""
  return (ValueError, OSError) + charlm.error_types()


def trial_options(sweep: sweep_lib.Sweep, folder: pathlib.Path,
                  resume: bool) -> tuple[Options, run.RunOptions]:
  """The options of a trial in `folder`: the sweep's budget, one checkpoint kept, no
  dynamic evaluation, and the tail left unscored (trials are chosen on the development
  split; the chosen one's tail can be scored later: docs/sweeps.md)."""
  b = sweep.budget
  schedule = loop.Schedule(b.steps, b.seconds, b.report_interval, b.eval_every, b.eval_every)
  return (Options(sample_length=b.sample_length, dynamic_eval=False, score_tail=False),
          run.RunOptions(str(folder), resume, schedule, keep=1, progress_bar=False))


def trial_config(sweep: sweep_lib.Sweep, values: dict):
  """The run config of a trial's values, on the sweep's text."""
  return configs.replace(sweep.space.config(values), "data.path", sweep.data)


def describe(values: dict[str, Any]) -> str:
  """A trial's values as `name=value, ...`, floats to 4 significant digits."""
  return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in values.items())


def _finish(study: optuna.Study, trial: optuna.Trial, summary: dict, say: Say) -> None:
  """Tells the study how a trial ended (COMPLETE with its best dev BPC, or PRUNED)."""
  for key in ("step", "elapsed_s", "best_step", "stopped_by"):
    trial.set_user_attr(key, summary.get(key))
  value = summary.get("best_dev_bpc")
  where = f"(best at iter {summary.get('best_step')}, {summary['step']} iters, " \
          f"{summary['elapsed_s']:.1f} s)"
  if summary.get("stopped_by") == "pruned":
    study.tell(trial, state=TrialState.PRUNED)
    say(f"trial {trial.number} pruned at iter {summary['step']}: {value:.4f} BPC {where}")
  elif value is None or not np.isfinite(value):
    trial.set_user_attr("error", "no dev BPC (empty development split?)")
    study.tell(trial, state=TrialState.FAIL)
    say(f"trial {trial.number} failed: no dev BPC")
  else:
    study.tell(trial, value)
    say(f"trial {trial.number} done: {value:.4f} BPC {where}")


def _failed(study: optuna.Study, trial: optuna.Trial, error: BaseException, say: Say) -> None:
  """Tells the study that a trial failed, with `error` in its user attrs."""
  trial.set_user_attr("error", f"{type(error).__name__}: {error}")
  study.tell(trial, state=TrialState.FAIL)
  say(f"trial {trial.number} failed: {error}")


def run_trial(sweep: sweep_lib.Sweep, study: optuna.Study, trial: optuna.Trial, values: dict,
              say: Say) -> None:
  """Trains one trial (resuming its checkpoint if it has one) and tells the study its end."""
  folder = sweep.path / trial.user_attrs["workdir"]
  folder.mkdir(parents=True, exist_ok=True)
  resume = checkpoint.holds_checkpoints(folder / "checkpoints")
  config = trial_config(sweep, values)
  say(f"trial {trial.number}{' (resumed)' if resume else ''}: {describe(values)} -> "
      f"{folder.relative_to(sweep.path)}")

  def on_eval(step, metrics):
    if "dev_bpc" not in metrics:
      return None
    trial.report(metrics["dev_bpc"], step)
    return "pruned" if trial.should_prune() else None

  with open(folder / "log.txt", "a") as log:
    def to_log(line):
      log.write(line + "\n")
      log.flush()
    try:
      summary = charlm.train_and_evaluate(config, *trial_options(sweep, folder, resume),
                                          out=to_log, on_eval=on_eval)
    except KeyboardInterrupt:
      trials.fail_and_retry(study, trial.number, "interrupted")
      raise
    except trial_errors() as e:
      _failed(study, trial, e, say)
      return
  _finish(study, trial, summary, say)


def run_population(sweep: sweep_lib.Sweep, study: optuna.Study, asked: list, say: Say) -> None:
  """Trains the asked trials as one vmapped population (population.py); a trial the
  pruner stops is frozen in the program. Interrupted populations restart from scratch."""
  folders = [sweep.path / t.user_attrs["workdir"] for t, _ in asked]
  members = [trial_config(sweep, v) for _, v in asked]
  for (trial, values), folder in zip(asked, folders):
    say(f"trial {trial.number} (population of {len(asked)}): {describe(values)} -> "
        f"{folder.relative_to(sweep.path)}")
    folder.mkdir(parents=True, exist_ok=True)

  def on_eval(i, step, dev_bpc):
    trial = asked[i][0]
    trial.report(dev_bpc, step)
    return "pruned" if trial.should_prune() else None

  logs = [open(f / "log.txt", "a") for f in folders]  # pylint: disable=consider-using-with

  def to_logs(line):
    for log in logs:
      log.write(line + "\n")
      log.flush()
  b = sweep.budget
  try:
    summaries = population.train_population(
        members, folders, b.steps, b.seconds, b.eval_every, on_eval, out=to_logs,
        report_interval=b.report_interval, checkpoint_every=b.eval_every, keep=1)
  except KeyboardInterrupt:
    for trial, _ in asked:
      trials.fail_and_retry(study, trial.number, "interrupted")
    raise
  except trial_errors() as e:
    for trial, _ in asked:
      _failed(study, trial, e, say)
    return
  finally:
    for log in logs:
      log.close()
  for (trial, _), summary in zip(asked, summaries):
    if summary["stopped_by"] == "nan":
      _failed(study, trial, loop.TrainingError(
          f"the loss became NaN/Inf at iter {summary['step'] + 1}"), say)
    else:
      _finish(study, trial, summary, say)


def check_space(space: Space, path: str | None = None) -> None:
  """SpaceError unless every trial in `space.corners()` passes the checks its run makes on
  the text at `path`, the model, the optimiser and the batches, before it trains."""
  data.load_corpus(path)  # the text itself: its own errors, as they are
  corpora = {}
  for values in space.corners():
    try:
      config = space.config({**values, "fp64": False})  # x64 stays as it is
      d = config.data
      key = (d.val_fraction, d.dev_fraction, d.seq_length)
      if key not in corpora:
        corpora[key] = data.load_corpus(path, d.val_fraction, d.seq_length,
                                        dev_fraction=d.dev_fraction)
      corpus = corpora[key]
      if not corpus.dev_ids.size:
        raise ValueError("trials are scored on dev BPC: dev_fraction must leave a "
                         "development split")
      charlm.build_model(config, corpus.vocab.size)
      batches.lane_batcher(corpus.train_ids, d.batch_size, d.seq_length, d.overlap)
    except ValueError as e:
      text = str(e).strip().splitlines() or [type(e).__name__]
      shown = ", ".join(f"{k}={v}" for k, v in values.items())
      raise space_lib.SpaceError(f"a trial with {shown} cannot run: {text[0]}") from None
