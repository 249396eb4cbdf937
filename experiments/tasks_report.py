"""Compare task runs (e.g. seeds of several settings) by their bit errors at one length.

  python experiments/tasks_report.py runs/copy_* --length 20 --since 15000

One row per run, grouped by what the run changed from experiments/tasks.py's defaults
(the seed aside): iterations, bit errors per sequence at the last evaluation, their mean
and median over the evaluations from iteration --since on, how many of those were below
--target, and the mean share of perfect sequences there; then one line per group. Reads
each run's config.json and metrics.jsonl only. --markdown prints tables for a README.
"""

from __future__ import annotations

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C while loading: no traceback

import statistics
from dncjax import cli
from dncjax.tasks import job as tasks


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("workdirs", nargs="+", metavar="WORKDIR", help="task runs' folders")
  p.add_argument("--length", type=int, default=None,
                 help="evaluation length (default: each run's longest --eval_length)")
  p.add_argument("--since", type=int, default=0,
                 help="summarise the evaluations from this iteration on (default: all)")
  p.add_argument("--target", type=float, default=0.05,
                 help="count evaluations below this many bit errors per sequence")
  p.add_argument("--markdown", action="store_true", help="print Markdown tables")
  args = p.parse_args(argv)
  if args.length is not None and args.length <= 0:
    raise cli.UsageError(f"--length must be positive, got {args.length}")
  reports = [tasks.run_report(w, args.length, args.since, args.target) for w in args.workdirs]
  groups: dict[str, list[dict]] = {}
  for r in reports:
    groups.setdefault(tasks.options_label(r["config"], tasks.DEFAULT_RUN), []).append(r)

  head = ["run", "seed", "iters", "end", f"mean from {args.since}", "median",
          f"below {args.target}", "perfect"]
  for label, rows in groups.items():
    rows.sort(key=lambda r: r["config"].seed)
    table = [head] + [[r["run"], str(r["config"].seed), str(r["iters"]), f"{r['end']:.4f}",
                       f"{r['mean']:.4f}", f"{r['median']:.4f}",
                       f"{r['below']}/{r['evaluations']}", f"{r['perfect']:.2%}"]
                      for r in rows]
    length = rows[0]["length"]
    at = "training lengths" if length is None else f"length {length}"
    print(f"\n{'### ' if args.markdown else ''}{label} ({at})\n")
    if args.markdown:
      table.insert(1, ["---"] * len(head))
      print("\n".join("| " + " | ".join(row) + " |" for row in table))
    else:
      widths = [max(len(row[i]) for row in table) for i in range(len(head))]
      print("\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table))
    print(f"\n{len(rows)} runs; ends below {args.target}: "
          f"{sum(r['end'] < args.target for r in rows)}; mean of means "
          f"{statistics.mean(r['mean'] for r in rows):.4f}; evaluations below: "
          f"{sum(r['below'] for r in rows)}/{sum(r['evaluations'] for r in rows)}; "
          f"perfect {statistics.mean(r['perfect'] for r in rows):.2%}")
  return 0


if __name__ == "__main__":
  cli.run(main, (tasks.ReportError,))
