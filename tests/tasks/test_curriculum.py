"""The curriculum of the tasks job (dncjax.tasks.curriculum): the level grows only at
scheduled evaluations that meet the threshold and never beyond max_length; batches keep
their shapes whatever the level (nothing recompiles); a run resumed mid-curriculum goes on
exactly as an uninterrupted one; its settings refuse bad values naming the flag."""

import dataclasses
import importlib.util
import json
import pathlib
import types

import jax
import numpy as np
import pytest

from dncjax.tasks import config as tasks_config, curriculum, generators, job as tasks, metrics
from dncjax.tasks import report
from dncjax.training import checkpoint, loop
from dncjax.training.config import RunOptions, Schedule

REPO = pathlib.Path(__file__).resolve().parents[2]
TASKS = [generators.TaskConfig("copy", bits=3, min_length=1, max_length=6),
         generators.TaskConfig("repeat_copy", bits=2, min_length=1, max_length=4),
         generators.TaskConfig("associative_recall", bits=3, min_length=2, max_length=5,
                               item_length=2)]


def copy_lengths(batch) -> list[int]:
  """The length L of each copy sequence of a batch: its answer phase has L steps."""
  mask = np.asarray(batch.targets[1] if hasattr(batch, "targets") else batch.mask)
  return [int(n) for n in mask.sum(-1)]


def test_the_level_grows_only_on_success_at_scheduled_evaluations(monkeypatch):
  task = TASKS[0]  # copy, lengths 1..6
  config = tasks_config.RunConfig(task=task, batch_size=8, curriculum=curriculum.CurriculumConfig(
      True, start=2, increment=3, threshold=0.5))
  lines, seen = [], []
  job = tasks.TaskJob(tasks_config.Options(eval_sequences=16), out=lines.append)
  job.config, job.dtype, job.sets, job.model, job.optimizer = config, "float32", {}, None, None
  job.run_options = RunOptions("unused", schedule=Schedule(steps=20, eval_every=2))
  monkeypatch.setattr(tasks.train, "init_train_state", lambda *args: "state")
  scores = iter([1.0, 0.0, 0.5, float("nan"), 0.2])  # bit errors the stub evaluation gives

  def stub(params, batch):
    seen.append((batch.inputs.shape, set(copy_lengths(batch))))
    return {"bit_errors": next(scores)}

  job.evaluate_fn, state = stub, types.SimpleNamespace(params=None)
  assert job.fresh() == {"train": "state"} and job.level == 2
  job.position = 0
  logged = []
  for step in (2, 3, 4, 6, 8, 10):  # 3: a run's last evaluation, off the schedule
    logged.append(job.evaluate(state, step))
    drawn = {n for _ in range(4) for n in copy_lengths(job.next_batch())}
    assert max(drawn) <= job.level and min(drawn) >= task.min_length
  assert [r["curriculum_level"] for r in logged] == [2, 2, 2, 5, 5, 6]
  assert [r.get("curriculum_bit_errors") for r in logged][:3] == [1.0, 0.0, 0.5]
  assert "curriculum_bit_errors" not in logged[-1]  # the last level: nothing left to judge
  # judged on fixed sequences of exactly the level's length, padded to the task's T
  assert seen == [((16, task.time_steps, 4), {level}) for level in (2, 2, 2, 5, 5)]
  assert job.curriculum.reached == [(2, 0), (5, 4), (6, 8)]  # 8: capped at max_length
  assert sum("curriculum: level" in line for line in lines) == 2
  summary = job.summarise(loop.LoopResult(10, state, "steps", 1.0, 10), [])
  assert summary["curriculum_level"] == 6
  assert summary["curriculum_reached"] == {"2": 0, "5": 4, "6": 8}
  resumed = tasks.TaskJob(tasks_config.Options(eval_sequences=16))
  resumed.config, resumed.curriculum = config, curriculum.Curriculum(config.curriculum, task)
  resumed.restored({}, {"step": 8, **json.loads(json.dumps(job.meta(8)))})
  assert resumed.curriculum.reached == job.curriculum.reached
  with pytest.raises(checkpoint.CheckpointError, match="keeps no curriculum level"):
    resumed.restored({}, {"step": 8})


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_batches_keep_their_shapes_whatever_the_level(task):
  config = tasks_config.RunConfig(task=task, batch_size=6, seed=3)
  rng = lambda: np.random.default_rng([3, 0, 7])  # iteration 8's
  # without a curriculum, the batches are the task's own draws
  plain = tasks.batch_at(config, 7)
  assert all(np.array_equal(a, b) for a, b in zip(plain, generators.sample(task, rng(), 6)))
  total = jax.jit(lambda batch: batch.inputs.sum() + batch.targets[1].sum())
  for level in range(task.min_length, task.max_length + 1):
    seqs = tasks.batch_at(config, 7, level)
    assert all(a.shape == b.shape for a, b in zip(seqs, plain))
    # the draws of the task cut to the level, then zeros up to the task's T
    short = generators.sample(dataclasses.replace(task, max_length=level), rng(), 6)
    T = short.inputs.shape[1]
    for padded, drawn in zip(seqs, short):
      assert np.array_equal(padded[:, :T], drawn) and not padded[:, T:].any()
    total(metrics.to_batch(seqs))
  assert total._cache_size() == 1  # pylint: disable=protected-access


def test_settings_refuse_bad_values_naming_the_flag():
  task = TASKS[2]  # associative recall, 2..5 items
  for kwargs, text in [
      (dict(enabled=True, start=0), "--curriculum_start must be a positive integer, got 0"),
      (dict(enabled=True, increment=0), "--curriculum_increment must be a positive integer"),
      (dict(enabled=True, threshold=-1.0), "--curriculum_threshold must be >= 0"),
      (dict(threshold=0.1), "--curriculum_threshold needs --curriculum")]:
    with pytest.raises(ValueError, match=text):
      curriculum.CurriculumConfig(**kwargs)
  for start in (1, 6):
    with pytest.raises(ValueError, match=r"--curriculum_start must be in .*\(2\.\.5\)"):
      tasks_config.RunConfig(task=task, curriculum=curriculum.CurriculumConfig(True, start))
  on = curriculum.CurriculumConfig(True)
  assert curriculum.Curriculum(on, task).level == 2  # the default start: min_length
  with pytest.raises(ValueError, match="--curriculum needs evaluations"):
    curriculum.check_schedule(on, 0)
  d = tasks_config.RunConfig()
  changed = tasks_config.RunConfig(curriculum=curriculum.CurriculumConfig(True, start=3))
  assert report.options_label(changed, d) == "copy curriculum curriculum_start=3"
  assert tasks_config.RunConfig.from_json(changed.to_json()) == changed


# ----- experiments/tasks.py with --curriculum: resumed mid-curriculum ---------------------

spec = importlib.util.spec_from_file_location("tasks_script", REPO / "experiments" / "tasks.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

TINY = ["--hidden", "8", "--memory_size", "6", "--word_size", "4", "--bits", "3",
        "--max_length", "3", "--batchsize", "2", "--eval_sequences", "4", "--report_interval",
        "1", "--eval_every", "3", "--optimizer", "adam", "--lr", "0.01", "--fp64",
        "--curriculum", "--curriculum_start", "1", "--curriculum_threshold", "1e9"]


def logged(workdir, key):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [(r["step"], r[key]) for r in map(json.loads, lines) if key in r]


@pytest.mark.slow
def test_a_run_resumed_mid_curriculum_goes_on_as_an_uninterrupted_one(tmp_path):
  straight, split = tmp_path / "straight", tmp_path / "split"
  script.main(["--workdir", str(straight), *TINY, "--steps", "9"])
  script.main(["--workdir", str(split), *TINY, "--steps", "3"])  # saved at level 2
  saved = checkpoint.Checkpoints(split / "checkpoints", create=False)
  try:
    step, meta = saved.restore_meta()
    assert step == 3 and meta["curriculum"] == {"level": 2, "reached": [[1, 0], [2, 3]]}
  finally:
    saved.close()
  script.main(["--workdir", str(split), *TINY, "--steps", "9", "--resume"])
  assert logged(straight, "curriculum_level") == [(3, 1), (6, 2), (9, 3)]
  for key in ("train_loss", "curriculum_level", "curriculum_bit_errors", "eval_loss"):
    assert logged(split, key) == logged(straight, key)  # float64: identical
  results = [json.loads((w / "results.json").read_text()) for w in (straight, split)]
  assert results[0]["curriculum_reached"] == {"1": 0, "2": 3, "3": 6}
  assert results[1]["curriculum_reached"] == results[0]["curriculum_reached"]
  a, b = tasks.restore(straight)[1], tasks.restore(split)[1]
  assert all(np.array_equal(a[k], b[k]) for k in a)
