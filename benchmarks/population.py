"""A sweep's trials one after another against the same trials as one vmapped population.

P trials differing only in the learning rate (log-spaced, 0.01 to 0.1) train K steps each, on random
characters (V = 73, as alice29.txt), float32, in two ways measured in the same run:

  sequential  each trial builds its own jitted training step (its learning rate a Python
              constant, as a sweep runs trials one after another): P compilations, then
              K - 1 steps each
  population  dncjax.sweeps.population.make_step: jit(vmap(step)) over the P members, one
              compilation, then K - 1 steps of all members at once

Both read the loss back after every step, as the training loop does (it checks for NaN).
The first call of a step is reported as its compile time, the other K - 1 as steady state.

  python benchmarks/population.py                    # P = 8, K = 200, lstm and seed_dnc
  python benchmarks/population.py --members 16 --steps 100 --models lstm
"""

from __future__ import annotations

import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

from dncjax import cli, configs, pytrees  # noqa: E402
from dncjax.charlm import job  # noqa: E402
from dncjax.charlm.config import DataConfig, RunConfig  # noqa: E402
from dncjax.sweeps import population  # noqa: E402
from dncjax.sweeps.members import stack  # noqa: E402
from dncjax.training import optim, train  # noqa: E402

V = 73
MODELS = {  # label -> (model, hyperparameters)
    "lstm": ("lstm", dict(hidden=64)),
    "seed_dnc": ("seed_dnc", dict(hidden=64, memory_size=12, word_size=12,
                                  addressing="location")),
}


def make_batches(P: int, K: int, B: int, S: int, seed: int = 0) -> list[pytrees.Batch]:
  """K batches of [P, B, S] random ids; every lane resets at the first step only."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, V, (K, P, B, S + 1)).astype(np.int32)
  return [pytrees.Batch(ids[k, :, :, :-1], ids[k, :, :, 1:], np.full((P, B), k == 0))
          for k in range(K)]


def configs_for(label: str, P: int, B: int, S: int) -> list[RunConfig]:
  name, hyper = MODELS[label]
  rates = np.geomspace(0.01, 0.1, P)
  return [RunConfig(model=configs.model_config(name, hyper),
                    optim=optim.OptimizerConfig(learning_rate=float(lr), eps=1e-8),
                    data=DataConfig(batch_size=B, seq_length=S), seed=i)
          for i, lr in enumerate(rates)]


def init_state(config: RunConfig):
  """(model, optimizer, TrainState) of a trial (its optimiser state holds its numbers)."""
  model, optimizer = job.build_model(config, V)
  ts = train.init_train_state(model, optimizer, jax.random.key(config.seed),
                              config.data.batch_size)
  return model, optimizer, ts


def sequential(configs, batches):
  """(compile s, steady s, last losses [P]): each trial's own jitted step, one after another."""
  compile_s, steady_s, losses = 0.0, 0.0, []
  for i, config in enumerate(configs):
    model, optimizer, ts = init_state(config)
    step = train.make_train_step(model, optimizer)
    own = [pytrees.Batch(*(part[i] for part in b)) for b in batches]
    start = time.perf_counter()
    ts, metrics = step(ts, own[0])
    float(metrics["loss"])
    compile_s += time.perf_counter() - start
    start = time.perf_counter()
    for batch in own[1:]:
      ts, metrics = step(ts, batch)
      loss = float(metrics["loss"])
    steady_s += time.perf_counter() - start
    losses.append(loss)
  return compile_s, steady_s, np.array(losses)


def vmapped(configs, batches):
  """(compile s, steady s, last losses [P]): one jit(vmap(step)) over all members."""
  states = []
  for config in configs:
    model, _, ts = init_state(config)
    states.append(ts)
  state = stack(states)
  alive = jnp.ones(len(configs), bool)
  step = population.make_step(model, population.make_optimizer(configs))
  start = time.perf_counter()
  state, metrics = step(state, batches[0], alive)
  np.asarray(metrics["loss"])
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for batch in batches[1:]:
    state, metrics = step(state, batch, alive)
    losses = np.asarray(metrics["loss"])
  return compile_s, time.perf_counter() - start, losses


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--members", type=int, default=8, help="trials P (learning rates)")
  p.add_argument("--steps", type=int, default=200, help="training steps K per trial")
  p.add_argument("--batch_size", type=int, default=32, help="lanes B")
  p.add_argument("--seq_length", type=int, default=32, help="window S")
  p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS),
                 help="rows of the table")
  args = p.parse_args(argv)
  for name in ("members", "batch_size", "seq_length"):
    if getattr(args, name) < 1:
      raise cli.UsageError(f"--{name} must be positive, got {getattr(args, name)}")
  if args.steps < 2:
    raise cli.UsageError(f"--steps must be at least 2, got {args.steps}")
  P, K, B, S = args.members, args.steps, args.batch_size, args.seq_length
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device), "
        f"P = {P} learning rates, K = {K} steps, B = {B}, S = {S}, float32")
  print("| model | sequential compile s | sequential steady s | sequential total s | "
        "population compile s | population steady s | population total s | "
        "steady speed-up | total speed-up | max rel. loss diff |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  batches = make_batches(P, K, B, S)
  for label in args.models:
    configs = configs_for(label, P, B, S)
    seq_c, seq_s, seq_loss = sequential(configs, batches)
    pop_c, pop_s, pop_loss = vmapped(configs, batches)
    diff = float(np.max(np.abs(seq_loss - pop_loss) / np.abs(seq_loss)))
    name, hyper = MODELS[label]
    shown = ", ".join(f"{k}={v}" for k, v in hyper.items())
    print(f"| {name} ({shown}) | {seq_c:.2f} | {seq_s:.2f} | {seq_c + seq_s:.2f} | "
          f"{pop_c:.2f} | {pop_s:.2f} | {pop_c + pop_s:.2f} | {seq_s / pop_s:.2f}x | "
          f"{(seq_c + seq_s) / (pop_c + pop_s):.2f}x | {diff:.1e} |", flush=True)
  return 0


if __name__ == "__main__":
  cli.run(main, command=True)
