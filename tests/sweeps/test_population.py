"""Vmapped populations: each member trains exactly as it would alone (charlm), its workdir
resumes and samples like any run, a diverging member is frozen, and members may only
differ in shape-free values."""

import json
import os
import pathlib
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax import configs as cfg
from dncjax.charlm import job as charlm, restore
from dncjax.charlm.config import DataConfig, Options, RunConfig
from dncjax.models.lstm import LSTMConfig
from dncjax.sweeps import population
from dncjax.training.population import member, stack
from dncjax.training import checkpoint, loop, optim, run, signals, train

STEPS, MORE = 4, 6
# float64, so that "as alone" is checked to 1e-9: in float32, Adagrad's first steps amplify the
# last bit of a differently ordered sum past any rounding-sized tolerance
# (members evaluate, keep in best/ and save their parameters' average, as alice.py --average)
BASE = RunConfig(model=LSTMConfig(hidden=8, dtype="float64"),
                 data=DataConfig(batch_size=8, seq_length=8, dev_fraction=0.0045), dropout=0.1,
                 average=0.8)
# a development split of 18 characters (3 windows) sums its loss over 17 characters, a
# training window over 64, so member 3's first evaluation is finite, its next training loss
# is not
MEMBERS = [  # 0, 1 train on; 2 is pruned at iter 3 (on_eval); 3 diverges at iter 2
    {"optim.learning_rate": 0.1, "optim.eps": 1e-8, "seed": 0},
    {"optim.learning_rate": 0.2, "optim.eps": 1e-6, "optim.clip_norm": 0.5, "seed": 1,
     "model.init_scale": 0.1},
    {"optim.learning_rate": 0.05, "optim.eps": 1e-4, "optim.clip_value": 0.05,
     "optim.weight_decay": 1e-3, "seed": 2, "model.init_scale": 0.05},
    {"optim.learning_rate": 1e306, "seed": 3},
]
PRUNE = (2, 3)  # (member, iter)
RTOL = 1e-9


def changed(config, changes: dict):
  """`config` with the settings `changes` ({path: value}) put on it."""
  return cfg.Given(tuple(cfg.Setting(k, k, v) for k, v in changes.items())).apply(config)


def options(workdir, steps, checkpoint_every=0, resume=False):
  """(Options, RunOptions) of a single run as a population member runs: every iteration
  reported and evaluated, no samples, no dynamic evaluation, the tail left unscored."""
  schedule = loop.Schedule(steps, None, 1, 1, checkpoint_every)
  return (Options(sample_length=0, dynamic_eval=False, score_tail=False),
          run.RunOptions(str(workdir), resume, schedule, progress_bar=False))


def records(workdir, key):
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  return {r["step"]: r[key] for r in map(json.loads, lines) if key in r}


def results(workdir):
  return json.loads((pathlib.Path(workdir) / "results.json").read_text())


def state_at(workdir, step, folder="checkpoints"):
  """The whole checkpointed state {'train', 'rng'} of `step`, in the member's own structure."""
  ckpts = checkpoint.Checkpoints(pathlib.Path(workdir) / folder, create=False)
  _, meta = ckpts.restore_meta(step)
  config = RunConfig.from_json(meta["config"])
  model, optimizer = charlm.build_model(config, len(meta["vocab"]))
  template = {"train": train.init_train_state(model, optimizer, jax.random.key(0),
                                              config.data.batch_size),
              "rng": checkpoint.key_to_array(jax.random.key(0))}
  state = ckpts.restore_state(step, template)
  ckpts.close()
  return state


def assert_close(a, b, rtol=RTOL):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-6)


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
  corpus = pathlib.Path(os.environ["DNCJAX_DATA_DIR"]) / "alice29.txt"
  path = tmp_path_factory.mktemp("data") / "small.txt"
  path.write_text(corpus.read_text()[:4000])
  return [changed(BASE, {**m, "data.path": str(path)}) for m in MEMBERS]


def prune(step, member):
  return "pruned" if (member, step) == PRUNE else None


@pytest.fixture(scope="module")
def pop(configs, tmp_path_factory):
  """The population, trained for STEPS iterations; (workdirs, summaries, on_eval calls)."""
  root = tmp_path_factory.mktemp("population")
  workdirs = [root / f"member{i}" for i in range(len(configs))]
  calls, lines = [], []

  def on_eval(i, step, bpc):
    calls.append((i, step, bpc))
    return prune(step, i)

  summaries = population.train_population(configs, workdirs, STEPS, None, 1, on_eval,
                                           lines.append, report_interval=1)
  return workdirs, summaries, calls, lines


@pytest.fixture(scope="module")
def alone(configs, tmp_path_factory):
  """Members 0-2 each run alone by charlm for MORE iterations (checkpoints at 4 and 6)."""
  root = tmp_path_factory.mktemp("alone")
  workdirs = [root / f"member{i}" for i in range(3)]
  for i, workdir in enumerate(workdirs):
    charlm.train_and_evaluate(configs[i], *options(workdir, MORE, checkpoint_every=4),
                              out=lambda line: None,
                              on_eval=lambda step, metrics, i=i: prune(step, i))
  return workdirs


@pytest.mark.slow
def test_optimizer_matches_each_members_own(configs):
  params = {"w": jnp.asarray([[0.3, -1.2], [2.0, 0.01]], jnp.float32),
            "b": jnp.asarray([0.5, -0.25], jnp.float32)}
  extra = changed(configs[0], {"optim.clip_norm": 100.0, "optim.clip_value": 10.0})  # not binding
  members = configs[:3] + [extra]
  optimizer = population.make_optimizer(members)  # the population's one chain
  stages = optim.Stages.of(*(c.optim for c in members))
  pop_state = stack([optim.with_average(optim.make(c.optim, stages), c.average).init(params)
                     for c in members])  # each member's numbers in its state
  pop_params = stack([params] * len(members))

  def update(grads, state, p):
    updates, state = optimizer.update(grads, state, p)
    return jax.tree.map(lambda a, u: a + u, p, updates), state

  update = jax.jit(jax.vmap(update, in_axes=(None, 0, 0)))
  own_opts = [optim.with_average(optim.make(c.optim), c.average)
              for c in members]  # each member's chain when alone
  own = [(params, o.init(params)) for o in own_opts]
  for k in range(3):
    grads = jax.tree.map(lambda a: (a + 0.7 * k - 0.4) * 3.0, params)
    pop_params, pop_state = update(grads, pop_state, pop_params)
    for i, o in enumerate(own_opts):
      p, s = own[i]
      updates, s = o.update(grads, s, p)
      own[i] = (jax.tree.map(lambda a, u: a + u, p, updates), s)
  hyper = optim.rule_state(member(pop_state, 0)).hyperparams
  assert float(hyper["clip_norm"]) == optim.NO_CLIP and float(hyper["weight_decay"]) == 0.0
  for i, (p, s) in enumerate(own):
    assert_close(member(pop_params, i), p, rtol=1e-6)
    assert_close(member(pop_state, i), s, rtol=1e-6)
  moved = [float(jnp.abs(own[i][0]["w"] - params["w"]).max()) for i in range(len(own))]
  assert len(set(moved[:3])) == 3  # the members' hyperparameters all mattered
  assert moved[3] == moved[0]  # clipping that does not bind is no clipping


@pytest.mark.slow
def test_members_train_exactly_as_alone(pop, alone):
  workdirs = pop[0]
  for i, mine in enumerate(alone):
    theirs = workdirs[i]
    last = PRUNE[1] if i == PRUNE[0] else STEPS
    train_pop, train_alone = records(theirs, "train_bpc"), records(mine, "train_bpc")
    assert sorted(train_pop) == list(range(1, last + 1))
    np.testing.assert_allclose([train_pop[s] for s in train_pop],
                               [train_alone[s] for s in train_pop], rtol=RTOL)
    dev_pop, dev_alone = records(theirs, "dev_bpc"), records(mine, "dev_bpc")
    assert sorted(dev_pop) == list(range(1, last + 1))
    np.testing.assert_allclose([dev_pop[s] for s in dev_pop], [dev_alone[s] for s in dev_pop],
                               rtol=RTOL)
    assert checkpoint.Checkpoints(theirs / "checkpoints", create=False).latest_step() == last
    assert_close(state_at(theirs, last), state_at(mine, last))  # params, Adagrad, lanes, keys
    summary = results(theirs)
    assert summary["step"] == last and summary["best_step"] == min(dev_pop, key=dev_pop.get)
    assert summary["best_dev_bpc"] == min(dev_pop.values())
  assert results(workdirs[PRUNE[0]])["stopped_by"] == results(alone[PRUNE[0]])["stopped_by"]
  assert [results(workdirs[i])["stopped_by"] for i in (0, 1, 2)] == ["steps", "steps", "pruned"]
  assert json.loads((workdirs[1] / "config.json").read_text())["optim"]["clip_norm"] == 0.5
  for workdir in workdirs:  # what experiments/alice.py leaves (but samples.txt)
    assert {"checkpoints", "best", "metrics.jsonl", "config.json", "results.json",
            "metrics.png"} <= {p.name for p in workdir.iterdir()}


@pytest.mark.slow
def test_on_eval_sees_every_live_member_and_progress_is_printed(pop):
  workdirs, summaries, calls, lines = pop
  for i, workdir in enumerate(workdirs):
    np.testing.assert_array_equal([(s, b) for j, s, b in calls if j == i],
                                  sorted(records(workdir, "dev_bpc").items()))
  assert summaries == [results(w) for w in workdirs]
  assert any("mean over 4 members" in line and "char/s" in line for line in lines)
  # compiled before the clock starts, so the first line's seconds are training alone
  at = lines.index("compiling the population's training step...")
  assert lines[at + 2] == "compiling the population's evaluation..."
  assert lines[at + 1].startswith("compiled in") and lines[at + 3].startswith("compiled in")
  assert not any(", iter " in line for line in lines[:at])


@pytest.mark.slow
def test_member_checkpoint_resumes_and_samples(configs, pop, alone):
  workdir = pop[0][1]
  _, params, vocab, meta = restore.restore_for_sampling(workdir, best=True)
  assert meta["step"] == results(workdir)["best_step"] and vocab.size == 61
  assert_close(params, state_at(workdir, meta["step"], "best")["train"].params)
  charlm.train_and_evaluate(configs[1], *options(workdir, MORE, resume=True),
                            out=lambda line: None)
  assert sorted(records(workdir, "train_bpc")) == list(range(1, MORE + 1))
  for key in ("train_bpc", "dev_bpc"):
    np.testing.assert_allclose([records(workdir, key)[s] for s in (5, 6)],
                               [records(alone[1], key)[s] for s in (5, 6)], rtol=RTOL)
  assert_close(state_at(workdir, MORE), state_at(alone[1], MORE))
  assert results(workdir)["step"] == MORE


@pytest.mark.slow
def test_diverged_member_is_frozen_while_the_others_go_on(configs, pop):
  workdirs, summaries, calls, _ = pop
  summary = summaries[3]  # lr 1e306: its loss is Inf/NaN at iter 2
  dev = records(workdirs[3], "dev_bpc")
  assert summary["stopped_by"] == "nan" and summary["step"] == 1
  assert list(records(workdirs[3], "train_bpc")) == [1] and list(dev) == [1]
  assert [s for i, s, _ in calls if i == 3] == [1]
  assert summary["best_step"] == 1 and summary["best_dev_bpc"] == dev[1] < np.inf
  _, _, _, meta = restore.restore_for_sampling(workdirs[3], best=True)
  assert meta["step"] == 1 and meta["best"] == {"dev_bpc": dev[1], "step": 1}
  frozen = state_at(workdirs[3], 1)  # its last good state, saved at the end
  assert all(np.isfinite(a).all() for a in jax.tree.leaves(frozen["train"].params))
  assert summaries[0]["step"] == STEPS  # test_members_train_exactly_as_alone: unharmed
  with pytest.raises(checkpoint.CheckpointError, match="already holds checkpoints"):
    population.train_population(configs, workdirs, STEPS, None, 1)


@pytest.mark.parametrize("change, name", [
    ({"model.hidden": 16}, "hidden"),
    ({"data.batch_size": 4}, "batch_size"),
    ({"data.seq_length": 4}, "seq_length"),
    ({"model": "rnn"}, "model"),
    ({"dropout": 0.2}, "dropout"),
    ({"model.dtype": "float32"}, "dtype"),
    ({"data.path": "other.txt"}, "data"),
    ({"model.forget_bias": 0.0}, "forget_bias"),
    ({"average": 0.5}, "average"),  # one averaging stage for all: its decay is not in the state
])
def test_members_may_differ_only_in_vmappable_fields(configs, tmp_path, change, name):
  other = changed(configs[0], {"optim.learning_rate": 0.3, "seed": 5, **change})
  with pytest.raises(ValueError) as info:
    population.train_population([configs[0], other], [tmp_path / "a", tmp_path / "b"],
                                steps=2, eval_every=1)
  message = str(info.value)
  assert f"member 1 has {name}=" in message and "\n" not in message
  assert not (tmp_path / "a").exists()
  population.check_population([configs[0], changed(configs[0], MEMBERS[2])])  # vmappable: fine
  population.check_population([configs[0], changed(  # the model's default
      configs[0], {"model.forget_bias": 1.0, "model.hidden": 8})])


@pytest.mark.slow
def test_a_signal_stops_the_population_after_saving_every_member(configs, tmp_path):
  workdirs = [tmp_path / "a", tmp_path / "b"]

  def on_eval(i, step, bpc):  # SIGINT arrives during the first evaluation
    if (i, step) == (0, 1):
      os.kill(os.getpid(), signal.SIGINT)

  with pytest.raises(signals.Interrupted) as info:
    population.train_population(configs[:2], workdirs, STEPS, None, 1, on_eval,
                                lambda line: None)
  assert info.value.exit_code == 130
  for workdir in workdirs:
    assert results(workdir)["stopped_by"] == "interrupted" and results(workdir)["step"] == 1
    assert checkpoint.Checkpoints(workdir / "checkpoints", create=False).latest_step() == 1
