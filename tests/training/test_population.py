"""The population machinery both jobs share (dncjax.training.population): stacking and
indexing members, the vmapped step's alive mask and NaN guard, and a toy job's session on
the one schedule, where a diverging member stops alone."""

import jax
import jax.numpy as jnp
import numpy as np

from dncjax import pytrees
from dncjax.training import loop, population, progress, records


def sgd_step(state, batch):
  """One member's step on the toy model y = w x: loss sum (w x - y)^2, w -= 0.1 grad."""
  def loss(w):
    return jnp.sum((w * batch.inputs - batch.targets[0]) ** 2 * batch.targets[1])
  value, grad = jax.value_and_grad(loss)(state["w"])
  return {"w": state["w"] - 0.1 * grad, "n": state["n"] + 1}, {"loss": value, "twice": 2 * value}


def toy_batch(x, y):
  return pytrees.Batch(np.asarray(x, np.float32),
                       (np.asarray(y, np.float32), np.ones(3, np.float32)), np.ones(3, bool))


def test_stack_member_and_stack_batches_round_trip():
  trees = [{"w": jnp.full((2,), float(i)), "n": jnp.asarray(i)} for i in range(3)]
  stacked = population.stack(trees)
  assert stacked["w"].shape == (3, 2) and stacked["n"].shape == (3,)
  for i, tree in enumerate(trees):
    got = population.member(stacked, i)
    assert all(np.array_equal(got[k], tree[k]) for k in tree)
  batches = [toy_batch([i, i, i], [1, 2, 3]) for i in range(4)]
  both = population.stack_batches(batches)
  assert both.inputs.shape == (4, 3) and both.reset.shape == (4, 3)
  targets, mask = both.targets  # a pytree of targets is stacked leaf by leaf
  assert targets.shape == (4, 3) and mask.shape == (4, 3)
  assert np.array_equal(both.inputs[2], batches[2].inputs)


def test_vmapped_step_matches_each_member_and_freezes_the_dead_and_the_diverged():
  step = population.vmap_step(sgd_step)
  state = population.stack([{"w": jnp.float32(w), "n": jnp.int32(0)} for w in (0.5, -1.0, 2.0)])
  batches = [toy_batch([1, 2, 3], [2, 4, 6]), toy_batch([1, 1, 1], [0, 1, 2]),
             toy_batch([np.nan, 1, 1], [0, 0, 0])]
  new, metrics = step(state, population.stack_batches(batches), np.array([True, False, True]))
  alone = sgd_step({"w": jnp.float32(0.5), "n": jnp.int32(0)}, batches[0])
  np.testing.assert_allclose(new["w"][0], alone[0]["w"], rtol=1e-6)
  np.testing.assert_allclose(metrics["loss"][0], alone[1]["loss"], rtol=1e-6)
  assert float(metrics["twice"][1]) == 2 * float(metrics["loss"][1])  # computed, not applied
  assert list(np.asarray(new["w"][1:])) == [-1.0, 2.0] and list(np.asarray(new["n"])) == [1, 0, 0]
  assert list(np.asarray(metrics["finite"])) == [True, True, False]


class Saves:
  """A member's checkpoints, as the session sees them: the steps saved."""

  def __init__(self):
    self.steps, self.closed = [], False

  def close(self):
    self.closed = True


class ToySession(population.Session):
  """A job on the toy model: member i's batch at step s is x = 1, y = i (NaN when asked)."""
  extra = ("twice",)

  def __init__(self, members, state, poison_at):
    self.lines, self.poison_at = [], poison_at
    super().__init__(members, state, population.vmap_step(sgd_step), self.lines.append,
                     progress.Stopwatch())

  def draw(self):
    got = [toy_batch([1, 1, 1], [i, i, i]) for i, _ in enumerate(self.members)]
    i, at = self.poison_at
    if self.step >= at:
      got[i] = toy_batch([np.nan] * 3, [0, 0, 0])
    return list(range(len(got))), population.stack_batches(got)

  def take(self, m, drawn):
    m.taken = getattr(m, "taken", 0) + 1

  def report(self, index, step, seconds, interval_s):
    for m in self.alive():
      m.log.write({"step": step, "loss": m.interval_loss / m.interval_steps,
                   "twice": m.interval_extra["twice"] / m.interval_steps})
    self.clear_intervals()

  def evaluate(self, step, which=None, final=False):
    for m in self.alive() if which is None else which:
      m.last_eval = step

  def save_member(self, m, ckpts):
    ckpts.steps.append((m.step, float(population.member(self.state, self.members.index(m))["w"])))

  def summary(self, index, m):
    return {"step": m.step, "stopped_by": m.stopped_by}


def test_a_diverging_member_stops_alone_on_the_schedule(tmp_path):
  members = [population.Member(workdir=tmp_path / f"m{i}", log=None, ckpts=Saves())
             for i in range(3)]
  for m in members:
    m.workdir.mkdir()
    m.log = records.MetricsLog(m.workdir / "metrics.jsonl")
  state = population.stack([{"w": jnp.float32(0.0), "n": jnp.int32(0)}] * 3)
  session = ToySession(members, state, poison_at=(1, 2))  # member 1: NaN at iteration 3
  schedule = loop.Schedule(steps=5, report_interval=1, eval_every=0, checkpoint_every=2)
  step, reason, _ = loop.drive(schedule, session, 0, session.clock)
  summaries = session.close(reason)
  assert (step, reason) == (5, "steps")
  assert summaries == [{"step": 5, "stopped_by": "steps"}, {"step": 2, "stopped_by": "nan"},
                       {"step": 5, "stopped_by": "steps"}]
  assert "member 1: loss became nan at iter 3: frozen at iter 2" in session.lines
  assert [m.taken for m in members] == [5, 2, 5]
  # every member saved at 2 and 4; then each at its last step (the diverged one's was saved)
  assert [[s for s, _ in m.ckpts.steps] for m in members] == [[2, 4, 5], [2], [2, 4, 5]]
  assert all(m.ckpts.closed for m in members)
  w = [population.member(session.state, i)["w"] for i in range(3)]
  assert float(w[1]) == members[1].ckpts.steps[-1][1] and np.isfinite(w[1])  # frozen, finite
  expect = 0.0  # member 2 trains as alone: w -= 0.1 * 2 * 3 * (w - 2), five times
  for _ in range(5):
    expect -= 0.6 * (expect - 2)
  np.testing.assert_allclose(float(w[2]), expect, rtol=1e-5)
  logged = records.read_metrics(members[1].workdir / "metrics.jsonl")
  assert [r["step"] for r in logged] == [1, 2]
  assert all(r["twice"] == 2 * r["loss"] for r in logged)
  assert (tmp_path / "m0" / "results.json").exists()
