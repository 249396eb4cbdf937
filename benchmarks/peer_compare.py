"""dncjax against the PyTorch DNC in one run, interleaved: `dnc_speed.py --peer`.

For each memory size N: dncjax's training step is compiled once; then, `--rounds` times,
dncjax runs `--steps` steps and the peer (benchmarks/peer_dnc.py in the interpreter given
to --peer, which has torch and dnc) runs its steps, once with 1 torch thread and once with
torch's default, the faster kept (on a loaded 2-core machine the default threads can be far
slower). Each side's best round is reported, and their ratio.

Where the peer times its forward pass only (its sparse models' backward pass fails on torch
2), dncjax's forward pass (the jitted loss of a batch, no gradient) is timed in the same
rounds too, and the ratio of like for like is forward pass over forward pass; the training
step's ratio is then a lower bound on what a working peer would give.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

PEER = pathlib.Path(__file__).with_name("peer_dnc.py")
TRAINING = "training step"  # what peer_dnc.py reports when the peer's step trains
INSTALL = ("python -m venv peer && peer/bin/pip install torch==2.13.0 dnc==1.1.0 "
           "(then --peer peer/bin/python)")


def check_peer(python: str) -> str | None:
  """None when `python` can import torch and dnc, else why not and how to install them."""
  try:
    proc = subprocess.run([python, "-c", "import torch, dnc"], capture_output=True, text=True,
                          timeout=300)
  except OSError as e:
    return f"cannot run {python}: {e}; install the peer: {INSTALL}"
  if proc.returncode:
    return f"{python} cannot import torch and dnc; install the peer: {INSTALL}"
  return None


def peer_step(python: str, args, memory_size: int, threads: int) -> dict:
  """The peer's row at `memory_size` with `threads` torch threads (0: torch's default)."""
  cmd = [python, str(PEER), "--model", args.model, "--batch", str(args.batch),
         "--time", str(args.time), "--input", str(args.input), "--hidden", str(args.hidden),
         "--word", str(args.word), "--reads", str(args.reads), "--sparse-k", str(args.sparse_k),
         "--memory-sizes", str(memory_size), "--steps", str(args.peer_steps),
         "--warmup", "1", "--threads", str(threads)]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
  rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
  return rows[-1]


def compare(args, prepare, prepare_forward, python: str, out=print) -> list[dict]:
  """Interleaved rounds at each of `args.memory_sizes`; prints and returns the rows.
  `prepare(args, N)` is dnc_speed's: (compile seconds, timer(steps) -> (wall, cpu));
  `prepare_forward(args, N)` the same for dncjax's forward pass, timed where the peer
  times only its own."""
  out("| N | dncjax ms / training step | dncjax ms / forward pass | peer ms | peer threads "
      "| peer timed | ratio, like for like | ratio to dncjax's training step |")
  out("|---:|---:|---:|---:|---:|---|---:|---:|")
  rows = []
  for n in args.memory_sizes:
    timers = {"train": prepare(args, n)[1]}
    best = {"train": float("inf"), "forward": float("inf")}
    theirs = None
    for _ in range(args.rounds):
      for name, timer in timers.items():
        best[name] = min(best[name], timer(args.steps)[0] * 1e3)
      for threads in (1, 0):
        row = peer_step(python, args, n, threads)
        if theirs is None or row["step_ms"] < theirs["step_ms"]:
          theirs = row
      if theirs["measured"] != TRAINING and "forward" not in timers:
        timers["forward"] = prepare_forward(args, n)[1]
        best["forward"] = timers["forward"](args.steps)[0] * 1e3
    like = best["train"] if theirs["measured"] == TRAINING else best["forward"]
    rows.append({"N": n, "dncjax_ms": best["train"], "dncjax_forward_ms": best["forward"],
                 "peer_ms": theirs["step_ms"], "peer_threads": theirs["threads"],
                 "peer_measured": theirs["measured"], "ratio": theirs["step_ms"] / like,
                 "ratio_training": theirs["step_ms"] / best["train"]})
    r = rows[-1]
    forward = "-" if r["dncjax_forward_ms"] == float("inf") else f"{r['dncjax_forward_ms']:.2f}"
    out(f"| {n} | {r['dncjax_ms']:.2f} | {forward} | {r['peer_ms']:.1f} | {r['peer_threads']} "
        f"| {r['peer_measured']} | {r['ratio']:.1f}x | {r['ratio_training']:.1f}x |")
  return rows
