"""Sweep alice.py's hyperparameters with Optuna: grid, random or TPE, pruned, resumable.

  python experiments/sweep.py --workdir runs/sweep --param lr=0.01:1:log --param hidden=64,128 \
      --set model=lstm --steps 1000 --trials 16 --workers 2
  python experiments/sweep.py --workdir runs/sweep ... (the same command again: resumes)
  python experiments/sweep.py --workdir runs/sweep --report   # tables and plots, as it stands

--param NAME=SPEC sweeps a setting: a list `a,b,c`, a range `low:high` or `low:high:log`
(int or float as the setting is; `none` in a list leaves an optional one off). --set
NAME=VALUE fixes one for every trial. NAME is any run setting or model hyperparameter of
alice.py (lr, eps, clip_norm, clip_value, weight_decay, dropout, weight_drop, init_scale,
hidden, memory_size/N, word_size/W, read_heads/R, seq_length, batch_size, overlap, model,
seed...).

(`dncjax-sweep` is the same command.) Each trial is an alice.py run in
<workdir>/trials/NNNN (its log.txt, metrics.jsonl, checkpoints), trained for --steps
iterations or --seconds, evaluated every --eval_every iterations (reported to the pruner)
and scored by its best dev BPC. The study is
kept in <workdir>/study.db (SQLite) or in --storage URL, which workers on other machines
can join by running the same command with the same --storage and --study. Ctrl-C or a
killed worker loses no finished trial; running the command again retries the unfinished
ones from their checkpoints. At the end: results.csv / results.md (ranked), params.png,
curves.png and best_trial (a link to the best trial's folder; sample from it with
experiments/sample.py --workdir <workdir>/best_trial, or continue it with alice.py
--workdir <workdir>/best_trial --resume). Every setting and both ends of every range are
checked before the first trial; a sweep whose trials all failed ends in a one-line error.

--population K trains K trials at once as one vmapped program; it needs every swept
setting to be one that keeps array shapes (lr, eps, clip_norm, clip_value,
weight_decay, init_scale, seed).
"""

from __future__ import annotations

import argparse

from dncjax import cli
from dncjax.sweeps import space
from dncjax.sweeps.config import Budget, Sweep


def parser() -> cli.ArgumentParser:
  """The program's flags, built from the config dataclasses (nothing heavy loads)."""
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--workdir", default="runs/sweep", help="the sweep's folder")
  what = p.add_argument_group("what to sweep")
  what.add_argument("--param", action="append", default=None, metavar="NAME=SPEC",
                    help="a swept setting: a,b,c | low:high | low:high:log (repeatable)")
  what.add_argument("--set", action="append", default=None, metavar="NAME=VALUE",
                    dest="fixed", help="a setting every trial shares (repeatable)")
  how = cli.add_option_flags(p, Budget, "how", skip=("sample_length",))
  how.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
  cli.add_option_flags(p, Sweep, "the study",
                       skip=("workdir", "space", "budget"))
  p.add_argument("--report", action="store_true",
                      help="only write the tables and plots of the study in --workdir (or "
                           "--storage/--study) as it stands; no other flag needed")
  return p


def make_sweep(args: argparse.Namespace) -> Sweep:
  """The `Sweep` the flags describe, checked (UsageError, SpaceError on nonsense)."""
  if args.workers < 1:
    raise cli.UsageError(f"--workers must be >= 1, got {args.workers}")
  fixed = tuple(sorted(space.parse_fixed(t) for t in args.fixed or ()))
  params = tuple(space.Param.parse(t) for t in args.param or ())
  budget = Budget(args.steps, args.seconds, args.eval_every, args.report_interval)
  return cli.options(args, Sweep, workdir=args.workdir, budget=budget,
                     space=space.Space(params, fixed))


def main(argv=None) -> int:
  """Runs the program on `argv` (default: the command line); returns the exit status."""
  args = parser().parse_args(None if argv is None else [str(a) for a in argv])
  spec = None if args.report else make_sweep(args)  # checked before optuna and JAX load
  from dncjax.sweeps import command  # pylint: disable=import-outside-toplevel
  return command.main(args, spec)


def errors():
  """The job's errors that end the program with a one-line message (loads the job)."""
  # pylint: disable=import-outside-toplevel
  from dncjax.sweeps import errors as sweep_errors, runs
  return runs.trial_errors() + (sweep_errors.SweepError,)


def console() -> None:
  """The console command: `main` with one-line errors and exit statuses."""
  cli.run(main, errors, command=True)
