"""Training speed of the paper's DNC, or of the sparse SDNC and SAM: jitted steps/s (forward +
backward + Adagrad).

Each row builds `dncjax.make_model(--model, ...)` at one memory size N, compiles
`dncjax.training.train.make_train_step` (timed: the compile time), runs `--warmup` steps, then
times `--steps` steps with `block_until_ready` (wall clock; the CPU column is the
process's CPU time over all its threads, a check when the machine is shared). Inputs
are random float bit vectors [B, T, I] and the targets the same bits (sigmoid
cross-entropy), so only the model's cost is measured. Prints a Markdown table.

  python benchmarks/dnc_speed.py                     # B=16 T=20 I=8 H=64 W=16 R=4, N=16..256
  python benchmarks/dnc_speed.py --memory-sizes 16 --steps 200
  python benchmarks/dnc_speed.py --model sdnc --sparse-k 8 --memory-sizes 1024 4096 16384
  python benchmarks/dnc_speed.py --peer peer/bin/python --memory-sizes 16 64 256 --rounds 3
  python benchmarks/dnc_speed.py --roofline --memory-sizes 64 256 1024 --steps 5
  python benchmarks/dnc_speed.py --link-kernel both --memory-sizes 64 256 1024 --rounds 3
  python benchmarks/dnc_speed.py --link-history both --memory-sizes 64 256 1024 --rounds 3
  python benchmarks/dnc_speed.py --access-kernels both --memory-sizes 64 256 1024 --rounds 3

`--peer PYTHON` times the PyTorch DNC (`pip install dnc`) in the same run, interleaved with
dncjax, and prints the ratio (benchmarks/peer_compare.py); PYTHON is an interpreter that
has torch and dnc (default: this one), and without them the script says how to install them.
`--roofline` prints, per N, XLA's FLOPs and bytes of one step, the link matrix's least bytes
and the bounds they set at the measured memory bandwidth (benchmarks/roofline.py).
`--link-kernel native|xla` picks the DNC's temporal link step (`dncjax.models.native`:
the CPU kernel, or XLA's operations; default: what a run would use); `both` times the two
interleaved, `--rounds` times each, and prints the best of each and their ratio.
`--link-history on|off|both` likewise for the DNC's `link_history` (`dncjax.models.history`:
every L_t kept where the link kernel writes it, or lax.scan's stack of them).
`--access-kernels on|off|both` likewise for the DNC's `access_kernels`
(`dncjax.models.native.access`: the write and the read as CPU kernels, or XLA's operations).
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import optax

import dncjax
from dncjax import cli, configs, pytrees
from dncjax.models import native
from dncjax.training import optim, train


def bit_loss(logits_BxSxI, targets_BxSxI):
  """Summed sigmoid cross-entropy of the predicted bits."""
  return optax.sigmoid_binary_cross_entropy(logits_BxSxI, targets_BxSxI).sum()


def build(args, memory_size: int, forward: bool = False):
  """(jitted step, its initial state, the batch) of the model at `memory_size`: the
  training step, or with `forward` the forward pass alone (the batch's loss, no gradient;
  it takes and returns the same state)."""
  sparse = ({"link_history": args.link_history, "access_kernels": args.access_kernels}
            if args.model == "dnc" else {"sparse_k": args.sparse_k})
  if args.model == "sdnc":
    sparse["link_history"] = args.link_history
  model = dncjax.make_model(
      args.model, args.input, args.input, hidden=args.hidden, memory_size=memory_size,
      word_size=args.word, read_heads=args.reads, remat=args.remat, dtype=args.dtype, **sparse)
  optimizer = optim.make(optim.OptimizerConfig(learning_rate=args.lr))
  train_step = train.make_train_step(model, optimizer, bit_loss)
  state = train.init_train_state(model, optimizer, jax.random.key(0), args.batch)
  bits = jax.random.bernoulli(jax.random.key(1), 0.5, (args.batch, args.time, args.input))
  bits = bits.astype(args.dtype)
  batch = pytrees.Batch(bits, bits, jnp.zeros((args.batch,), bool))
  if forward:
    eval_step = train.make_eval_step(model, bit_loss, jit=False)

    @jax.jit
    def forward_step(state, batch):
      loss, states = eval_step(state.params, state.model_state, batch)
      return state._replace(model_state=states), loss

    return forward_step, state, batch
  return train_step, state, batch


def prepare(args, memory_size: int, forward: bool = False):
  """(compile seconds, timer): `timer(steps)` runs that many compiled training steps (with
  `forward`, forward passes) of the model at `memory_size` and returns (wall seconds, CPU
  seconds) per step."""
  train_step, state, batch = build(args, memory_size, forward)
  start = time.perf_counter()
  compiled = train_step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  held = [state]

  def timer(steps: int) -> tuple[float, float]:
    state = held[0]
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
      state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    held[0] = state
    steps = max(steps, 1)
    return ((time.perf_counter() - start) / steps, (time.process_time() - start_cpu) / steps)

  timer(args.warmup)
  return compile_s, timer


def time_one(args, memory_size: int) -> dict:
  """One table row: compile time, wall and CPU milliseconds per step, steps per second."""
  compile_s, timer = prepare(args, memory_size)
  step_s, cpu_s = timer(args.steps)
  return {"N": memory_size, "compile_s": compile_s, "step_ms": 1e3 * step_s,
          "cpu_ms": 1e3 * cpu_s, "steps_per_s": 1 / step_s}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=16, help="B, lanes per step")
  parser.add_argument("--time", type=int, default=20, help="T, time steps per window")
  parser.add_argument("--input", type=int, default=8, help="I, bits per input vector")
  parser.add_argument("--model", default="dnc", choices=("dnc", "sdnc", "sam"),
                      help="the core timed")
  parser.add_argument("--sparse-k", type=int, default=8,
                      help="K, the slots each weighting touches (sdnc and sam)")
  parser.add_argument("--hidden", type=int, default=64, help="H, controller units")
  parser.add_argument("--word", type=int, default=16, help="W, word size")
  parser.add_argument("--reads", type=int, default=4, help="R, read heads")
  parser.add_argument("--memory-sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256],
                      help="N values, one table row each")
  parser.add_argument("--steps", type=int, default=100, help="timed training steps per row")
  parser.add_argument("--warmup", type=int, default=10, help="untimed steps after compiling")
  parser.add_argument("--lr", type=float, default=1e-3, help="Adagrad learning rate")
  parser.add_argument("--remat", action=argparse.BooleanOptionalAction, default=None,
                      help="recompute each step in the backward pass (the config's remat, "
                           "off by default for every model)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
  parser.add_argument("--peer", nargs="?", const=sys.executable, default=None, metavar="PYTHON",
                      help="also time the PyTorch DNC, interleaved (PYTHON has torch and dnc)")
  parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds with --peer")
  parser.add_argument("--peer-steps", type=int, default=5, help="the peer's timed steps")
  parser.add_argument("--link-kernel", default="auto", choices=(*native.KINDS, "both"),
                      help="the DNC's link step: the CPU kernel, XLA's, or both interleaved")
  parser.add_argument("--link-history", default="on", choices=("on", "off", "both"),
                      help="the DNC's training keeps every L_t where the link kernel writes "
                           "it (the config's link_history), lax.scan's stack, or both "
                           "interleaved")
  parser.add_argument("--access-kernels", default="on", choices=("on", "off", "both"),
                      help="the DNC's write and read as CPU kernels where the link kernel is "
                           "used (the config's access_kernels), as XLA's operations, or both "
                           "interleaved")
  parser.add_argument("--roofline", action="store_true",
                      help="print the roofline table (bytes per step over the bandwidth)")
  args = parser.parse_args(argv)
  if args.remat is None:
    args.remat = configs.model_config(args.model, {}).remat
  if args.link_kernel == "both":
    return _link_kernels(args)
  native.select(args.link_kernel)
  if args.link_history == "both":
    return _link_histories(args)
  args.link_history = args.link_history == "on"
  if args.access_kernels == "both":
    return _access_kernels(args)
  args.access_kernels = args.access_kernels == "on"
  if args.peer:
    return _peer(args)
  if args.roofline:
    return _roofline(args)

  sparse = "" if args.model == "dnc" else f" K={args.sparse_k}"
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}: {args.model} B={args.batch} "
        f"T={args.time} I={args.input} H={args.hidden} W={args.word} R={args.reads}{sparse} "
        f"{args.dtype} remat={args.remat}\n")
  print("| N | compile (s) | ms / step | CPU ms / step | steps / s |")
  print("|---:|---:|---:|---:|---:|")
  for memory_size in args.memory_sizes:
    row = time_one(args, memory_size)
    print(f"| {row['N']} | {row['compile_s']:.2f} | {row['step_ms']:.2f} | {row['cpu_ms']:.2f} "
          f"| {row['steps_per_s']:.1f} |", flush=True)


def _link_kernels(args) -> int:
  """Per N: the step with the native link kernel and with XLA's, interleaved."""
  try:
    native.load()
  except native.build.BuildError as e:
    print(f"the native link kernel is not timed: {e}")
    return 1
  args.link_history = args.link_history != "off"
  args.access_kernels = args.access_kernels != "off"
  return _interleaved(args, "link kernel", {"native": lambda: native.select("native"),
                                            "XLA": lambda: native.select("xla")})


def _link_histories(args) -> int:
  """Per N: the DNC's step with its link history and with lax.scan's stack, interleaved."""
  args.access_kernels = args.access_kernels != "off"
  return _interleaved(args, "link history", {
      "history": lambda: setattr(args, "link_history", True),
      "lax.scan": lambda: setattr(args, "link_history", False)})


def _access_kernels(args) -> int:
  """Per N: the DNC's step with the write and read kernels and with XLA's, interleaved."""
  return _interleaved(args, "access kernels", {
      "kernels": lambda: setattr(args, "access_kernels", True),
      "XLA": lambda: setattr(args, "access_kernels", False)})


def _interleaved(args, what: str, variants: dict) -> int:
  """Per N: the step built after each of `variants`' set-ups (two), --rounds interleaved
  rounds each; prints the best of each and the second's time over the first's."""
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}: {args.model} B={args.batch} "
        f"T={args.time} I={args.input} H={args.hidden} W={args.word} R={args.reads} "
        f"{args.dtype} remat={args.remat}, {what}: best of {args.rounds} interleaved rounds\n")
  first, second = variants
  print(f"| N | {first} ms / step | {second} ms / step | {second} / {first} |")
  print("|---:|---:|---:|---:|")
  for memory_size in args.memory_sizes:
    timers = {}
    for name, set_up in variants.items():
      set_up()
      timers[name] = prepare(args, memory_size)[1]
    best = {name: float("inf") for name in timers}
    for _ in range(args.rounds):
      for name, timer in timers.items():
        best[name] = min(best[name], 1e3 * timer(args.steps)[0])
    print(f"| {memory_size} | {best[first]:.2f} | {best[second]:.2f} "
          f"| {best[second] / best[first]:.2f} |", flush=True)
  native.select(None)
  return 0


def _roofline(args) -> int:
  sys.path.insert(0, str(pathlib.Path(__file__).parent))
  import roofline  # pylint: disable=import-outside-toplevel
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}: roofline of {args.model} "
        f"B={args.batch} T={args.time} I={args.input} H={args.hidden} W={args.word} "
        f"R={args.reads} {args.dtype} remat={args.remat}")
  roofline.table(args, build, prepare, out=functools.partial(print, flush=True))
  return 0


def _peer(args) -> int:
  sys.path.insert(0, str(pathlib.Path(__file__).parent))
  import peer_compare  # pylint: disable=import-outside-toplevel
  why = peer_compare.check_peer(args.peer)
  if why:
    print(f"the PyTorch DNC is not timed: {why}")
    return 1
  print(f"jax {jax.__version__} against the PyTorch DNC ({args.peer}): {args.model} "
        f"B={args.batch} T={args.time} I={args.input} H={args.hidden} W={args.word} "
        f"R={args.reads}, best of {args.rounds} interleaved rounds\n")
  peer_compare.compare(args, prepare, functools.partial(prepare, forward=True), args.peer)
  return 0


if __name__ == "__main__":
  cli.run(main, command=True)
