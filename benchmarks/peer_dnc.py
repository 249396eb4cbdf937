"""Training speed of the PyTorch DNC (`pip install dnc`: ixaxaar/pytorch-dnc), the peer
that benchmarks/dnc_speed.py --peer compares dncjax with.

Runs in an interpreter that has torch and dnc (not dncjax): one training step is the
forward pass of a batch of bit sequences through the peer's model (its own output layer
maps to the input size), sigmoid cross-entropy, the backward pass and an Adagrad update
(as in dnc_speed.py). Prints one JSON line per
memory size: {"model", "N", "threads", "measured", "steps_per_s", "step_ms"}.

  python benchmarks/peer_dnc.py --memory-sizes 16 64 --threads 1
  python benchmarks/peer_dnc.py --model sdnc --sparse-k 8 --memory-sizes 4096

Install the peer in its own environment (it needs torch; the CPU build):
  python -m venv peer && peer/bin/pip install torch==2.13.0 dnc==1.1.0
"""

from __future__ import annotations

import argparse
import json
import time


def build(args, memory_size: int):
  """(model, optimiser) of the peer at `memory_size`."""
  import dnc  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  common = dict(input_size=args.input, hidden_size=args.hidden, rnn_type="lstm", num_layers=1,
                num_hidden_layers=1, nr_cells=memory_size, cell_size=args.word,
                read_heads=args.reads, batch_first=True, gpu_id=-1)
  if args.model == "dnc":
    model = dnc.DNC(**common)
  elif args.model == "sdnc":
    model = dnc.SDNC(**common, sparse_reads=args.sparse_k, temporal_reads=args.sparse_k)
  else:
    model = dnc.SAM(**common, sparse_reads=args.sparse_k)
  return model, torch.optim.Adagrad(model.parameters(), lr=1e-3)


def time_one(args, memory_size: int) -> dict:
  """Steps per second of the peer at `memory_size` (after `--warmup` untimed steps).

  Where the peer's backward pass fails (its sparse models modify tensors in place that
  autograd still needs: ixaxaar/pytorch-dnc#60, on torch 2), the forward pass alone is
  timed and `measured` says so: a lower bound on the peer's training step."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  model, optimizer = build(args, memory_size)
  bits = (torch.rand(args.batch, args.time, args.input) < 0.5).float()
  loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
  measured = "training step"

  def step():
    optimizer.zero_grad()
    output, _ = model(bits, (None, None, None), reset_experience=True)
    loss = loss_fn(output, bits)
    if measured == "training step":
      loss.backward()
      optimizer.step()

  try:
    step()
  except RuntimeError as e:
    if "inplace operation" not in str(e):
      raise
    measured = "forward pass only (the backward pass fails: in-place update)"
  for _ in range(args.warmup):
    step()
  start = time.perf_counter()
  for _ in range(args.steps):
    step()
  seconds = (time.perf_counter() - start) / args.steps
  return {"model": args.model, "N": memory_size, "threads": torch.get_num_threads(),
          "measured": measured, "steps_per_s": 1 / seconds, "step_ms": 1e3 * seconds}


def parser() -> argparse.ArgumentParser:
  """The command line (the sizes default to dnc_speed.py's)."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", default="dnc", choices=("dnc", "sdnc", "sam"))
  p.add_argument("--batch", type=int, default=16, help="B, sequences per step")
  p.add_argument("--time", type=int, default=20, help="T, time steps per sequence")
  p.add_argument("--input", type=int, default=8, help="I, bits per input vector")
  p.add_argument("--hidden", type=int, default=64, help="H, controller units")
  p.add_argument("--word", type=int, default=16, help="W, word size")
  p.add_argument("--reads", type=int, default=4, help="R, read heads")
  p.add_argument("--sparse-k", type=int, default=8, help="K, sparse reads (sdnc, sam)")
  p.add_argument("--memory-sizes", type=int, nargs="+", default=[16, 64, 256])
  p.add_argument("--steps", type=int, default=10, help="timed training steps per size")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
  p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
  return p


def main(argv=None) -> int:
  """Prints one JSON line per memory size."""
  args = parser().parse_args(argv)
  import torch  # pylint: disable=import-outside-toplevel
  if args.threads:
    torch.set_num_threads(args.threads)
  for n in args.memory_sizes:
    print(json.dumps(time_one(args, n)), flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
