"""Reaping the trials whose worker died: a trial still being handed out (not yet tagged
with its worker's lock, e.g. by another sweep folder sharing the storage) is left alone."""

import optuna
from optuna.trial import TrialState

from dncjax.sweeps import trials


def _study(tmp_path):
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  return optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")


def test_a_trial_being_handed_out_is_not_reaped(tmp_path):
  study = _study(tmp_path)
  trial = study.ask()
  trial.set_user_attr("host", trials.HOST)  # its worker_lock comes next
  assert trials.reap_dead_trials(study) == []
  assert study.get_trials()[0].state == TrialState.RUNNING


def test_a_trial_whose_worker_lock_is_free_is_failed_and_retried_untagged(tmp_path):
  study = _study(tmp_path)
  trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
  trial.set_user_attr("host", trials.HOST)
  trial.set_user_attr("worker_lock", str(tmp_path / "gone.lock"))  # nobody holds it
  assert trials.reap_dead_trials(study) == [0]
  first, retry = study.get_trials()
  assert first.state == TrialState.FAIL and retry.state == TrialState.WAITING
  assert retry.params == first.params and retry.user_attrs["worker_lock"] == ""


def test_a_trial_whose_worker_holds_its_lock_is_alive(tmp_path):
  study = _study(tmp_path)
  trial = study.ask()
  lock = tmp_path / "alive.lock"
  trial.set_user_attr("host", trials.HOST)
  trial.set_user_attr("worker_lock", str(lock))
  with trials.file_lock(lock):
    assert trials.reap_dead_trials(study) == []
  assert study.get_trials()[0].state == TrialState.RUNNING
