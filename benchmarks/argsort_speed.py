"""The allocation's stable argsort: XLA's sort against the CPU kernel's radix sort
(`dncjax.models.native.argsort`), as a training step runs it: a scan over T time steps,
each sorting B rows of N usages.

  python benchmarks/argsort_speed.py --memory-sizes 256 1024 4096

Per N, jitted, interleaved, best of --rounds: milliseconds per scan of each, their ratio,
and whether the two orders agree. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from dncjax import cli
from dncjax.models import native


def timer(fn, keys, repeats: int):
  """Best-of-one timing of `repeats` calls of jitted fn(keys), in ms per call."""
  jax.block_until_ready(fn(keys))

  def run() -> float:
    start = time.perf_counter()
    for _ in range(repeats):
      jax.block_until_ready(fn(keys))
    return 1e3 * (time.perf_counter() - start) / repeats

  return run


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--memory-sizes", type=int, nargs="+", default=[256, 1024, 4096],
                      help="N values, one table row each")
  parser.add_argument("--batch", type=int, default=16, help="B, rows sorted per time step")
  parser.add_argument("--time", type=int, default=20, help="T, time steps per scan")
  parser.add_argument("--repeats", type=int, default=10, help="timed scans per round")
  parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
  args = parser.parse_args(argv)
  try:
    native.load()
  except native.build.BuildError as e:
    print(f"the sort kernel is not timed: {e}")
    return 1
  sorts = {"XLA": lambda u: jnp.argsort(u, axis=-1, stable=True), "kernel": native.argsort}
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}: stable argsort of "
        f"B={args.batch} rows per step, T={args.time} steps per scan, best of "
        f"{args.rounds} interleaved rounds\n")
  print("| N | XLA ms / scan | kernel ms / scan | XLA / kernel | same order |")
  print("|---:|---:|---:|---:|---|")
  for n in args.memory_sizes:
    keys = jax.random.uniform(jax.random.key(n), (args.time, args.batch, n))
    scans = {name: jax.jit(lambda k, f=f: jax.lax.scan(lambda c, u: (c, f(u)), 0, k)[1])
             for name, f in sorts.items()}
    same = bool(jnp.all(scans["XLA"](keys) == scans["kernel"](keys)))
    timers = {name: timer(fn, keys, args.repeats) for name, fn in scans.items()}
    best = {name: float("inf") for name in timers}
    for _ in range(args.rounds):
      for name, run in timers.items():
        best[name] = min(best[name], run())
    print(f"| {n} | {best['XLA']:.2f} | {best['kernel']:.2f} "
          f"| {best['XLA'] / best['kernel']:.1f} | {'yes' if same else 'NO'} |", flush=True)
  return 0


if __name__ == "__main__":
  cli.run(main, command=True)
