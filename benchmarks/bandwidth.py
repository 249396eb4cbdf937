"""Memory bandwidth of this machine, STREAM-style: the roofline's bytes-per-second.

Times the four STREAM kernels on float32 arrays much larger than the caches, as jitted JAX
functions (one fused pass each) on the default device, and prints GB/s per kernel counted as
STREAM counts it (copy and scale move 2 arrays, add and triad 3), best of `--repeats`.

  python benchmarks/bandwidth.py                 # 2**25 floats (128 MiB) per array
  python benchmarks/bandwidth.py --size 26 --repeats 20
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from dncjax import cli

KERNELS = {  # name -> (function of (a, b, c), arrays moved per element)
    "copy": (lambda a, b, c: a, 2),
    "scale": (lambda a, b, c: 3.0 * a, 2),
    "add": (lambda a, b, c: a + b, 3),
    "triad": (lambda a, b, c: b + 3.0 * c, 3),
}


def best_seconds(fn, args, repeats: int) -> float:
  """The fastest of `repeats` timed calls of the compiled `fn(*args)` (after one warm-up)."""
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best


def measure(log2_size: int = 25, repeats: int = 10) -> dict[str, float]:
  """GB/s (1e9 bytes) of each kernel on float32 arrays of 2**log2_size elements."""
  n = 2 ** log2_size
  a, b, c = (jnp.full((n,), v, jnp.float32) for v in (1.0, 2.0, 0.5))
  rates = {}
  for name, (kernel, arrays) in KERNELS.items():
    fn = jax.jit(lambda a, b, c, k=kernel: k(a, b, c) + 0.0)  # a copy even for "copy"
    rates[name] = arrays * 4 * n / best_seconds(fn, (a, b, c), repeats) / 1e9
  return rates


def main(argv=None) -> int:
  """Prints each kernel's bandwidth and the best of them."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--size", type=int, default=25, help="log2 of the elements per array")
  p.add_argument("--repeats", type=int, default=10, help="timed calls per kernel (best kept)")
  args = p.parse_args(argv)
  if not 10 <= args.size <= 31:
    raise SystemExit(f"error: --size must be in [10, 31], got {args.size}")
  if args.repeats < 1:
    raise SystemExit(f"error: --repeats must be positive, got {args.repeats}")
  rates = measure(args.size, args.repeats)
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {2 ** args.size:,} float32 "
        f"per array, best of {args.repeats}")
  for name, rate in rates.items():
    print(f"  {name:6s} {rate:7.2f} GB/s")
  print(f"bandwidth {max(rates.values()):.2f} GB/s (best kernel)")
  return 0


if __name__ == "__main__":
  cli.run(main, command=True)  # with huge pages, as the speed benchmarks run
