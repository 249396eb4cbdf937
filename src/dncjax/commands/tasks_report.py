"""Compare task runs (e.g. seeds of several settings) by their bit errors at one length.

  python experiments/tasks_report.py runs/copy_* --length 20 --since 15000
  python experiments/tasks_report.py runs/copy5/seed* runs/sharp5/seed* --length 20

(`dncjax-tasks-report` is the same command.) One row per run, grouped by what the run
changed from experiments/tasks.py's defaults (the seed aside): iterations, bit errors per
sequence at the last evaluation, their mean and median over the evaluations from
iteration --since on, how many of those were below --target, and the mean share of
perfect sequences there; then one line per group; last, one row per group over its seeds'
last evaluations: mean, standard deviation, min..max and how many end below --target
(e.g. 4/5). Runs that scored test sets at their end (tasks.py --test_length) also get a
table of those: bit errors per sequence and the share of perfect sequences at each test
length, with the last parameters and the ones --select_length chose, and how many runs are
below --target in each column. The members of a population (experiments/tasks.py --seeds)
are runs like any other. Reads each run's config.json, metrics.jsonl and results.json
only. --markdown prints tables for a README.
"""

from __future__ import annotations

from dncjax import cli


def parser() -> cli.ArgumentParser:
  """The program's flags, built from the config dataclasses (nothing heavy loads)."""
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("workdirs", nargs="+", metavar="WORKDIR", help="task runs' folders")
  p.add_argument("--length", type=int, default=None,
                 help="evaluation length (default: each run's longest --eval_length)")
  p.add_argument("--since", type=int, default=0,
                 help="summarise the evaluations from this iteration on (default: all)")
  p.add_argument("--target", type=float, default=0.05,
                 help="count evaluations (and runs' last ones) below this many bit errors "
                      "per sequence")
  p.add_argument("--markdown", action="store_true", help="print Markdown tables")
  return p


def main(argv=None) -> int:
  """Runs the program on `argv` (default: the command line); returns the exit status."""
  args = parser().parse_args(None if argv is None else [str(a) for a in argv])
  if args.length is not None and args.length <= 0:
    raise cli.UsageError(f"--length must be positive, got {args.length}")
  from dncjax.tasks import config, report  # pylint: disable=import-outside-toplevel
  reports = [report.run_report(w, args.length, args.since, args.target) for w in args.workdirs]
  print(report.tables(reports, config.RunConfig(), args.since, args.target, args.markdown))
  return 0


def errors():
  """The job's errors that end the program with a one-line message (loads the job)."""
  from dncjax.tasks import report  # pylint: disable=import-outside-toplevel
  return (report.ReportError,)


def console() -> None:
  """The console command: `main` with one-line errors and exit statuses."""
  cli.run(main, errors, command=True)
