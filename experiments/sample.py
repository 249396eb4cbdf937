"""Generate text from a trained char-LM checkpoint, without training.

  python experiments/sample.py --workdir runs/alice --length 500 --prime "Alice" --temperature 0.8
"""

from __future__ import annotations

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C while loading: no traceback

import jax
import jax.numpy as jnp
import numpy as np

from dncjax import cli
from dncjax.charlm import job, restore, sampling


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--workdir", required=True, help="the run's folder (as given to alice.py)")
  p.add_argument("--length", type=int, default=500, help="characters to generate")
  p.add_argument("--prime", default="Alice", help="text to start from")
  p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
  p.add_argument("--seed", type=int, default=0, help="sampling seed")
  p.add_argument("--best", action="store_true",
                 help="use the best-validation checkpoint instead of the latest")
  args = p.parse_args(argv)
  if args.length <= 0:
    raise cli.UsageError(f"--length must be positive, got {args.length}")
  if not args.prime:
    raise cli.UsageError("--prime must hold at least one character")
  if not 0 <= args.seed < 2**32:
    raise cli.UsageError(f"--seed must be in [0, 2**32), got {args.seed}")
  temperature = sampling.check_temperature(args.temperature)
  model, params, vocab, meta = restore.restore_for_sampling(args.workdir, best=args.best)
  prime = vocab.encode(args.prime)
  ids, _ = sampling.sample(model, params, model.initial_state(), jnp.asarray(prime),
                           jax.random.key(args.seed), args.length, temperature)
  print(args.prime + vocab.decode(np.asarray(ids)))
  return 0


if __name__ == "__main__":
  cli.run(main, job.error_types())
