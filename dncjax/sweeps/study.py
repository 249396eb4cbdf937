"""Hyperparameter sweeps of the char-LM run (experiments/alice.py) on Optuna.

A sweep is an Optuna study kept in a storage: by default an SQLite file, study.db, in
the sweep's folder; `storage=` a database URL (e.g. PostgreSQL) shared by workers on
several machines. Each trial is one alice.py run in <workdir>/trials/NNNN, trained for a
fixed budget of steps or seconds, reported to the pruner at each evaluation and scored
by its best validation BPC. Worker processes ask the study for trials until it holds
`trials` of them (an interrupted trial does not count: it is retried).

Interrupted trials. Each worker holds a lock file (workers/<host>-<pid>.lock) for its
life and tags its trials with it; a RUNNING trial of this host whose lock is free lost
its worker (killed, machine rebooted), so the next worker to look marks it FAIL and
queues a retry with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback),
which resumes from the trial's last checkpoint. Workers on other hosts are covered by
Optuna's heartbeat: a trial silent for GRACE_S seconds is failed and retried the same way.
Asking for trials happens under a file lock, so the workers of one machine never
overshoot the trial count; workers on k machines may overshoot it by at most k - 1.

A grid is queued in a fixed order (Space.grid_points), each point as a WAITING trial that
Optuna hands to one worker; a point queued twice by two machines at once runs once (the
later trial is discarded), so every point runs exactly once, its retries included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import multiprocessing
import os
import pathlib
import re
import socket
import sys
import threading
import time
import urllib.parse
import warnings
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import TrialState

from dncjax.charlm import job as charlm
from dncjax.training import checkpoint
from dncjax.sweeps import population
from dncjax.sweeps import space

HEARTBEAT_S = 20     # how often a running trial tells the storage it is alive
GRACE_S = 120        # a trial silent this long (on another host) is failed and retried
MAX_RETRY = 3        # retries of one trial before it stays failed
STUDY_ATTR = "dncjax_sweep"
GRID_ATTR = "grid_point"   # a grid trial's index in Space.grid_points()
DISCARDED = "discarded"    # a trial ended unrun: it does not count
HOST = socket.gethostname()


class SweepError(RuntimeError):
  """The sweep cannot go on (storage, study, workers): one-line message."""


@dataclasses.dataclass(frozen=True)
class Budget:
  """What each trial gets, and how often it is evaluated (and may be pruned)."""
  steps: int | None = None
  seconds: float | None = None
  eval_every: int = 100
  report_interval: int = 50
  sample_length: int = 0

  def __post_init__(self):
    if self.steps is None and self.seconds is None:
      raise ValueError("give each trial a budget: steps or seconds")
    for name in ("steps", "seconds"):
      value = getattr(self, name)
      if value is not None and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if self.eval_every <= 0 or self.report_interval <= 0:
      raise ValueError("eval_every and report_interval must be positive")


@dataclasses.dataclass(frozen=True)
class Sweep:
  workdir: str
  space: space.Space
  budget: Budget
  trials: int | None = None   # None: the grid's size (grid sampler) or 20
  sampler: str = "tpe"        # grid | random | tpe
  pruner: str = "median"      # median | halving | none
  storage: str | None = None  # None: sqlite:///<workdir>/study.db
  study: str | None = None    # None: the workdir's name
  data: str | None = None     # text file; None: alice29.txt
  seed: int = 0
  population: int = 1         # trials trained together as one vmapped program
  keep_top: int = 3           # trials whose checkpoints the report keeps

  def __post_init__(self):
    if self.sampler not in ("grid", "random", "tpe"):
      raise ValueError(f"sampler must be grid, random or tpe, got {self.sampler!r}")
    if self.pruner not in ("median", "halving", "none"):
      raise ValueError(f"pruner must be median, halving or none, got {self.pruner!r}")
    if self.sampler == "grid":
      self.space.grid()  # raises on ranges
    if self.trials is not None and self.trials <= 0:
      raise ValueError(f"trials must be positive, got {self.trials}")
    if self.population < 1 or self.keep_top < 0:
      raise ValueError("population must be >= 1 and keep_top >= 0")
    if self.seed < 0:
      raise ValueError(f"seed must be >= 0, got {self.seed}")
    shaped = [p.name for p in self.space.params if p.name not in population.VMAPPABLE]
    if self.population > 1 and shaped:
      raise ValueError(f"a population trains one program, so it can only sweep settings that "
                       f"keep array shapes ({', '.join(population.VMAPPABLE)}); not: "
                       f"{', '.join(shaped)}")

  @property
  def path(self) -> pathlib.Path:
    return pathlib.Path(self.workdir).absolute()

  def storage_url(self) -> str:
    return self.storage or f"sqlite:///{self.path / 'study.db'}"

  def study_name(self) -> str:
    return self.study or self.path.name

  def n_trials(self) -> int:
    if self.sampler == "grid":
      return min(self.trials or self.space.grid_size(), self.space.grid_size())
    return self.trials or 20

  def signature(self) -> dict:
    """The search a study was made for; another search under the same name is refused."""
    b = self.budget
    return json.loads(json.dumps({**self.space.signature(), "data": self.data,
                                  "budget": [b.steps, b.seconds, b.eval_every]}))


# ------------------------------------------------------------------------ the study


_QUERY_SECRET = re.compile(r"(?i)\b(password|passwd|pwd)=([^&\s]*)")


def _userinfo(url: str) -> tuple[str, str, str] | None:
  """(up to the user, the password, from the last `@` on) of `url`, or None: without a
  parser, so that a URL sqlalchemy cannot read (a bad port, an `@` in the password) is
  split as safely."""
  head, at, rest = url.rpartition("@")
  scheme, slashes, userinfo = head.partition("://")
  if not slashes:
    scheme, userinfo = "", head
  user, colon, password = userinfo.partition(":")
  if not at or not colon:
    return None
  return f"{scheme}{slashes}{user}", password, f"@{rest}"


def _shown(url: str) -> str:
  """`url` with its password (and any password= in its query) masked."""
  parts = _userinfo(url)
  if parts is not None:
    url = f"{parts[0]}:***{parts[2]}"
  return _QUERY_SECRET.sub(r"\1=***", url)


def _scrubbed(text: str, url: str) -> str:
  """`text` (a storage error) with `url` shown masked and its password, however decoded
  or parsed, replaced by ***."""
  secrets = {m.group(2) for m in _QUERY_SECRET.finditer(url)}
  parts = _userinfo(url)
  if parts is not None:
    secrets.add(parts[1])
  with contextlib.suppress(Exception):
    import sqlalchemy  # pylint: disable=import-outside-toplevel
    secrets.add(sqlalchemy.engine.make_url(url).password or "")
  secrets |= {urllib.parse.unquote(s) for s in secrets}
  text = text.replace(url, _shown(url))
  for secret in sorted(secrets - {"", "***"}, key=len, reverse=True):
    text = text.replace(secret, "***")
  return text


def _error_line(e: BaseException, url: str) -> str:
  text = _scrubbed(str(e), url).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
  kwargs = ({"connect_args": {"timeout": 120}} if url.startswith("sqlite")
            else {"pool_pre_ping": True})
  for attempt in range(5):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
      try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
            heartbeat_stale_trial_callback=_retry_callback())
      except Exception as e:  # sqlalchemy / driver errors of many kinds
        # workers starting together on a new database race to create its tables: the
        # loser sees the winner's tables or rows, or its lock; it tries again
        racing = ("IntegrityError" in type(e).__name__
                  or any(w in str(e) for w in ("already exists", "locked")))
        if attempt < 4 and racing:
          time.sleep(0.5 + attempt)
          continue
        raise SweepError(f"cannot open the study storage {_shown(url)}: "
                         f"{_error_line(e, url)}") from None
  raise AssertionError("unreachable")


def _retry_callback():
  return optuna.storages.RetryHeartbeatStaleTrialCallback(
      max_retry=MAX_RETRY, inherit_intermediate_values=True)


def make_sampler(sweep: Sweep, seed: int) -> optuna.samplers.BaseSampler:
  """The sampler of `sweep`; a grid's trials are all queued (see `queue_grid`), so it
  draws nothing there."""
  if sweep.sampler in ("grid", "random"):
    return optuna.samplers.RandomSampler(seed=seed)
  return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
  if sweep.pruner == "median":  # from the second evaluation on: early BPC says little
    return optuna.pruners.MedianPruner(n_startup_trials=2,
                                       n_warmup_steps=sweep.budget.eval_every)
  if sweep.pruner == "halving":
    return optuna.pruners.SuccessiveHalvingPruner()
  return optuna.pruners.NopPruner()


def open_study(sweep: Sweep) -> optuna.Study:
  """The sweep's study, created on first use; refused if it was made for another search."""
  storage = open_storage(sweep.storage_url())
  try:
    study = optuna.create_study(storage=storage, study_name=sweep.study_name(),
                                direction="minimize", load_if_exists=True,
                                sampler=make_sampler(sweep, sweep.seed),
                                pruner=make_pruner(sweep))
  except Exception as e:
    raise SweepError(f"cannot open study {sweep.study_name()!r} in "
                     f"{_shown(sweep.storage_url())}: "
                     f"{_error_line(e, sweep.storage_url())}") from None
  saved, wanted = study.user_attrs.get(STUDY_ATTR), sweep.signature()
  if saved is None:
    study.set_user_attr(STUDY_ATTR, wanted)
  elif saved != wanted:
    diff = [f"{k}: {saved.get(k)} (study) vs {wanted[k]} (now)" for k in wanted
            if saved.get(k) != wanted[k]]
    raise SweepError(f"study {sweep.study_name()!r} in {_shown(sweep.storage_url())} was made "
                     f"for another search ({'; '.join(diff)}): run it with its own settings, "
                     f"or choose another --study or --workdir")
  return study


def existing(workdir: str, storage: str | None = None, study: str | None = None,
             keep_top: int = 3) -> tuple[Sweep, optuna.Study]:
  """The sweep and study already in `workdir` (or `storage`), rebuilt from what the study
  recorded: for reports, without the command line that made it."""
  path = pathlib.Path(workdir).absolute()
  if storage is None and not (path / "study.db").exists():
    raise SweepError(f"no sweep in {path} (no study.db; give --storage if it lives elsewhere)")
  url, name = storage or f"sqlite:///{path / 'study.db'}", study or path.name
  try:
    found = optuna.load_study(study_name=name, storage=open_storage(url))
  except KeyError:
    raise SweepError(f"no study {name!r} in {_shown(url)}") from None
  sig = found.user_attrs.get(STUDY_ATTR)
  if sig is None:
    raise SweepError(f"study {name!r} in {_shown(url)} was not made by dncjax's sweep")
  searched = space.Space(tuple(space.Param.parse(t) for t in sig["params"]),
                         tuple(sorted(space.parse_fixed(t) for t in sig["fixed"])))
  steps, seconds, eval_every = sig["budget"]
  return Sweep(workdir, searched, Budget(steps, seconds, eval_every), storage=storage,
               study=study, data=sig["data"], keep_top=keep_top), found


def _trial_id(study: optuna.Study, number: int) -> int:
  storage = study._storage  # pylint: disable=protected-access
  return storage.get_trial_id_from_study_id_trial_number(
      storage.get_study_id_from_name(study.study_name), number)


def live_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
  """The trials that count: all but those failed and retried by a later one, and those
  discarded unrun (a grid point another trial holds)."""
  trials = study.get_trials(deepcopy=False)
  superseded = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
  return [t for t in trials if t.number not in superseded and DISCARDED not in t.user_attrs]


def _origin(t: optuna.trial.FrozenTrial) -> tuple[int, int]:
  """Orders trials by the one each retries (itself if none): the first holds its point."""
  return t.system_attrs.get("failed_trial", t.number), t.number


def queue_grid(sweep: Sweep, study: optuna.Study) -> None:
  """Queues (WAITING, with fixed parameters) each of the grid's first n_trials points that
  no counted trial holds. Workers on several machines may queue a point twice; `_claim`
  runs one of them only."""
  live = live_trials(study)
  held = {t.user_attrs.get(GRID_ATTR) for t in live}
  drawn = [t.system_attrs.get("fixed_params", t.params) for t in live]
  for i, point in enumerate(sweep.space.grid_points()[:sweep.n_trials()]):
    if i not in held and point not in drawn:  # drawn: by a study's trials of before
      study.enqueue_trial(point, user_attrs={GRID_ATTR: i})


def _claim(study: optuna.Study, trial) -> bool:
  """Whether a grid trial just asked runs its point: no counted trial ahead of it holds
  that point. If not (or it is no grid point: the queue ran dry), it is discarded."""
  frozen = study._storage.get_trial(trial._trial_id)  # pylint: disable=protected-access
  point = frozen.user_attrs.get(GRID_ATTR)
  ahead = [t for t in live_trials(study) if t.number != frozen.number
           and t.user_attrs.get(GRID_ATTR) == point and _origin(t) < _origin(frozen)]
  if point is not None and not ahead:
    return True
  trial.set_user_attr(DISCARDED, "not a grid point" if point is None
                      else f"grid point {point} is trial {ahead[0].number}'s")
  study.tell(trial, state=TrialState.FAIL)
  return False


def fail_and_retry(study: optuna.Study, number: int, why: str) -> None:
  """Marks RUNNING trial `number` FAIL (`why` in its user attrs) and queues its retry."""
  storage = study._storage  # pylint: disable=protected-access
  trial_id = _trial_id(study, number)
  try:
    storage.set_trial_user_attr(trial_id, "stopped_by", why)
    if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
      return
  except optuna.exceptions.UpdateFinishedTrialError:
    return  # another worker got there first
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    _retry_callback()(study, storage.get_trial(trial_id))


def _lock_is_held(path: str) -> bool:
  try:
    with open(path, "a") as f:
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        return True
      fcntl.flock(f, fcntl.LOCK_UN)
      return False
  except OSError:
    return False


def reap_dead_trials(study: optuna.Study) -> list[int]:
  """Fails and retries the RUNNING trials of this host whose worker is gone; also those
  of any host whose heartbeat stopped. Returns the numbers of this host's ones."""
  dead = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
          if t.user_attrs.get("host") == HOST
          and not _lock_is_held(t.user_attrs.get("worker_lock", ""))]
  for number in dead:
    fail_and_retry(study, number, "worker died")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    optuna.storages.fail_stale_trials(study)
  return dead


@contextlib.contextmanager
def file_lock(path: pathlib.Path):
  """An exclusive flock on `path` while inside (released by the OS if the process dies)."""
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield f
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


class _Heartbeat:
  """Records a heartbeat for a running trial every HEARTBEAT_S seconds, in a thread."""

  def __init__(self, study: optuna.Study, numbers: list[int]):
    self._storage = study._storage  # pylint: disable=protected-access
    self._ids = [_trial_id(study, n) for n in numbers]
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _run(self):
    while True:
      for trial_id in self._ids:
        with contextlib.suppress(Exception):  # a missed beat is harmless
          self._storage.record_heartbeat(trial_id)
      if self._stop.wait(HEARTBEAT_S):
        return

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


# ------------------------------------------------------------------------ the workers


def _ask(sweep: Sweep, study: optuna.Study, lock_path: str, worker: int):
  """Up to `population` trials to run now, with their values; [] when the sweep is full."""
  with file_lock(sweep.path / "ask.lock"), warnings.catch_warnings():
    # ask/tell with heartbeats: this module keeps the beat itself (see _Heartbeat)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
    reap_dead_trials(study)
    grid = sweep.sampler == "grid"
    if grid:
      queue_grid(sweep, study)
    live = live_trials(study)
    waiting = sum(t.state == TrialState.WAITING for t in live)
    wanted = min(sweep.population, waiting + max(0, sweep.n_trials() - len(live)))
    asked = []
    while len(asked) < wanted:
      trial = study.ask()
      if grid and not _claim(study, trial):
        waiting = sum(t.state == TrialState.WAITING for t in live_trials(study))
        wanted = min(wanted, len(asked) + waiting)
        continue
      values = sweep.space.suggest(trial)
      workdir = trial.user_attrs.get("workdir")  # a retry inherits its trial's folder
      if workdir is None or sweep.population > 1:
        workdir = f"trials/{trial.number:04d}"
      for key, value in (("host", HOST), ("pid", os.getpid()), ("worker", worker),
                         ("worker_lock", lock_path), ("workdir", workdir)):
        trial.set_user_attr(key, value)
      asked.append((trial, values))
    return asked


def trial_options(sweep: Sweep, folder: pathlib.Path, resume: bool) -> charlm.Options:
  b = sweep.budget
  return charlm.Options(workdir=str(folder), resume=resume, steps=b.steps, timelimit=b.seconds,
                        report_interval=b.report_interval, eval_every=b.eval_every,
                        checkpoint_every=b.eval_every, keep=1, sample_length=b.sample_length,
                        dynamic_eval=False, progress_bar=False)


def describe(values: dict[str, Any]) -> str:
  return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in values.items())


def _finish(study, trial, summary: dict, say) -> None:
  """Tells the study how a trial ended (COMPLETE with its best validation BPC, or PRUNED)."""
  for key in ("step", "elapsed_s", "best_step", "stopped_by"):
    trial.set_user_attr(key, summary.get(key))
  value = summary.get("best_val_bpc")
  where = f"(best at iter {summary.get('best_step')}, {summary['step']} iters, " \
          f"{summary['elapsed_s']:.1f} s)"
  if summary.get("stopped_by") == "pruned":
    study.tell(trial, state=TrialState.PRUNED)
    say(f"trial {trial.number} pruned at iter {summary['step']}: {value:.4f} BPC {where}")
  elif value is None or not np.isfinite(value):
    trial.set_user_attr("error", "no validation BPC (empty validation split?)")
    study.tell(trial, state=TrialState.FAIL)
    say(f"trial {trial.number} failed: no validation BPC")
  else:
    study.tell(trial, value)
    say(f"trial {trial.number} done: {value:.4f} BPC {where}")


def _failed(study, trial, error: BaseException, say) -> None:
  trial.set_user_attr("error", f"{type(error).__name__}: {error}")
  study.tell(trial, state=TrialState.FAIL)
  say(f"trial {trial.number} failed: {error}")


def run_trial(sweep: Sweep, study: optuna.Study, trial, values: dict, say) -> None:
  folder = sweep.path / trial.user_attrs["workdir"]
  folder.mkdir(parents=True, exist_ok=True)
  resume = checkpoint.holds_checkpoints(folder / "checkpoints")
  config = dataclasses.replace(sweep.space.config(values), data=sweep.data)
  say(f"trial {trial.number}{' (resumed)' if resume else ''}: {describe(values)} -> "
      f"{folder.relative_to(sweep.path)}")

  def on_eval(step, metrics):
    if "val_bpc" not in metrics:
      return None
    trial.report(metrics["val_bpc"], step)
    return "pruned" if trial.should_prune() else None

  with open(folder / "log.txt", "a") as log:
    def to_log(line):
      log.write(line + "\n")
      log.flush()
    try:
      summary = charlm.train_and_evaluate(config, trial_options(sweep, folder, resume),
                                          out=to_log, on_eval=on_eval)
    except KeyboardInterrupt:
      fail_and_retry(study, trial.number, "interrupted")
      raise
    except (ValueError, OSError) + charlm.error_types() as e:
      _failed(study, trial, e, say)
      return
  _finish(study, trial, summary, say)


def run_population(sweep: Sweep, study: optuna.Study, asked: list, say) -> None:
  """Trains the asked trials as one vmapped population (dncjax.population); a trial the
  pruner stops is frozen in the program. Interrupted populations restart from scratch."""
  folders = [sweep.path / t.user_attrs["workdir"] for t, _ in asked]
  configs = [dataclasses.replace(sweep.space.config(v), data=sweep.data) for _, v in asked]
  for (trial, values), folder in zip(asked, folders):
    say(f"trial {trial.number} (population of {len(asked)}): {describe(values)} -> "
        f"{folder.relative_to(sweep.path)}")
    folder.mkdir(parents=True, exist_ok=True)

  def on_eval(i, step, val_bpc):
    trial = asked[i][0]
    trial.report(val_bpc, step)
    return "pruned" if trial.should_prune() else None

  logs = [open(f / "log.txt", "a") for f in folders]  # pylint: disable=consider-using-with

  def to_logs(line):
    for log in logs:
      log.write(line + "\n")
      log.flush()
  b = sweep.budget
  try:
    summaries = population.train_population(
        configs, folders, b.steps, b.seconds, b.eval_every, on_eval, out=to_logs,
        report_interval=b.report_interval, checkpoint_every=b.eval_every, keep=1)
  except KeyboardInterrupt:
    for trial, _ in asked:
      fail_and_retry(study, trial.number, "interrupted")
    raise
  except (ValueError, OSError) + charlm.error_types() as e:
    for trial, _ in asked:
      _failed(study, trial, e, say)
    return
  finally:
    for log in logs:
      log.close()
  for (trial, _), summary in zip(asked, summaries):
    if summary["stopped_by"] == "nan":
      _failed(study, trial, charlm.TrainingError(
          f"the loss became NaN/Inf at iter {summary['step'] + 1}"), say)
    else:
      _finish(study, trial, summary, say)


def work(sweep: Sweep, worker: int = 0, out: Callable[[str], None] = print) -> int:
  """One worker: asks for trials and runs them until the sweep is full. Returns how many."""
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = open_study(sweep)
  # a seed of its own per worker and per resumption: no two draw the same sequence
  start = len(study.get_trials(deepcopy=False))
  study.sampler = make_sampler(
      sweep, int(np.random.SeedSequence([sweep.seed, worker, start]).generate_state(1)[0]))
  (sweep.path / "workers").mkdir(parents=True, exist_ok=True)
  lock_path = sweep.path / "workers" / f"{HOST}-{os.getpid()}.lock"
  prefix = f"[w{worker}] " if worker else ""
  ran = 0

  def say(line):
    out(prefix + line)

  with file_lock(lock_path):
    try:
      while True:
        asked = _ask(sweep, study, str(lock_path), worker)
        if not asked:
          return ran
        with _Heartbeat(study, [t.number for t, _ in asked]):
          if sweep.population > 1:
            run_population(sweep, study, asked, say)
          else:
            run_trial(sweep, study, *asked[0], say)
        ran += len(asked)
    finally:
      lock_path.unlink(missing_ok=True)


def _worker_process(sweep: Sweep, worker: int) -> None:
  """Entry point of a spawned worker: errors as one line, Ctrl-C as exit 130."""
  try:
    work(sweep, worker, out=lambda line: print(line, flush=True))
  except KeyboardInterrupt:
    sys.exit(130)
  except (SweepError, ValueError, OSError) + charlm.error_types() as e:
    print(f"[w{worker}] error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


def run(sweep: Sweep, workers: int = 1, out: Callable[[str], None] = print) -> optuna.Study:
  """Runs (or resumes) the sweep with `workers` processes here; returns the study."""
  if workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  sweep.space.check(sweep.data)  # every setting and range end: fail before any trial
  sweep.path.mkdir(parents=True, exist_ok=True)
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = open_study(sweep)
  with file_lock(sweep.path / "ask.lock"):
    dead = reap_dead_trials(study)
  live = live_trials(study)
  done = sum(t.state.is_finished() for t in live)
  out(f"study {study.study_name!r} in {_shown(sweep.storage_url())}: {done} of "
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
    unfinished = sweep.n_trials() - sum(t.state.is_finished() for t in live_trials(study))
    message = (f"{len(failed)} of {workers} workers failed (exit codes "
               f"{', '.join(map(str, failed))})")
    if unfinished > 0:
      raise SweepError(f"{message}; {unfinished} trials unfinished: run the same command "
                       f"again to resume")
    out(f"{message}; the others finished the sweep, retrying the trials they left")
  return study
