"""How fast can the headline seed_dnc step possibly run on this machine? A FLOP ceiling.

  python benchmarks/flops_ceiling.py                 # B=32, H=128, W=12, vocabulary 73
  python benchmarks/flops_ceiling.py --oracle_char_s 39413

Counts the multiply-adds of one character of seed_dnc content (LSTM gates over [h, r], the
readout, the four interface projections; the input is a column gather), measures the
float32 GFLOP/s this machine reaches on (a) the step's gate product [B x (H+W)] @ [(H+W) x 4H]
inside a jitted lax.scan, (b) the same product in a NumPy loop and (c) one large 1024^3 matrix
product, and prints the characters per second each rate would allow if the step did nothing
but arithmetic (forward + backward = 3x the forward FLOPs). With --oracle_char_s it also
prints the rate that 10x the NumPy oracle would need (benchmarks/throughput.py measures it).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from dncjax import cli


def flops_per_char(H: int, W: int, V: int) -> int:
  """Forward + backward FLOPs of one character (2 per multiply-add, backward = 2x forward)."""
  gates = 4 * H * (H + W)        # W_hh h + W_rh r (W_xh x is a gather)
  readout = V * (H + W)          # W_hy h + W_ry r
  interface = 4 * W * H          # write / read keys, erase, write vector from h
  return 2 * 3 * (gates + readout + interface)


def timed(fn, repeats: int) -> float:
  fn()  # warm-up (and compile)
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - start) / repeats


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--batch", type=int, default=32, help="B")
  p.add_argument("--hidden", type=int, default=128, help="H")
  p.add_argument("--word_size", type=int, default=12, help="W")
  p.add_argument("--vocab", type=int, default=73, help="V")
  p.add_argument("--oracle_char_s", type=float, default=None,
                 help="the NumPy oracle's char/s on this row, to print what 10x needs")
  args = p.parse_args(argv)
  B, H, W, V = args.batch, args.hidden, args.word_size, args.vocab
  if min(B, H, W, V) <= 0:
    raise cli.UsageError("sizes must be positive")
  rng = np.random.default_rng(0)
  a = rng.random((B, H + W), dtype=np.float32)
  w = rng.random((H + W, 4 * H), dtype=np.float32)
  steps = 2000

  @jax.jit
  def scanned(a, w):
    def body(x, _):
      return x + 1e-6 * (x @ w)[:, :H + W], None
    return jax.lax.scan(body, a, None, length=steps)[0]

  ja, jw = jnp.asarray(a), jnp.asarray(w)
  product = 2 * B * (H + W) * 4 * H
  rates = {
      f"XLA, [{B}x{H + W}] @ [{H + W}x{4 * H}] in a scan":
          product * steps / timed(lambda: scanned(ja, jw).block_until_ready(), 5),
      "NumPy, the same product in a loop":
          product * steps / timed(lambda: [a @ w for _ in range(steps)], 5),
  }
  big = jnp.asarray(rng.random((1024, 1024), dtype=np.float32))
  square = jax.jit(lambda x: x @ x)
  rates["XLA, one 1024 x 1024 x 1024 product"] = 2 * 1024 ** 3 / timed(
      lambda: square(big).block_until_ready(), 20)
  per_char = flops_per_char(H, W, V)
  print(f"seed_dnc content, B={B} H={H} W={W} V={V}: {per_char / 1e3:.0f}k FLOP per character "
        f"(forward + backward)")
  print("| float32 rate | GFLOP/s | char/s if the step were only arithmetic |\n|---|---|---|")
  for name, rate in rates.items():
    print(f"| {name} | {rate / 1e9:.1f} | {rate / per_char:,.0f} |")
  if args.oracle_char_s:
    need = 10 * args.oracle_char_s * per_char
    print(f"10x the oracle's {args.oracle_char_s:,.0f} char/s needs {10 * args.oracle_char_s:,.0f} "
          f"char/s = {need / 1e9:.0f} GFLOP/s")
  return 0


if __name__ == "__main__":
  cli.run(main, ())
