"""A curriculum for the tasks job: the longest sequence trained on grows as training succeeds.

With `--curriculum`, training starts on lengths `min_length`..`start` (the level) instead of
`min_length`..`max_length`. At each scheduled evaluation (every `--eval_every` iterations)
the model is scored on a fixed set of sequences of exactly the level's length, drawn apart
from every other stream; when their bit errors per sequence are at most the threshold, the
level grows by `increment` (never beyond the task's `max_length`), and the batches from the
next iteration on are drawn up to it. The level never changes otherwise. Every batch stays
padded to the time axis of the task at its `max_length`, so nothing recompiles.

The settings (`CurriculumConfig`) are part of the run's config: they decide which
sequences the model trains on, as `max_length` does, so a resumed run must agree with its
checkpoint. The level and the iteration each level was reached at (`Curriculum`) are part
of the run's state, kept in every checkpoint's metadata. Nothing here imports JAX.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dncjax import checks
from dncjax.fields import documented, field
from dncjax.tasks import generators
from dncjax.tasks.generators import TaskConfig

EVAL_STREAM = 3  # the level sets' rng: (seed, 3, level); training 0, evaluation 1 and 2


@documented
@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
  """Whether the longest training sequence grows with success, from where, by how much,
  and what success is."""
  enabled: bool = field(False, "train up to a maximum length (the level) that grows each "
                        "time the model meets --curriculum_threshold at it", flag="--curriculum")
  start: int | None = field(None, "the first level (default: the task's --min_length)",
                            flag="--curriculum_start", metavar="L")
  increment: int = field(1, "how much the level grows on each success",
                         flag="--curriculum_increment", metavar="INT")
  threshold: float = field(0.05, "success: at most this many bit errors per sequence on "
                           "fixed sequences of the level's length", flag="--curriculum_threshold")

  def __post_init__(self):
    for name in ("start", "increment"):
      value = getattr(self, name)
      if (value is not None or name == "increment") and (
          not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ValueError(f"--curriculum_{name} must be a positive integer, got {value!r}")
    checks.check_number("--curriculum_threshold", self.threshold, 0)
    if not self.enabled:
      changed = [f.metadata["flag"] for f in dataclasses.fields(self)
                 if getattr(self, f.name) != f.default]
      if changed:
        raise ValueError(f"{changed[0]} needs --curriculum")

  def check_task(self, task: TaskConfig) -> None:
    """ValueError naming --curriculum_start unless the first level is one of the task's
    lengths."""
    if self.start is not None and not task.min_length <= self.start <= task.max_length:
      raise ValueError(f"--curriculum_start must be in --min_length..--max_length "
                       f"({task.min_length}..{task.max_length}), got {self.start}")

  def first_level(self, task: TaskConfig) -> int:
    """The level training starts at."""
    return task.min_length if self.start is None else self.start


def check_schedule(config: CurriculumConfig, eval_every: int) -> None:
  """ValueError when the curriculum is on but the run never evaluates on its way (the
  level only grows at the scheduled evaluations)."""
  if config.enabled and not eval_every:
    raise ValueError("--curriculum needs evaluations on the way: give --eval_every > 0")


class Curriculum:
  """The level of a run (the longest sequence it trains on) and the iteration each level
  was reached at (`reached`: [(level, step), ...], the first at step 0)."""

  def __init__(self, config: CurriculumConfig, task: TaskConfig,
               reached: list[tuple[int, int]] | None = None):
    self.config, self.task = config, task
    self.reached = list(reached or [(config.first_level(task), 0)])

  @property
  def level(self) -> int:
    """The longest sequence trained on now."""
    return self.reached[-1][0]

  @property
  def done(self) -> bool:
    """Whether the level is the task's `max_length` (nothing left to grow)."""
    return self.level >= self.task.max_length

  def update(self, step: int, bit_errors: float) -> bool:
    """After the scheduled evaluation at `step`: the level grows by `increment` (up to
    `max_length`) when `bit_errors` (per sequence, at the level's length) is at most the
    threshold; whether it grew."""
    if self.done or not bit_errors <= self.config.threshold:  # NaN never succeeds
      return False
    self.reached.append((min(self.level + self.config.increment, self.task.max_length), step))
    return True

  def to_json(self) -> dict:
    """The state a checkpoint keeps: {'level', 'reached': [[level, step], ...]}."""
    return {"level": self.level, "reached": [list(r) for r in self.reached]}

  @classmethod
  def from_json(cls, config: CurriculumConfig, task: TaskConfig, data: dict) -> "Curriculum":
    """The curriculum `to_json` wrote."""
    return cls(config, task, [(int(level), int(step)) for level, step in data["reached"]])

  def summary(self) -> dict:
    """results.json's part: the last level and the iteration each level was reached at."""
    return {"curriculum_level": self.level,
            "curriculum_reached": {str(level): step for level, step in self.reached}}


def up_to(task: TaskConfig, level: int) -> TaskConfig:
  """The task with sequences of `min_length`..`level` (a level of the curriculum)."""
  return dataclasses.replace(task, max_length=level)


def level_set(task: TaskConfig, seed: int, level: int, size: int) -> generators.Sequences:
  """The fixed sequences a level is judged on: `size` of exactly `level`, padded to the
  task's time axis T (that of its `max_length`)."""
  return generators.sample(task.at_length(level), np.random.default_rng([seed, EVAL_STREAM,
                                                                          level]),
                           size, time_steps=task.time_steps)


def draw_levels(ax, reached: list[tuple[int, int]], last_step: int, top: int) -> None:
  """The level against iterations, as steps, on a right-hand axis of `ax` (a matplotlib
  axes whose x axis is the iteration) that reaches up to `top` (the task's max_length)."""
  steps = [step for _, step in reached] + [max(last_step, reached[-1][1])]
  levels = [level for level, _ in reached] + [reached[-1][0]]
  right = ax.twinx()
  right.step(steps, levels, where="post", color="dimgrey", linestyle="--",
             label="curriculum level")
  right.set_ylabel("curriculum level")
  right.set_ylim(0, max(top, *levels) + 1)
  right.legend(fontsize=8, loc="upper center")
