"""Checks jax.grad of a model against central finite differences; prints the seed's table.

  python experiments/gradcheck.py --model seed_dnc --addressing content
  python experiments/gradcheck.py --model dnc --hidden 5 --memory_size 4 --word_size 3

(`dncjax-gradcheck` is the same command.) Random tokens and parameters; the window starts
from the state the model reaches after --seqlength steps of its own on random tokens from
its initial state (the content-addressed seed DNC from a random memory: see
dncjax.training.gradcheck.check_setup). Each parameter gets --num_checks entries
(preferring gradients the differences resolve; entries where the loss jumps are passed
over, counted as 'unsmooth') and one check along a random direction. The last line is the
verdict; exit 1 on FAIL: any NaN or Inf, a relative error above --tolerance (default
1e-4, float64), or a parameter with fewer checks carrying signal than asked for (a zero
gradient checks nothing). float64 switches on jax_enable_x64 for the process.
"""

from __future__ import annotations

from dncjax import cli
from dncjax.cli import gradcheck as gradcheck_cli


def parser() -> cli.ArgumentParser:
  """The program's flags, built from the config dataclasses (nothing heavy loads)."""
  p = cli.ArgumentParser(description=__doc__)
  gradcheck_cli.add_flags(p)
  return p


def main(argv=None) -> int:
  """Runs the program on `argv` (default: the command line); returns the exit status."""
  p = parser()
  args = p.parse_args(None if argv is None else [str(a) for a in argv])
  name, fields = gradcheck_cli.model_fields(args, p)
  # pylint: disable=import-outside-toplevel
  import dncjax
  from dncjax.training import gradcheck
  config = dncjax.make_config(name, args.vocab, args.vocab, **fields)
  if dncjax.models.enable_x64_for(config):
    print(dncjax.models.X64_NOTICE)
  model = dncjax.build(config)
  rows = gradcheck.check_model(model, batch_size=args.batchsize, seq_length=args.seqlength,
                               seed=args.seed, num_checks=args.num_checks, delta=args.delta)
  print(f"gradient check: model {name}, {fields}")
  print(gradcheck.format_table(rows))
  ok, reason = gradcheck.verdict(rows, args.tolerance)
  print(reason)
  return 0 if ok else 1


def console() -> None:
  """The console command: `main` with one-line errors and exit statuses."""
  cli.run(main, command=True)
