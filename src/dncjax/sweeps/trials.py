"""The trials in a study: which count, queueing and claiming grid points, failing and
retrying trials whose worker died, heartbeats of running trials, and the locks this uses.

Each worker holds a lock file (workers/<host>-<pid>.lock) for its life and tags its trials
with it; a RUNNING trial of this host whose lock is free lost its worker (killed, machine
rebooted), so the next worker to look marks it FAIL and queues a retry with the same
parameters, which resumes from the trial's last checkpoint. Trials of other hosts are
covered by the storage's heartbeat (storage.py): a silent one is failed and retried the
same way.

A grid is queued in a fixed order (Space.grid_points), each point as a WAITING trial that
Optuna hands to one worker; a point queued twice by two machines at once runs once (the
later trial is discarded), so every point runs exactly once, its retries included.
"""

from __future__ import annotations

import contextlib
import fcntl
import pathlib
import socket
import threading
import warnings

import optuna
from optuna.trial import TrialState

from dncjax.sweeps import storage as sweep_storage, study as sweep_lib

GRID_ATTR = "grid_point"   # a grid trial's index in Space.grid_points()
DISCARDED = "discarded"    # a trial ended unrun: it does not count
HOST = socket.gethostname()


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


def queue_grid(sweep: sweep_lib.Sweep, study: optuna.Study) -> None:
  """Queues (WAITING, with fixed parameters) each of the grid's first n_trials points that
  no counted trial holds. Workers on several machines may queue a point twice; `claim`
  runs one of them only."""
  live = live_trials(study)
  held = {t.user_attrs.get(GRID_ATTR) for t in live}
  drawn = [t.system_attrs.get("fixed_params", t.params) for t in live]
  for i, point in enumerate(sweep.space.grid_points()[:sweep.n_trials()]):
    if i not in held and point not in drawn:  # drawn: by a study's trials of before
      study.enqueue_trial(point, user_attrs={GRID_ATTR: i})


def claim(study: optuna.Study, trial) -> bool:
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
    sweep_storage.retry_callback()(study, storage.get_trial(trial_id))
  for retry in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
    if retry.system_attrs.get("retry_history", [None])[-1] == number:
      # the inherited lock is the dead worker's: untagged until a worker takes the retry
      storage.set_trial_user_attr(_trial_id(study, retry.number), "worker_lock", "")


def _lock_is_held(path: str) -> bool:
  """Whether a live process holds the flock on `path` (a worker's lock file)."""
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
  of any host whose heartbeat stopped. Returns the numbers of this host's ones. A trial
  not yet tagged with its worker's lock is being handed out (by another sweep folder
  sharing the storage, whose ask lock is not ours): it is left alone."""
  dead = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
          if t.user_attrs.get("host") == HOST and t.user_attrs.get("worker_lock")
          and not _lock_is_held(t.user_attrs["worker_lock"])]
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


class Heartbeat:
  """Records a heartbeat for running trials every HEARTBEAT_S seconds, in a thread."""

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
      if self._stop.wait(sweep_storage.HEARTBEAT_S):
        return

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
