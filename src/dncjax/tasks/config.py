"""What defines a task run (`RunConfig`) and how to evaluate it (`Options`).

The defaults are experiments/tasks.py's: the paper's DNC with H = 64, N = 32, W = 16,
R = 1, trained with RMSProp (lr 3e-4, momentum 0.9, gradients clipped at norm 10) on
batches of 16 sequences; each task has its own default sizes (`TASK_DEFAULTS`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dncjax import checks, configs
from dncjax.fields import documented, field
from dncjax.tasks.curriculum import CurriculumConfig
from dncjax.tasks.generators import TaskConfig
from dncjax.training.config import OptimizerConfig

MODEL = "dnc"
MODEL_DEFAULTS = {"hidden": 64, "memory_size": 32, "read_heads": 1, "word_size": 16}
TASK_DEFAULTS = {  # per task, for the task flags left unset
    "copy": TaskConfig("copy"),
    "repeat_copy": TaskConfig("repeat_copy", bits=4, max_length=5, max_repeats=3),
    "associative_recall": TaskConfig("associative_recall", bits=6, min_length=2,
                                     max_length=4, item_length=2),
}


def default_model():
  """The task job's default model config: the paper's DNC with H = 64,
  N = 32, W = 16, R = 1 (its sizes set by the task)."""
  return configs.model_config(MODEL, MODEL_DEFAULTS)


@documented
@dataclasses.dataclass(frozen=True)
class RunConfig(configs.RunConfigBase):
  """The task, its curriculum, the model (its own config; sizes set by the task),
  optimiser, batch, seed."""
  task: TaskConfig = TaskConfig()
  curriculum: CurriculumConfig = CurriculumConfig()
  model: Any = dataclasses.field(default_factory=default_model)
  optim: OptimizerConfig = OptimizerConfig("rmsprop", learning_rate=3e-4, momentum=0.9,
                                           clip_norm=10.0)
  batch_size: int = dataclasses.field(default=16, metadata={"flag": "--batchsize",
                                                            "help": "sequences B"})
  seed: int = dataclasses.field(default=0, metadata={
      "help": "seed of the parameters and the sequences"})

  def __post_init__(self):
    checks.check_positive(self, "batch_size")
    checks.check_seed(self.seed)
    self.curriculum.check_task(self.task)


def defaults_for(given: configs.Given) -> RunConfig:
  """The defaults a fresh run's flags go on: those of the task they name (or copy)."""
  return RunConfig(task=TASK_DEFAULTS[given.value("task.name", "copy")])


def as_run_settings(given: configs.Given) -> configs.Given:
  """The flags as run settings: `--clip_norm 0` means no clipping."""
  if given.value("optim.clip_norm") == 0:
    return given.with_value("optim.clip_norm", None)
  return given


@documented
@dataclasses.dataclass(frozen=True)
class Options:
  """What a run evaluates (may change between a run and its resumption)."""
  eval_sequences: int = dataclasses.field(default=256, metadata={
      "help": "fresh sequences per evaluation set"})
  eval_lengths: tuple[int, ...] = dataclasses.field(default=(), metadata={
      "flag": "--eval_length", "metavar": "L",
      "help": "also evaluate on sequences of each length L (generalisation)"})
  target: float = dataclasses.field(default=0.05, metadata={
      "help": "results.json records when the eval bit errors per sequence first fall below "
              "this"})
  select_length: int | None = dataclasses.field(default=None, metadata={
      "metavar": "L", "help": "keep in WORKDIR/best/ the parameters with the fewest bit errors "
                              "on fixed held-out sequences of length L, checked at every "
                              "evaluation (none: no choice)"})
  test_lengths: tuple[int, ...] = dataclasses.field(default=(), metadata={
      "flag": "--test_length", "metavar": "L",
      "help": "at the end of a run on its budget, score fresh test sequences of each length L "
              "once, with the last and the selected parameters"})
  test_memory_size: int | None = dataclasses.field(default=None, metadata={
      "metavar": "N", "help": "memory slots of the model the test sequences run on (its "
                              "parameters do not depend on N; none: the trained size)"})

  def __post_init__(self):
    if not isinstance(self.eval_sequences, int) or self.eval_sequences <= 0:
      raise ValueError(f"--eval_sequences must be positive, got {self.eval_sequences!r}")
    for flag, lengths in (("--eval_length", self.eval_lengths),
                          ("--test_length", self.test_lengths)):
      if any(not isinstance(n, int) or n <= 0 for n in lengths):
        raise ValueError(f"{flag} must be positive, got {list(lengths)}")
    for flag, value in (("--select_length", self.select_length),
                        ("--test_memory_size", self.test_memory_size)):
      if value is not None and (not isinstance(value, int) or value <= 0):
        raise ValueError(f"{flag} must be a positive integer, got {value!r}")
    checks.check_number("--target", self.target, 0)


@documented
@dataclasses.dataclass(frozen=True)
class Population:
  """How many seeds of the setting train together as one vmapped program."""
  seeds: int = field(1, "train seeds SEED .. SEED + K - 1 together as one vmapped program, "
                        "each member in WORKDIR/seed<N> (1: one run in WORKDIR)", metavar="K")

  def __post_init__(self):
    if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds <= 0:
      raise ValueError(f"--seeds must be a positive integer, got {self.seeds!r}")

  def check(self, first_seed: int) -> None:
    """ValueError when the last seed, `first_seed` + seeds - 1, is past a seed's range."""
    if self.seeds > 1 and first_seed + self.seeds - 1 >= 2**32:
      raise ValueError(f"--seeds {self.seeds} from --seed {first_seed} goes past the largest "
                       f"seed, 2**32 - 1")
