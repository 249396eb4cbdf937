"""The tasks job: any registered model trained on copy, repeat copy or associative recall.

`train_and_evaluate` runs `TaskJob` on the run skeleton (`dncjax.training.run`): batches
drawn as a function of (seed, step, curriculum level), so a resumed run sees what an
uninterrupted one would; evaluation on fixed sequences never trained on (and at each of
`eval_lengths`, to test generalisation); with `--curriculum`, the level grows at the
evaluations that meet its threshold (`dncjax.tasks.curriculum`); checkpoints,
metrics.jsonl, loss.png, bit_errors.png and results.json in the workdir.
experiments/tasks.py is its command line.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import jax
import numpy as np

from dncjax import configs, models
from dncjax.tasks import (config as config_lib, curriculum as curriculum_lib, generators, metrics,
                          selection as selection_lib)
from dncjax.tasks.config import MODEL_DEFAULTS, Options, RunConfig, defaults_for
from dncjax.training import checkpoint, loop, losses, optim, plots, run, train

KIND = "task"


def build_model(config: RunConfig):
  """(model, optimizer) of `config`, sized for its task."""
  models.enable_x64_for(config.model)
  model = models.build(dataclasses.replace(config.model, input_size=config.task.input_size,
                                           output_size=config.task.output_size))
  train.check_fits(model)
  return model, optim.make(config.optim)


@functools.lru_cache(maxsize=8)
def compiled(config: RunConfig):
  """(model, optimizer, jitted train step, jitted evaluate) of a config, built once per
  process, so runs of one config (e.g. a run and its resumption) compile once."""
  model, optimizer = build_model(config)
  train_step = train.make_train_step(model, optimizer, losses.sigmoid_cross_entropy,
                                     metrics_fn=metrics.task_metrics)
  return model, optimizer, train_step, metrics.make_evaluate(model)


def batch_at(config: RunConfig, step: int, level: int | None = None) -> generators.Sequences:
  """The training batch of iteration `step` + 1 at curriculum `level` (None: the task's
  `max_length`): a function of (seed, step, level) alone, so a resumed run draws exactly
  the batches of an uninterrupted one. Whatever the level, it is padded to the task's T."""
  task = config.task if level is None else curriculum_lib.up_to(config.task, level)
  return generators.sample(task, np.random.default_rng([config.seed, 0, step]),
                           config.batch_size, time_steps=config.task.time_steps)


def eval_sets(config: RunConfig, options: Options) -> dict[str, generators.Sequences]:
  """Fixed evaluation sequences, drawn apart from the training stream."""
  sets = {"eval": generators.sample(config.task, np.random.default_rng([config.seed, 1]),
                                    options.eval_sequences)}
  sets.update(generators.sets_at_lengths(config.task, config.seed, 2, options.eval_lengths,
                                         options.eval_sequences, "eval"))
  if options.select_length is not None:
    sets.update(selection_lib.select_sets(config.task, config.seed, options.select_length,
                                          options.eval_sequences))
  return sets


class TaskJob(run.Job):
  """Sequences of one task from the initial state; loss in nats, bit errors per sequence."""
  kind, config_cls, model_defaults, other_folders = KIND, RunConfig, MODEL_DEFAULTS, ("best",)
  unit, metric, extra, scale = "seq", "loss", ("bit_errors",), 1.0

  def __init__(self, options: Options = Options(), out=print):
    super().__init__(out)
    self.options = options
    self.curriculum: curriculum_lib.Curriculum | None = None  # with --curriculum
    self.level_set = (None, None)  # (level, the batch it is judged on)
    self.selection: selection_lib.Selection | None = None  # with --select_length
    self.selected_record = None  # the checkpoint's record of the choice, if any

  def build(self, config: RunConfig, meta: dict | None) -> None:
    """Takes the config's compiled model, optimiser, train step and evaluation (`compiled`)
    and draws the evaluation sets."""
    curriculum_lib.check_schedule(config.curriculum, self.run_options.schedule.eval_every)
    selection_lib.check_memory_size(config.model, self.options.test_memory_size)
    if models.enable_x64_for(config.model):
      self.out(models.X64_NOTICE)
    self.model, self.optimizer, self.train_step, self.evaluate_fn = compiled(config)
    self.dtype = config.model.dtype
    self.items_per_step = config.batch_size
    self.sets = {name: metrics.to_batch(seqs, self.dtype)
                 for name, seqs in eval_sets(config, self.options).items()}

  def fresh(self) -> dict:
    """The TrainState of a fresh run, initialised from the config's seed; the curriculum
    (if on) at its first level."""
    if self.config.curriculum.enabled:
      self.curriculum = curriculum_lib.Curriculum(self.config.curriculum, self.config.task)
    return {"train": train.init_train_state(self.model, self.optimizer,
                                            jax.random.key(self.config.seed),
                                            self.config.batch_size)}

  def restored(self, items: dict, meta: dict) -> dict:
    """Takes up the checkpoint's curriculum level (and when each level was reached)."""
    if self.curriculum is not None:
      if "curriculum" not in meta:
        raise checkpoint.CheckpointError(f"the checkpoint at iter {meta['step']} keeps no "
                                         f"curriculum level")
      self.curriculum = curriculum_lib.Curriculum.from_json(
          self.config.curriculum, self.config.task, meta["curriculum"])
    self.selected_record = meta.get("selected")
    return items

  def meta(self, step: int) -> dict:
    """A checkpoint's curriculum state (level and when each was reached) and record of the
    selected parameters, if any."""
    meta = {} if self.curriculum is None else {"curriculum": self.curriculum.to_json()}
    return meta if self.selection is None else {**meta, "selected": self.selection.record}

  @property
  def level(self) -> int | None:
    """The curriculum's level (the longest sequence trained on), or None without one."""
    return None if self.curriculum is None else self.curriculum.level

  def begin(self, items: dict, step: int, resume: bool) -> None:
    """Sets the batch position to `step`; prints the task and the model."""
    self.position = step
    self.open_selection(resume)
    n_params = sum(p.size for p in jax.tree.leaves(items["train"].params))
    self.out(f"task {self.config.task}; T = {self.config.task.time_steps}")
    self.out(f"model {self.config.model_name} {self.model.config}; {n_params:,} parameters; "
             f"workdir {self.workdir}")
    if self.curriculum is not None:
      c = self.config.curriculum
      self.out(f"curriculum: level {self.level} of {self.config.task.max_length}; it grows by "
               f"{c.increment} at each evaluation with at most {c.threshold:g} bit errors per "
               f"sequence at its length")

  def next_batch(self):
    """The batch at the current position (`batch_at`); advances the position."""
    self.position += 1
    return metrics.to_batch(batch_at(self.config, self.position - 1, self.level), self.dtype)

  def evaluate(self, state, step: int) -> dict:
    """The metrics (loss, bit_errors, perfect) of each evaluation set, as '<set>_<metric>',
    and the curriculum's (`judge`)."""
    out = {f"{name}_{key}": float(value) for name, batch in self.sets.items()
           for key, value in self.evaluate_fn(state.params, batch).items()}
    self.choose(state, step, out)
    return out if self.curriculum is None else {**out, **self.judge(state, step)}

  def open_selection(self, resume: bool) -> None:
    """With --select_length: the Selection of this run's best/, taking up the record of
    the checkpoint it resumes from (`restored`) or best/'s own."""
    if self.options.select_length is not None:
      self.selection = selection_lib.Selection(self.workdir, self.options.select_length)
      self.selection.take_up(self.selected_record, resume)

  def choose(self, state, step: int, metrics_: dict) -> None:
    """Keeps `state` in best/ when its held-out bit errors (in the evaluation's
    `metrics_`) are the fewest so far (as few: the lower held-out loss)."""
    chosen = self.selection
    if chosen is not None and chosen.consider(state, step, metrics_[chosen.key],
                                              metrics_[chosen.tie_key]):
      chosen.save(step, run.checkpoint_meta(self.kind, self.config, self.model.config, step,
                                            0.0, **self.meta(step)))

  def judge(self, state, step: int) -> dict:
    """The curriculum's part of an evaluation: the level trained at and, until the last
    level, the bit errors on its fixed sequences; at a scheduled evaluation (every
    --eval_every iterations, not one a run ends with) that meets the threshold, the level
    grows for the batches from iteration `step` + 1 on."""
    level = self.level
    if self.curriculum.done:
      return {"curriculum_level": level}
    if self.level_set[0] != level:
      self.level_set = (level, metrics.to_batch(curriculum_lib.level_set(
          self.config.task, self.config.seed, level, self.options.eval_sequences), self.dtype))
    errors = float(self.evaluate_fn(state.params, self.level_set[1])["bit_errors"])
    every = self.run_options.schedule.eval_every
    if every and step % every == 0 and self.curriculum.update(step, errors):
      self.out(f"  curriculum: level {level} -> {self.level} at iter {step} ({errors:.4f} "
               f"bit errors per sequence at length {level})")
    return {"curriculum_level": level, "curriculum_bit_errors": errors}

  def summarise(self, result: loop.LoopResult, logged: list[dict]) -> dict:
    """results.json: the last metrics, when eval bit errors fell below the target, the
    iteration each curriculum level was reached at, the selected parameters' step,
    held-out bit errors and loss and, after a run that ended on its budget, the test scores."""
    summary = summarize(logged, result, self.options.target)
    if self.curriculum is not None:
      summary.update(self.curriculum.summary())
    if self.selection is not None:
      record = self.selection.record
      summary.update(select_length=record["length"], selected_step=record["step"],
                     selected_bit_errors=record["bit_errors"],
                     selected_loss=record.get("loss"))
    if self.options.test_lengths and result.reason in ("steps", "timelimit"):
      summary.update(self.test_scores(result.state))
    return summary

  def test_scores(self, state) -> dict:
    """The metrics of the test sets (`selection.test_sets`), scored once with the last
    parameters (test_len<L>_<metric>) and the selected ones (selected_test_len<L>_...)."""
    o = self.options
    evaluate = selection_lib.test_evaluate(self.model.config, o.test_memory_size)
    chosen = {"": state}
    selected = None if self.selection is None else self.selection.selected(state)
    if selected is not None:
      chosen["selected_"] = selected
    scores = {} if o.test_memory_size is None else {"test_memory_size": o.test_memory_size}
    for name, seqs in selection_lib.test_sets(self.config.task, self.config.seed,
                                              o.test_lengths, o.eval_sequences).items():
      batch = metrics.to_batch(seqs, self.dtype)
      for prefix, chosen_state in chosen.items():
        scores.update({f"{prefix}{name}_{key}": float(value)
                       for key, value in evaluate(chosen_state.params, batch).items()})
    return scores

  def close(self) -> None:
    """Waits for best/'s last save and closes it."""
    if self.selection is not None:
      self.selection.close()

  def finish(self, result: loop.LoopResult, summary: dict, logged: list[dict]) -> None:
    """Plots loss.png and bit_errors.png (with the curriculum's level, if any) and prints
    the final bit errors."""
    title = f"{self.config.model_name} on {self.config.task.name}"
    for metric, ylabel in (("loss", "nats per sequence"),
                           ("bit_errors", "bit errors per sequence")):
      keys = (f"train_{metric}", *(f"{name}_{metric}" for name in self.sets))
      if self.curriculum is not None and metric == "bit_errors":
        keys += ("curriculum_bit_errors",)
      fig = plots.metrics_figure(logged, title, keys, ylabel)
      if self.curriculum is not None and metric == "bit_errors":
        curriculum_lib.draw_levels(fig.axes[0], self.curriculum.reached, result.step,
                                   self.config.task.max_length)
      fig.savefig(self.workdir / f"{metric}.png", dpi=110)
    self.out(f"stopped by {result.reason} at iter {result.step}: " + ", ".join(
        f"{k} {v:.4f}" for k, v in summary.items() if k.endswith("bit_errors")))


def summarize(logged: list[dict], result: loop.LoopResult, target: float) -> dict:
  """The last training and evaluation metrics, and when eval bit errors fell below target."""
  summary = {"step": result.step, "elapsed_s": result.elapsed, "stopped_by": result.reason}
  for key in ("train_loss", "train_bit_errors"):
    rows = [r for r in logged if key in r]
    if rows:
      summary[key] = rows[-1][key]
  evals = [r for r in logged if "eval_bit_errors" in r]
  if evals:
    summary.update({k: v for k, v in evals[-1].items() if k.startswith("eval")})
    reached = [r for r in evals if r["eval_bit_errors"] < target]
    if reached:
      summary[f"time_to_{target}_bit_errors_s"] = reached[0]["time"]
      summary[f"iter_to_{target}_bit_errors"] = reached[0]["step"]
  return summary


def train_and_evaluate(options: Options, run_options: run.RunOptions,
                       given: configs.Given = configs.Given(), out=print) -> dict:
  """Runs (or resumes) a task run in `run_options.workdir`; returns results.json's summary.
  A fresh run's flags `given` go on the defaults of the task they name (--clip_norm 0:
  no clipping). The run holds the workdir's lock (dncjax.training.workdir) while it runs."""
  given = config_lib.as_run_settings(given)
  return run.run(TaskJob(options, out), defaults_for(given), given, run_options)


def restore(workdir: str | pathlib.Path, folder: str = "checkpoints"):
  """(model, params, config, step) from the latest checkpoint of a task run (`folder`
  "best": the parameters chosen at --select_length)."""
  built = {}

  def template(meta):
    config = built["config"] = RunConfig.from_json(meta["config"])
    built["model"], optimizer = build_model(config)
    return {"train": train.init_train_state(built["model"], optimizer, jax.random.key(0),
                                            config.batch_size)}

  step, _, restored = run.restore_latest(pathlib.Path(workdir) / folder, KIND, template)
  return built["model"], restored["train"].params, built["config"], step


def error_types() -> tuple[type[BaseException], ...]:
  """The errors of a task run that end the program with a one-line message."""
  return (checkpoint.CheckpointError, loop.TrainingError)
