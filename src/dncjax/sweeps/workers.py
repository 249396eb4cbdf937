"""Workers: processes that ask the study for trials and run them until the sweep is full,
and `run`, which starts them here and says how the sweep ended.

A worker asks for up to `population` trials at a time, under a file lock (ask.lock in the
sweep's folder), so the workers of one machine never overshoot the trial count; workers on
k machines may overshoot it by at most k - 1. While it lives it holds its own lock file
(workers/<host>-<pid>.lock), by which the others tell that its trials are still running.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from typing import Callable

import numpy as np
import optuna
from optuna.trial import TrialState

from dncjax.sweeps import errors, runs, storage as sweep_storage, study as sweep_lib, trials


def _ask(sweep: sweep_lib.Sweep, study: optuna.Study, lock_path: str,
         worker: int) -> list[tuple[optuna.Trial, dict]]:
  """Up to `population` trials to run now, with their values; [] when the sweep is full."""
  with trials.file_lock(sweep.path / "ask.lock"), warnings.catch_warnings():
    # ask/tell with heartbeats: this module keeps the beat itself (see trials.Heartbeat)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
    trials.reap_dead_trials(study)
    grid = sweep.sampler == "grid"
    if grid:
      trials.queue_grid(sweep, study)
    live = trials.live_trials(study)
    waiting = sum(t.state == TrialState.WAITING for t in live)
    wanted = min(sweep.population, waiting + max(0, sweep.n_trials() - len(live)))
    asked = []
    while len(asked) < wanted:
      trial = study.ask()
      if grid and not trials.claim(study, trial):
        waiting = sum(t.state == TrialState.WAITING for t in trials.live_trials(study))
        wanted = min(wanted, len(asked) + waiting)
        continue
      values = sweep.space.suggest(trial)
      workdir = trial.user_attrs.get("workdir")  # a retry inherits its trial's folder
      if workdir is None or sweep.population > 1:
        workdir = f"trials/{trial.number:04d}"
      for key, value in (("host", trials.HOST), ("pid", os.getpid()), ("worker", worker),
                         ("worker_lock", lock_path), ("workdir", workdir)):
        trial.set_user_attr(key, value)
      asked.append((trial, values))
    return asked


def work(sweep: sweep_lib.Sweep, worker: int = 0, out: Callable[[str], None] = print) -> int:
  """One worker: asks for trials and runs them until the sweep is full. Returns how many."""
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = sweep_lib.open_study(sweep)
  # a seed of its own per worker and per resumption: no two draw the same sequence
  start = len(study.get_trials(deepcopy=False))
  study.sampler = sweep_lib.make_sampler(
      sweep, int(np.random.SeedSequence([sweep.seed, worker, start]).generate_state(1)[0]))
  (sweep.path / "workers").mkdir(parents=True, exist_ok=True)
  lock_path = sweep.path / "workers" / f"{trials.HOST}-{os.getpid()}.lock"
  prefix = f"[w{worker}] " if worker else ""
  ran = 0

  def say(line: str) -> None:
    out(prefix + line)

  with trials.file_lock(lock_path):
    try:
      while True:
        asked = _ask(sweep, study, str(lock_path), worker)
        if not asked:
          return ran
        with trials.Heartbeat(study, [t.number for t, _ in asked]):
          if sweep.population > 1:
            runs.run_population(sweep, study, asked, say)
          else:
            runs.run_trial(sweep, study, *asked[0], say)
        ran += len(asked)
    finally:
      lock_path.unlink(missing_ok=True)


def _worker_process(sweep: sweep_lib.Sweep, worker: int) -> None:
  """Entry point of a spawned worker: errors as one line, Ctrl-C as exit 130."""
  try:
    work(sweep, worker, out=lambda line: print(line, flush=True))
  except KeyboardInterrupt:
    sys.exit(130)
  except (errors.SweepError,) + runs.trial_errors() as e:
    print(f"[w{worker}] error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


def run(sweep: sweep_lib.Sweep, workers: int = 1,
        out: Callable[[str], None] = print) -> optuna.Study:
  """Runs (or resumes) the sweep with `workers` processes here; returns the study."""
  if workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  runs.check_space(sweep.space, sweep.data)  # every setting and range end: fail before any trial
  sweep.path.mkdir(parents=True, exist_ok=True)
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = sweep_lib.open_study(sweep)
  with trials.file_lock(sweep.path / "ask.lock"):
    dead = trials.reap_dead_trials(study)
  live = trials.live_trials(study)
  done = sum(t.state.is_finished() for t in live)
  out(f"study {study.study_name!r} in {sweep_storage.shown(sweep.storage_url())}: {done} of "
      f"{sweep.n_trials()} trials finished"
      + (f"; retrying {len(dead)} interrupted" if dead else "")
      + f"; {workers} worker{'s' if workers > 1 else ''} here")
  if workers == 1:
    work(sweep, 0, out)
    return study
  ctx = multiprocessing.get_context("spawn")
  procs = [ctx.Process(target=_worker_process, args=(sweep, i + 1)) for i in range(workers)]
  for p in procs:
    p.start()
  try:
    for p in procs:
      p.join()
  except KeyboardInterrupt:  # the workers got the Ctrl-C too: let them save and stop
    for p in procs:
      p.join()
    raise
  failed = [p.exitcode for p in procs if p.exitcode]
  if 130 in failed or -2 in failed:
    raise KeyboardInterrupt
  if failed:
    finished = sum(t.state.is_finished() for t in trials.live_trials(study))
    unfinished = sweep.n_trials() - finished
    message = (f"{len(failed)} of {workers} workers failed (exit codes "
               f"{', '.join(map(str, failed))})")
    if unfinished > 0:
      raise errors.SweepError(f"{message}; {unfinished} trials unfinished: run the same "
                              f"command again to resume")
    out(f"{message}; the others finished the sweep, retrying the trials they left")
  return study
