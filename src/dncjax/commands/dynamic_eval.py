"""Dynamic evaluation of a trained char-LM checkpoint, over a grid of settings.

  python experiments/dynamic_eval.py --workdir runs/alice --best --rule rms \\
      --lr 1e-3 3e-3 --decay 1e-3 0.01 --eps 1e-3 3e-3 --seq_length 10 20

(`dncjax-dynamic-eval` is the same command.) Restores the run's latest (or --best)
checkpoint and its corpus, scores the development split statically, then with dynamic
evaluation (Krause et al., 2017; dncjax.training.dynamic) for every combination of
--rule, --seq_length, --lr, --decay and --eps, and prints one table row per combination, best
first, with its gain over static scoring in the same windows (a model whose state is
truncated at window ends scores differently in other windows). Then it scores the
held-out tail once, statically and with the setting that was best on the development
split, and prints both. The checkpoint is only read. --csv writes the rows to a file.
A run trained without a development split (--dev_fraction 0) has nothing to choose on
and is refused.
"""

from __future__ import annotations

import argparse

from dncjax import cli, configs
from dncjax.charlm.config import Options
from dncjax.training.config import DYNAMIC_RULES


def parser() -> cli.ArgumentParser:
  """The program's flags, built from the config dataclasses (nothing heavy loads)."""
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--workdir", required=True, help="the run's folder (as given to alice.py)")
  p.add_argument("--best", action="store_true",
                 help="start from the best checkpoint on the development split instead of the "
                      "latest")
  p.add_argument("--data", default=None,
                 help="the text file, if it moved since training (default: the run's)")
  p.add_argument("--rule", nargs="+", choices=DYNAMIC_RULES, default=["adagrad"],
                 help="update rules: the training optimiser continued, or Krause's RMS rule")
  p.add_argument("--lr", nargs="+", type=float, default=[None],
                 help="learning rates (default: the training rate)")
  p.add_argument("--decay", nargs="+", type=float, default=[0.0],
                 help="rms rule: decay towards the trained parameters (ignored by adagrad)")
  p.add_argument("--eps", nargs="+", type=float, default=list(Options.dynamic_eps),
                 help="rms rule: epsilon added to sqrt(MS_g) (ignored by adagrad)")
  p.add_argument("--seq_length", "--seq-length", nargs="+", type=int, default=[None],
                 help="window lengths (default: the training window)")
  p.add_argument("--eval_lanes", "--eval-lanes", type=int, default=1,
                 help="lanes the development split and the tail are each split into")
  p.add_argument("--csv", default=None, help="also write the table to this CSV file")
  return p


def checked(args: argparse.Namespace) -> argparse.Namespace:
  """The parsed flags, checked (UsageError on nonsense)."""
  for name in ("lr", "seq_length", "eps"):
    bad = [v for v in getattr(args, name) if v is not None and v <= 0]
    if bad:
      raise cli.UsageError(f"--{name} must be positive, got {bad[0]}")
  if any(d < 0 for d in args.decay):
    raise cli.UsageError(f"--decay must be >= 0, got {min(args.decay)}")
  if args.eval_lanes <= 0:
    raise cli.UsageError(f"--eval_lanes must be positive, got {args.eval_lanes}")
  return args


def main(argv=None) -> int:
  """Runs the program on `argv` (default: the command line); returns the exit status."""
  args = checked(parser().parse_args(None if argv is None else [str(a) for a in argv]))
  from dncjax.charlm import (  # pylint: disable=import-outside-toplevel
      data, dynamic_grid, restore, scoring)
  config, model, ts, vocab, meta = restore.restore_trained(args.workdir, best=args.best)
  del vocab
  if args.data:
    config = configs.replace(config, "data.path", args.data)
  corpus = data.load(config.data)
  if corpus.vocab.to_list() != meta["vocab"]:
    raise data.DataError(f"the vocabulary of {corpus.path} is not the checkpoint's")
  combos = scoring.combinations(args.rule, args.seq_length, args.lr, args.decay, args.eps)
  print(f"{args.workdir}: {config.model_name} {model.config}, iter {meta['step']}", flush=True)
  statics, rows, scorer = dynamic_grid.run_grid(config, model, ts, corpus, combos,
                                                args.eval_lanes,
                                                say=lambda line: print(line, flush=True))
  print(f"static dev {statics[config.data.seq_length]:.6f} BPC\n\n"
        + dynamic_grid.markdown(rows))
  if args.csv:
    dynamic_grid.write_csv(rows, args.csv)
  _score_tail(scorer, corpus, dynamic_grid.best_setting(rows))
  return 0


def _score_tail(scorer, corpus, setting) -> None:
  """Prints the tail's static BPC and its dynamic BPC with `setting`, the best on the
  development split (none: every setting diverged there)."""
  from dncjax.charlm import scoring  # pylint: disable=import-outside-toplevel
  if not corpus.tail_length:
    print("\nno held-out tail in this run (val_fraction 0): nothing more is scored")
    return
  if setting is None:
    print("\nevery setting diverged on the development split: the tail is not scored")
    return
  scores = scoring.score_tail(scorer, corpus, setting)
  print(f"\nbest on the development split: {setting.describe()}\n"
        f"tail (scored once): static {scores['tail_bpc']:.6f} BPC, dynamic "
        f"{scores['dynamic_tail_bpc']:.6f} BPC")


def errors():
  """The job's errors that end the program with a one-line message (loads the job)."""
  from dncjax.charlm import job  # pylint: disable=import-outside-toplevel
  return job.error_types()


def console() -> None:
  """The console command: `main` with one-line errors and exit statuses."""
  cli.run(main, errors, command=True)
