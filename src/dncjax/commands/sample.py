"""Generate text from a trained char-LM checkpoint, without training.

  python experiments/sample.py --workdir runs/alice --length 500 --prime "Alice" --temperature 0.8

(`dncjax-sample` is the same command.) Reads the run's latest (or --best) checkpoint;
nothing in the workdir is modified.
"""

from __future__ import annotations

from dncjax import checks, cli


def parser() -> cli.ArgumentParser:
  """The program's flags, built from the config dataclasses (nothing heavy loads)."""
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--workdir", required=True, help="the run's folder (as given to alice.py)")
  p.add_argument("--length", type=int, default=500, help="characters to generate")
  p.add_argument("--prime", default="Alice", help="text to start from")
  p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
  p.add_argument("--seed", type=int, default=0, help="sampling seed")
  p.add_argument("--best", action="store_true",
                 help="use the best checkpoint on the development split instead of the "
                      "latest")
  return p


def main(argv=None) -> int:
  """Runs the program on `argv` (default: the command line); returns the exit status."""
  args = parser().parse_args(None if argv is None else [str(a) for a in argv])
  if args.length <= 0:
    raise cli.UsageError(f"--length must be positive, got {args.length}")
  if not args.prime:
    raise cli.UsageError("--prime must hold at least one character")
  if not 0 <= args.seed < 2**32:
    raise cli.UsageError(f"--seed must be in [0, 2**32), got {args.seed}")
  checks.check_number("--temperature", args.temperature, 0, low_open=True)
  # pylint: disable=import-outside-toplevel
  import jax
  import jax.numpy as jnp
  import numpy as np

  from dncjax.charlm import restore, sampling
  model, params, vocab, _ = restore.restore_for_sampling(args.workdir, best=args.best)
  prime = vocab.encode(args.prime)
  ids, _ = sampling.sample(model, params, model.initial_state(), jnp.asarray(prime),
                           jax.random.key(args.seed), args.length, args.temperature)
  print(args.prime + vocab.decode(np.asarray(ids)))
  return 0


def errors():
  """The job's errors that end the program with a one-line message (loads the job)."""
  from dncjax.charlm import job  # pylint: disable=import-outside-toplevel
  return job.error_types()


def console() -> None:
  """The console command: `main` with one-line errors and exit statuses."""
  cli.run(main, errors, command=True)
