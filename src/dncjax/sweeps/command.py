"""What experiments/sweep.py does with its flags (`dncjax.commands.sweep`): run (or resume)
a sweep, or only report on one, then print the ranking and where the best trial is."""

from __future__ import annotations

import argparse
import sys

from dncjax.sweeps import errors, report, study, workers
from dncjax.sweeps.config import Sweep


def main(args: argparse.Namespace, spec: Sweep | None) -> int:
  """Runs the sweep `spec` (or, with --report, reads the one in --workdir) and reports;
  SweepError when every trial failed."""
  if args.report:
    spec, the_study = study.existing(args.workdir, args.storage, args.study, args.keep_top)
  else:
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
    print(f"\nbest: trial {table[0]['trial']}, {table[0]['dev_bpc']:.4f} dev BPC -> {best}\n"
          f"  sample:   python experiments/sample.py --workdir {best} --best\n"
          f"  continue: python experiments/alice.py --workdir {best} --resume --steps N\n"
          f"  its tail: python experiments/alice.py --workdir {best} --resume --steps "
          f"{table[0]['steps']} (scores the held-out tail once, with its best checkpoint)")
  print(f"tables and plots in {spec.path} (results.md, results.csv, params.png, curves.png)")
  return 0
