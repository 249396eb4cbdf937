"""Checks jax.grad of a model against central finite differences; prints the seed's table.

  python experiments/gradcheck.py --model seed_dnc --addressing content
Exits 1 if any relative error exceeds --tolerance (default 1e-4, float64).
"""

from __future__ import annotations


import dncjax
from dncjax import cli, gradcheck


def parse_args(argv=None):
  parser = cli.ArgumentParser(description=__doc__)
  parser.add_argument("--model", default="seed_dnc", choices=dncjax.model_names())
  parser.add_argument("--vocab", type=int, default=11, help="vocabulary size V (random tokens)")
  parser.add_argument("--batchsize", "--batch-size", type=int, default=4, help="B")
  parser.add_argument("--seqlength", "--seq-length", type=int, default=10, help="S")
  parser.add_argument("--num_checks", "--num-checks", type=int, default=10,
                      help="entries checked per parameter")
  parser.add_argument("--delta", type=float, default=1e-5, help="finite-difference step")
  parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error")
  parser.add_argument("--fp32", action="store_true", help="check in float32 (default float64)")
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
  worst = gradcheck.max_error(rows)
  verdict = "PASS" if worst <= args.tolerance else "FAIL"
  print(f"{verdict}: largest relative error {worst:.3e} (tolerance {args.tolerance:.0e})")
  return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
  cli.run(main)
