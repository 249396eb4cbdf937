"""Checks jax.grad of a model against central finite differences; prints the seed's table.

  python experiments/gradcheck.py --model seed_dnc --addressing content
  python experiments/gradcheck.py --model dnc --hidden 5 --memory_size 4 --word_size 3

Random tokens and parameters; the window starts from the state the model reaches after
--seqlength steps of its own on random tokens from its initial state (the content-
addressed seed DNC from a random memory: see dncjax.gradcheck.check_setup). Each
parameter gets --num_checks entries (preferring gradients the differences resolve;
entries where the loss jumps are passed over, counted as 'unsmooth') and one check along
a random direction. The last line is the verdict; exit 1 on FAIL: any NaN or Inf, a
relative error above --tolerance (default 1e-4, float64), or a parameter with fewer
checks carrying signal than asked for (a zero gradient checks nothing).
"""

from __future__ import annotations

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C while loading: no traceback

import dncjax
from dncjax import cli
from dncjax.training import gradcheck


def parse_args(argv=None):
  parser = cli.ArgumentParser(description=__doc__)
  parser.add_argument("--model", default="seed_dnc", choices=dncjax.model_names())
  parser.add_argument("--vocab", type=int, default=11, help="vocabulary size V (random tokens)")
  parser.add_argument("--batchsize", "--batch-size", type=int, default=4, help="B")
  parser.add_argument("--seqlength", "--seq-length", type=int, default=10,
                      help="S, the window (and the warm-up before it)")
  parser.add_argument("--num_checks", "--num-checks", type=int, default=10,
                      help="entries checked per parameter (all of a smaller one)")
  parser.add_argument("--delta", type=float, default=1e-5, help="finite-difference step")
  parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error")
  parser.add_argument("--fp32", action="store_true",
                      help="check in float32 (default float64; needs a larger --delta)")
  parser.add_argument("--seed", type=int, default=0)
  cli.add_model_flags(parser, {"init_scale": 0.5})
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  for name in ("vocab", "batchsize", "seqlength", "num_checks"):
    if getattr(args, name) <= 0:
      raise cli.UsageError(f"--{name} must be positive, got {getattr(args, name)}")
  hyper = cli.model_hyperparameters(args, args.model)
  hyper["dtype"] = "float32" if args.fp32 else "float64"
  model = dncjax.make_model(args.model, args.vocab, args.vocab, **hyper)
  rows = gradcheck.check_model(model, batch_size=args.batchsize, seq_length=args.seqlength,
                               seed=args.seed, num_checks=args.num_checks, delta=args.delta)
  print(f"gradient check: model {args.model}, {hyper}")
  print(gradcheck.format_table(rows))
  ok, reason = gradcheck.verdict(rows, args.tolerance)
  print(reason)
  return 0 if ok else 1


if __name__ == "__main__":
  cli.run(main)
