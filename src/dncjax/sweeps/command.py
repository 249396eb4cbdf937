"""experiments/sweep.py's flags and what it does with them: run (or resume) a sweep, or
only report on one, then print the ranking and where the best trial is."""

from __future__ import annotations

import argparse
import sys

from dncjax import cli
from dncjax.sweeps import errors, report, space, study, workers


def add_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--workdir", default="runs/sweep", help="the sweep's folder")
  what = parser.add_argument_group("what to sweep")
  what.add_argument("--param", action="append", default=None, metavar="NAME=SPEC",
                    help="a swept setting: a,b,c | low:high | low:high:log (repeatable)")
  what.add_argument("--set", action="append", default=None, metavar="NAME=VALUE",
                    dest="fixed", help="a setting every trial shares (repeatable)")
  how = cli.add_option_flags(parser, study.Budget, "how", skip=("sample_length",))
  how.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
  cli.add_option_flags(parser, study.Sweep, "the study",
                       skip=("workdir", "space", "budget"))
  parser.add_argument("--report", action="store_true",
                      help="only write the tables and plots of the study in --workdir (or "
                           "--storage/--study) as it stands; no other flag needed")


def make_sweep(args: argparse.Namespace) -> study.Sweep:
  if args.workers < 1:
    raise cli.UsageError(f"--workers must be >= 1, got {args.workers}")
  fixed = tuple(sorted(space.parse_fixed(t) for t in args.fixed or ()))
  params = tuple(space.Param.parse(t) for t in args.param or ())
  budget = study.Budget(args.steps, args.seconds, args.eval_every, args.report_interval)
  return cli.options(args, study.Sweep, workdir=args.workdir, budget=budget,
                     space=space.Space(params, fixed))


def main(args: argparse.Namespace) -> int:
  """Runs the sweep (or, with --report, reads it) and reports; SweepError when every
  trial failed."""
  if args.report:
    spec, the_study = study.existing(args.workdir, args.storage, args.study, args.keep_top)
  else:
    spec = make_sweep(args)
    try:
      the_study = workers.run(spec, args.workers)
    except KeyboardInterrupt:
      print("interrupted: finished trials are kept; run the same command again to resume",
            file=sys.stderr)
      report.write(study.open_study(spec), spec)
      raise
  table = report.write(the_study, spec)
  names = [p.name for p in spec.space.params]
  print(f"\n{len(table)} trials; the best 10:\n" + report.markdown(table, names, top=10))
  failed = [r for r in table if r["state"] == "fail"]
  if not args.report and table and len(failed) == len(table):
    why = (failed[0]["error"] or "no error recorded").strip().splitlines()[0][:200]
    raise errors.SweepError(f"all {len(table)} trials failed; trial {failed[0]['trial']}: "
                            f"{why} (see {spec.path / 'results.md'} and the trials' log.txt)")
  if table and table[0]["state"] == "complete":
    best = spec.path / "best_trial"
    print(f"\nbest: trial {table[0]['trial']}, {table[0]['val_bpc']:.4f} BPC -> {best}\n"
          f"  sample:   python experiments/sample.py --workdir {best} --best\n"
          f"  continue: python experiments/alice.py --workdir {best} --resume --steps N")
  print(f"tables and plots in {spec.path} (results.md, results.csv, params.png, curves.png)")
  return 0
