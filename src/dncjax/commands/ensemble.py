"""Score an ensemble of trained char-LM runs: the mixture of their predictions.

  python experiments/ensemble.py runs/h512_s0 runs/h512_s1 runs/h256 --best
  python experiments/ensemble.py runs/a runs/b --best --dynamic_lr 3e-4 1e-3 --json ens.json
  python experiments/ensemble.py runs/a --best --ngram_order 8 12 16

(`dncjax-ensemble` is the same command.) Restores each run's latest (or --best)
checkpoint; chooses each run's dynamic evaluation setting on the development split among
the --dynamic_* flags' combinations (as alice.py's final scoring does); fits the mixture's
weights there (EM: the weights under which the mixture predicts the development split
best, one set for static and one for dynamic scoring); then scores the held-out tail once,
each run alone and the mixture, and prints the table. --ngram_order adds a count model of
the text (Kneser-Ney smoothed n-grams) to the mixture. The runs must share their text and
its split; the checkpoints are only read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from dncjax import cli
from dncjax.charlm import ngram
from dncjax.charlm.config import DYNAMIC_FLAGS, Options

OPTIONS = ("dynamic_eval", *DYNAMIC_FLAGS)


def parser() -> cli.ArgumentParser:
  """The program's flags (nothing heavy loads)."""
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("workdirs", nargs="+", metavar="WORKDIR",
                 help="the runs' folders (as given to alice.py): at least 2, or 1 with "
                      "--ngram_order")
  p.add_argument("--best", action="store_true",
                 help="each run's best checkpoint on the development split instead of its latest")
  p.add_argument("--json", default=None, metavar="PATH",
                 help="also write the summary (weights, settings, BPCs) to this JSON file")
  p.add_argument("--score_tail", "--score-tail", action=argparse.BooleanOptionalAction,
                 default=True, help="score the held-out tail once, with everything chosen on "
                                    "the development split")
  p.add_argument("--ngram_order", "--ngram-order", type=int, nargs="+", default=None,
                 metavar="K", help="add a count model (a character n-gram model with "
                 "Kneser-Ney smoothing, contexts of up to K characters) to the mixture; "
                 "with several K, the one best on the development split")
  p.add_argument("--ngram_discount", "--ngram-discount", type=float, nargs="+",
                 default=None, metavar="D",
                 help="the count model's absolute discount, in (0, 1); with several, the "
                      "one best on the development split (default: "
                      + " ".join(map(str, ngram.DISCOUNTS)) + ")")
  cli.add_option_flags(p, Options, "dynamic evaluation",
                       skip=tuple(f.name for f in dataclasses.fields(Options)
                                  if f.name not in OPTIONS))
  return p


def main(argv=None) -> int:
  """Runs the program on `argv` (default: the command line); returns the exit status."""
  args = parser().parse_args(None if argv is None else [str(a) for a in argv])
  options = cli.options(args, Options)  # checked here, before anything loads
  orders = tuple(args.ngram_order or ())
  discounts = tuple(args.ngram_discount or ngram.DISCOUNTS)
  if len(args.workdirs) + bool(orders) < 2:
    raise cli.UsageError(f"an ensemble needs at least 2 members: 2 runs, or a run and "
                         f"--ngram_order; got {len(args.workdirs)} run")
  if args.ngram_discount and not orders:
    raise cli.UsageError("--ngram_discount applies to the count model: give --ngram_order")
  try:
    for order in orders:
      ngram.check_order(order)
    for discount in discounts:
      ngram.check_discount(discount)
  except ValueError as e:
    raise cli.UsageError(str(e)) from None
  from dncjax.charlm import ensemble  # pylint: disable=import-outside-toplevel
  say = lambda line: print(line, flush=True)
  corpus, runs = ensemble.load(args.workdirs, args.best)
  members = ensemble.members(corpus, runs, options, say=say)
  summary = ensemble.score(corpus, members, options.score_tail, orders, discounts, say=say)
  print("\n" + ensemble.markdown(summary))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(summary, f, indent=2)
  return 0


def errors():
  """The job's errors that end the program with a one-line message (loads the job)."""
  from dncjax.charlm import job  # pylint: disable=import-outside-toplevel
  return job.error_types()


def console() -> None:
  """The console command: `main` with one-line errors and exit statuses."""
  cli.run(main, errors, command=True)
