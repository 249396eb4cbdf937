"""Training throughput, JAX against the NumPy oracle (a port of the seed's scripts).

Characters trained per second = B * S / (time of one forward + backward + Adagrad update),
each side timed in the same run on the same batches. The NumPy side is tests/oracle.py
(float64, as the seed's scripts run); the JAX side is one jitted `train_step`, in float32
(the default) and float64, after a warm-up call whose time is reported as the compile time.

  python benchmarks/throughput.py               # the seed's four configurations
  python benchmarks/throughput.py --seconds 2   # longer timing windows
"""

from __future__ import annotations

import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests.oracle
jax.config.update("jax_enable_x64", True)  # for the float64 column; float32 stays float32

import dncjax  # noqa: E402
from dncjax import cli, pytrees  # noqa: E402
from dncjax.training import optim, train  # noqa: E402
from tests import oracle  # noqa: E402

V = 73  # alice29.txt's vocabulary
ROWS = [  # (label, oracle model, dncjax model, hyperparameters, B, S, lr, eps)
    ("rnn", "rnn", "rnn", dict(hidden=32), 16, 25, 0.1, 1e-8),
    ("lstm", "lstm", "lstm", dict(hidden=32), 16, 25, 0.1, 1e-8),
    ("seed_dnc location (N=5, W=10)", "seed_dnc_location", "seed_dnc",
     dict(hidden=32, memory_size=5, word_size=10, addressing="location"), 16, 25, 0.1, 1e-8),
    ("seed_dnc content (N=12, W=12)", "seed_dnc_content", "seed_dnc",
     dict(hidden=128, memory_size=12, word_size=12, addressing="content"), 32, 32, 0.2, 1e-6),
]


def time_loop(fn, seconds: float, min_calls: int = 3) -> float:
  """Seconds per call of fn(), over at least `seconds` and `min_calls` calls."""
  calls, start = 0, time.perf_counter()
  while calls < min_calls or time.perf_counter() - start < seconds:
    fn()
    calls += 1
  return (time.perf_counter() - start) / calls


def numpy_rate(name, hyper, B, S, lr, eps, batches, seconds):
  rng = np.random.default_rng(0)
  H, N, W = hyper["hidden"], hyper.get("memory_size"), hyper.get("word_size")
  params = oracle.init_params(name, rng, V, H, N, W)
  accum = {k: np.zeros_like(v) for k, v in params.items()}
  state = oracle.zero_state(name, B, H, N, W)
  fn = getattr(oracle, name)
  it = iter(range(10**9))

  def step():
    nonlocal params, accum, state
    inputs, targets = batches[next(it) % len(batches)]
    _, grads, state = fn(params, inputs, targets, state)
    params, accum = oracle.adagrad(params, grads, accum, lr, eps)

  return B * S / time_loop(step, seconds)


def jax_rate(name, hyper, B, S, lr, eps, batches, seconds, dtype):
  model = dncjax.make_model(name, V, V, **hyper, dtype=dtype)
  optimizer = optim.make(optim.OptimizerConfig(learning_rate=lr, eps=eps))
  step_fn = train.make_train_step(model, optimizer)
  ts = train.init_train_state(model, optimizer, jax.random.key(0), B)
  device_batches = [pytrees.Batch(jnp.asarray(i, jnp.int32), jnp.asarray(t, jnp.int32),
                                jnp.zeros((B,), bool)) for i, t in batches]
  start = time.perf_counter()
  ts, metrics = step_fn(ts, device_batches[0])
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  it = iter(range(10**9))

  def step():
    nonlocal ts
    ts, metrics = step_fn(ts, device_batches[next(it) % len(device_batches)])
    jax.block_until_ready(metrics)

  return B * S / time_loop(step, seconds), compile_s


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--seconds", type=float, default=1.0, help="timing window per measurement")
  args = p.parse_args(argv)
  if not args.seconds > 0:
    raise cli.UsageError(f"--seconds must be positive, got {args.seconds}")
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, numpy {np.__version__}")
  print("| model | B | S | H | NumPy oracle char/s | JAX f32 char/s | ratio f32 | "
        "JAX f64 char/s | ratio f64 | compile f32 s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for label, oracle_name, name, hyper, B, S, lr, eps in ROWS:
    rng = np.random.default_rng(1)
    batches = [(rng.integers(0, V, (B, S)), rng.integers(0, V, (B, S))) for _ in range(8)]
    ref = numpy_rate(oracle_name, hyper, B, S, lr, eps, batches, args.seconds)
    f32, compile_s = jax_rate(name, hyper, B, S, lr, eps, batches, args.seconds, "float32")
    f64, _ = jax_rate(name, hyper, B, S, lr, eps, batches, args.seconds, "float64")
    print(f"| {label} | {B} | {S} | {hyper['hidden']} | {ref:,.0f} | {f32:,.0f} | "
          f"{f32 / ref:.1f}x | {f64:,.0f} | {f64 / ref:.1f}x | {compile_s:.2f} |", flush=True)
  return 0


if __name__ == "__main__":
  cli.run(main, command=True)
