"""Populations: P members of one job trained together as ONE vmapped, jitted program.

Members whose configs leave every array shape alone are stacked on a leading member axis
P: parameters, optimiser state (which holds each member's optimiser numbers, `optim`),
recurrent state and keys are [P, ...] arrays (`stack`; `member` takes one out), the
members' batches are stacked the same way (`stack_batches`), and `vmap_step` runs the
training step of ONE member for all of them under one `jax.jit`, keeping a member that is
stopped (the alive mask) or whose loss or updated state is NaN/Inf at its last good state.

`Session` is what every population's `loop.Session` shares on the one schedule
(`loop.drive`): the vmapped update, each member's step and interval sums, a member stopped
alone when it diverges, the live members' periodic checkpoints, the final evaluation, and
at the end each member's last save and results.json. A job's session adds what is its
own: the members' batches (`draw`, `take`), progress records (`report`), evaluation
(`evaluate`), a member's checkpoint (`save_member`) and summary (`summary`). The char-LM
sweeps (`dncjax.sweeps.population`) and the tasks job (`dncjax.tasks.population`) use it.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dncjax import pytrees
from dncjax.training import checkpoint, finite, progress, records


def stack(trees):
  """Pytrees of equal structure stacked on a new leading axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member(tree, i: int):
  """Member i of a stacked pytree (the leading axis dropped)."""
  return jax.tree.map(lambda a: a[i], tree)


def stack_batches(batches: list[pytrees.Batch]) -> pytrees.Batch:
  """The members' batches stacked on a leading member axis on the host: Batch [P, B, ...]
  (targets that are a pytree, e.g. (targets, mask), stacked leaf by leaf)."""
  return jax.tree.map(lambda *parts: np.stack(parts), *batches)


def vmap_step(step: Callable):
  """jit(vmap(step)) of a member's unjitted `step(state, batch) -> (state, {'loss', ...})`:
  (state [P, ...], Batch [P, ...], alive [P]) -> (state, {'loss' [P], ..., 'finite' [P]}).
  A member that is not alive, or whose loss or updated state is not finite, keeps its
  state unchanged; 'finite' says which members' updates were finite."""

  def member_step(state, batch, alive):
    new, metrics = step(state, batch)
    good = jnp.isfinite(metrics["loss"]) & finite.tree_finite(new)
    ok = alive & good
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state), {**metrics,
                                                                        "finite": good}

  return jax.jit(jax.vmap(member_step))


@dataclasses.dataclass(kw_only=True)
class Member:
  """Host-side bookkeeping of one member: its folder, records and checkpoints, the step
  it has trained to, why and when (seconds of training) it stopped, and the sums of the
  current report interval (the loss and the session's `extra` metrics)."""
  workdir: pathlib.Path
  log: records.MetricsLog
  ckpts: checkpoint.Checkpoints
  step: int = 0
  stopped_by: str | None = None
  stopped_at: float | None = None
  interval_loss: float = 0.0
  interval_steps: int = 0
  interval_extra: dict = dataclasses.field(default_factory=dict)
  last_saved: int | None = None
  last_eval: int | None = None

  def close(self) -> None:
    """Waits for the member's checkpoints to be written and closes them."""
    self.ckpts.close()


class Session:
  """The `loop.Session` skeleton of a population: one vmapped step (`vmap_step`) for
  every member, each member frozen at its last good state once its loss or state is
  NaN/Inf or the job stops it. Times (records, checkpoints' `elapsed`) are seconds of
  training on `clock`; `step` is the population's iteration."""
  extra: tuple[str, ...] = ()  # step metrics summed over a report interval besides the loss

  def __init__(self, members: list, state, step_fn, out: Callable[[str], None],
               clock: progress.Stopwatch, step: int = 0):
    self.members, self.state, self.step_fn = members, state, step_fn
    self.out, self.clock, self.step = out, clock, step

  def alive(self) -> list:
    """The members still training (not stopped)."""
    return [m for m in self.members if m.stopped_by is None]

  def _stop(self, m: Member, reason: str) -> None:
    m.stopped_by, m.stopped_at = reason, self.clock.seconds()

  def name(self, m: Member) -> str:
    """How lines name member `m` ('member 3')."""
    return f"member {self.members.index(m)}"

  def mask(self) -> np.ndarray:
    """[P] bool: which members train."""
    return np.array([m.stopped_by is None for m in self.members])

  def draw(self) -> tuple[list, pytrees.Batch]:
    """(what each member's batch moves, e.g. its data position; the members' next
    batches stacked [P, ...]), nothing moved yet (`take` commits a member's)."""
    raise NotImplementedError

  def take(self, m: Member, drawn: Any) -> None:
    """After member `m` trained on its batch: takes up what drawing it moved."""

  def prepare(self) -> None:
    """Compiles the vmapped step (for the next batches, which `train` draws again) and
    the job's evaluation (`prepare_evaluation`), before the clock starts."""
    progress.compile_ahead(self.step_fn, (self.state, self.draw()[1], self.mask()),
                           "the population's training step", self.out)
    self.prepare_evaluation()

  def prepare_evaluation(self) -> None:
    """Compiles the job's evaluation ahead (by default, nothing)."""

  def train(self) -> str | None:
    """One vmapped update of every live member; a member whose loss or state turns NaN/Inf
    keeps its last good state and stops. None: the run goes on (see `stopped`)."""
    drawn, batch = self.draw()
    self.state, metrics = self.step_fn(self.state, batch, self.mask())
    losses, good = np.asarray(metrics["loss"]), np.asarray(metrics["finite"])
    extra = {name: np.asarray(metrics[name]) for name in self.extra}
    self.step += 1
    for i, m in enumerate(self.members):
      if m.stopped_by is not None:
        continue
      if not good[i]:
        self._stop(m, "nan")
        what = (f"loss became {losses[i]}" if not math.isfinite(losses[i])
                else "parameters or optimiser state became NaN/Inf")
        self.out(f"{self.name(m)}: {what} at iter {self.step}: frozen at iter {m.step}")
        continue
      self.take(m, drawn[i])
      m.step = self.step
      m.interval_loss, m.interval_steps = m.interval_loss + float(losses[i]), m.interval_steps + 1
      for name, values in extra.items():
        m.interval_extra[name] = m.interval_extra.get(name, 0.0) + float(values[i])
    return None

  def stopped(self) -> str | None:
    """'stopped' once no member is alive, else None."""
    return None if self.alive() else "stopped"

  def clear_intervals(self) -> None:
    """Starts every member's next report interval."""
    for m in self.members:
      m.interval_loss, m.interval_steps, m.interval_extra = 0.0, 0, {}

  def report(self, index: int, step: int, seconds: float, interval_s: float) -> None:
    """Each live member's progress record and the line over the population (the job's)."""
    raise NotImplementedError

  def evaluate(self, step: int, which: list | None = None, final: bool = False) -> None:
    """Evaluates the members `which` (default: those alive) at `step` (the job's); a
    member whose metrics are NaN/Inf stops; `final`: the evaluation at the end."""
    raise NotImplementedError

  def save_member(self, m: Member, ckpts: checkpoint.Checkpoints) -> None:
    """Writes member `m`'s checkpoint of its step into `ckpts` (the job's)."""
    raise NotImplementedError

  def summary(self, index: int, m: Member) -> dict:
    """Member `m`'s results.json once it has stopped (the job's)."""
    raise NotImplementedError

  def save(self, step: int) -> bool:
    """Checkpoints each live member; True (a NaN member is frozen, never saved)."""
    for m in self.alive():
      self.save_member(m, m.ckpts)
      m.last_saved = m.step
    return True

  def finish(self, step: int, reason: str) -> str:
    """The final evaluation of each live member not evaluated at its last step; returns
    `reason` (the final saves and results.json are `close`'s)."""
    self.evaluate(step, [m for m in self.alive() if m.last_eval != m.step and m.step > 0],
                  final=True)
    return reason

  def close(self, reason: str) -> list[dict]:
    """Each member's last save (a diverged member: its last good state) and results.json;
    returns the summaries. The members still alive stopped by `reason`."""
    summaries, end = [], self.clock.seconds()
    for i, m in enumerate(self.members):
      if m.stopped_by is None:
        m.stopped_by, m.stopped_at = reason, end
      if m.last_saved != m.step and m.step > 0:
        self.save_member(m, m.ckpts)
        m.last_saved = m.step
      m.close()
      summary = self.summary(i, m)
      records.write_json(m.workdir / "results.json", summary)
      summaries.append(summary)
    return summaries
