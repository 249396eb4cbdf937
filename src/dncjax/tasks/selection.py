"""Choosing a task run's parameters on a held-out length, and testing them once at the end.

With `--select_length L` every evaluation also scores fixed held-out sequences of length L
(logged as `select_len<L>_<metric>`; drawn apart from the training stream and from every
other set), and the parameters with the fewest bit errors on them so far are kept in
`<workdir>/best/`; between evaluations with as few errors, the lower held-out loss wins (a
trained model often reaches 0 errors early, and goes on lowering the loss). The record of
that choice, {"length", "bit_errors", "loss", "step"}, travels in every checkpoint's
metadata (and best/'s own wins on a resume; a record without "loss" loses every tie).

With `--test_length L ...` a run that ends on its budget (--steps or --timelimit, not
Ctrl-C) scores fresh test sequences of each length, used for no choice, once: with its last
parameters (`test_len<L>_<metric>` in results.json) and, with --select_length, with the
selected ones (`selected_test_len<L>_<metric>`). `--test_memory_size N` tests on a model
with N memory slots (the memory models' parameters do not depend on N), so that sequences
longer than the trained memory can be written out whole.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

from dncjax import models
from dncjax.tasks import generators, metrics
from dncjax.training import checkpoint

SELECT, TEST = 3, 4  # the sets' streams: numpy seeds [seed, SELECT | TEST, length]


def select_sets(task: generators.TaskConfig, seed: int, length: int, count: int):
  """{"select_len<L>": the fixed held-out sequences of length L the parameters are chosen
  on}."""
  return generators.sets_at_lengths(task, seed, SELECT, [length], count, "select")


def test_sets(task: generators.TaskConfig, seed: int, lengths, count: int):
  """{"test_len<L>": fresh test sequences of length L} for each of `lengths`."""
  return generators.sets_at_lengths(task, seed, TEST, lengths, count, "test")


def test_evaluate(model_config, memory_size: int | None):
  """The jitted evaluation (`metrics.make_evaluate`) of the model, with `memory_size`
  slots if given."""
  if memory_size is not None:
    model_config = dataclasses.replace(model_config, memory_size=memory_size)
  return metrics.make_evaluate(models.build(model_config))


def check_memory_size(model_config, memory_size: int | None) -> None:
  """ValueError, naming --test_memory_size, for a model without memory slots."""
  if memory_size is not None and not hasattr(model_config, "memory_size"):
    raise ValueError(f"--test_memory_size {memory_size}: the model "
                     f"{type(model_config).__name__} has no memory slots")


class Selection:
  """The parameters with the fewest bit errors at the held-out length, ties broken by the
  lower loss: the record, the state (while this process has it) and best/ (keeps one
  checkpoint)."""

  def __init__(self, folder: pathlib.Path, length: int):
    self.length, self.state = length, None
    self.record = {"length": length, "bit_errors": None, "loss": None, "step": None}
    self.ckpts = checkpoint.Checkpoints(folder / "best", keep=1)

  @property
  def key(self) -> str:
    """The metric it chooses by: 'select_len<L>_bit_errors'."""
    return f"select_len{self.length}_bit_errors"

  @property
  def tie_key(self) -> str:
    """The metric that breaks its ties: 'select_len<L>_loss'."""
    return f"select_len{self.length}_loss"

  def take_up(self, record: dict | None, resume: bool) -> None:
    """Takes up a checkpoint's record (None: the run kept none), then best/'s own; a record
    at another length is refused (the choice would mix two criteria)."""
    if resume and self.ckpts.latest_step() is not None:
      record = self.ckpts.restore_meta()[1].get("selected", record)
    if record is None:
      return
    if record["length"] != self.length:
      raise checkpoint.CheckpointError(
          f"--select_length {self.length}: the run's best/ was chosen at length "
          f"{record['length']}")
    self.record = record

  def consider(self, state, step: int, errors: float, loss: float) -> bool:
    """True (the record and state updated) when (`errors`, `loss`) comes before the
    record's: fewer errors, or as many and a lower loss."""
    if not (math.isfinite(errors) and math.isfinite(loss)):
      return False
    if self.record["bit_errors"] is not None:
      kept = self.record.get("loss")
      if (errors, loss) >= (self.record["bit_errors"], math.inf if kept is None else kept):
        return False
    self.record = {"length": self.length, "bit_errors": errors, "loss": loss, "step": step}
    self.state = state
    return True

  def save(self, step: int, meta: dict) -> None:
    """Writes the selected state to best/ with the checkpoint metadata `meta`."""
    self.ckpts.save(step, {"train": self.state}, meta)

  def selected(self, template):
    """The selected TrainState (read from best/ when it was chosen before a resume), or
    None before any evaluation."""
    if self.record["step"] is None:
      return None
    if self.state is None:
      self.ckpts.wait()
      self.state = self.ckpts.restore_state(self.record["step"], {"train": template})["train"]
    return self.state

  def close(self) -> None:
    """Waits for best/'s saves and closes it."""
    self.ckpts.close()
