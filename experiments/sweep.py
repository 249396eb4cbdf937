"""Sweep alice.py's hyperparameters with Optuna: grid, random or TPE, pruned, resumable.

  python experiments/sweep.py --workdir runs/sweep --param lr=0.01:1:log --param hidden=64,128 \\
      --set model=lstm --steps 1000 --trials 16 --workers 2
  python experiments/sweep.py --workdir runs/sweep ... (the same command again: resumes)
  python experiments/sweep.py --workdir runs/sweep --report   # tables and plots, as it stands

--param NAME=SPEC sweeps a setting: a list `a,b,c`, a range `low:high` or `low:high:log`
(int or float as the setting is; `none` in a list leaves an optional one off). --set
NAME=VALUE fixes one for every trial. NAME is any run setting or model hyperparameter of
alice.py (lr, eps, clip_norm, clip_value, weight_decay, dropout, weight_drop, init_scale,
hidden, memory_size/N, word_size/W, read_heads/R, seq_length, batch_size, overlap, model,
seed...).

Each trial is an alice.py run in <workdir>/trials/NNNN (its log.txt, metrics.jsonl,
checkpoints), trained for --steps iterations or --seconds, evaluated every --eval_every
iterations (reported to the pruner) and scored by its best validation BPC. The study is
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

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C while loading: no traceback

import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from dncjax.charlm import job as charlm  # noqa: E402
from dncjax import cli
from dncjax.sweeps import space
from dncjax.sweeps import errors as sweep_errors
from dncjax.sweeps import study as sweep
from dncjax.sweeps import workers as sweep_workers
from dncjax.sweeps import report as sweep_report


def parse_args(argv=None):
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--workdir", default="runs/sweep", help="the sweep's folder")
  what = p.add_argument_group("what to sweep")
  what.add_argument("--param", action="append", default=None, metavar="NAME=SPEC",
                    help="a swept setting: a,b,c | low:high | low:high:log (repeatable)")
  what.add_argument("--set", action="append", default=None, metavar="NAME=VALUE", dest="fixed",
                    help="a setting every trial shares (repeatable)")
  what.add_argument("--data", default=None, metavar="PATH",
                    help="UTF-8 text (default: alice29.txt, as alice.py finds it)")
  how = p.add_argument_group("how")
  how.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe",
                   help="Optuna sampler (grid: lists only, every combination once)")
  how.add_argument("--pruner", choices=("median", "halving", "none"), default="median",
                   help="stops trials whose validation BPC falls behind")
  how.add_argument("--trials", type=int, default=None,
                   help="trials in the sweep (default: the grid's size, or 20)")
  how.add_argument("--steps", type=int, default=None, help="iterations per trial")
  how.add_argument("--seconds", type=float, default=None,
                   help="seconds per trial (with --workers > 1 they share the cores)")
  how.add_argument("--eval_every", "--eval-every", type=int, default=100,
                   help="iterations between evaluations (pruning points)")
  how.add_argument("--report_interval", "--report-interval", type=int, default=50,
                   help="iterations between progress lines in each trial's log.txt")
  how.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
  how.add_argument("--population", type=int, default=1,
                   help="trials trained together as one vmapped program")
  how.add_argument("--seed", type=int, default=0, help="sampler seed")
  where = p.add_argument_group("where")
  where.add_argument("--storage", default=None, metavar="URL",
                     help="Optuna storage shared by workers, e.g. "
                          "postgresql://user:pass@host/db (default: sqlite:///WORKDIR/study.db)")
  where.add_argument("--study", default=None, help="study name (default: the workdir's name)")
  where.add_argument("--keep_top", "--keep-top", type=int, default=3,
                     help="trials whose checkpoints are kept at the end")
  where.add_argument("--report", action="store_true",
                     help="only write the tables and plots of the study in --workdir (or "
                          "--storage/--study) as it stands; no other flag needed")
  return p.parse_args(argv)


def make_sweep(args) -> sweep.Sweep:
  if args.workers < 1:
    raise cli.UsageError(f"--workers must be >= 1, got {args.workers}")
  fixed = tuple(sorted(space.parse_fixed(t) for t in args.fixed or ()))
  params = tuple(space.Param.parse(t) for t in args.param or ())
  budget = sweep.Budget(args.steps, args.seconds, args.eval_every, args.report_interval)
  return sweep.Sweep(args.workdir, space.Space(params, fixed), budget, trials=args.trials,
                     sampler=args.sampler, pruner=args.pruner, storage=args.storage,
                     study=args.study, data=args.data, seed=args.seed,
                     population=args.population, keep_top=args.keep_top)


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.report:
    spec, study = sweep.existing(args.workdir, args.storage, args.study, args.keep_top)
  else:
    spec = make_sweep(args)
    try:
      study = sweep_workers.run(spec, args.workers)
    except KeyboardInterrupt:
      print("interrupted: finished trials are kept; run the same command again to resume",
            file=sys.stderr)
      study = sweep.open_study(spec)
      sweep_report.write(study, spec)
      raise
  table = sweep_report.write(study, spec)
  names = [p.name for p in spec.space.params]
  print(f"\n{len(table)} trials; the best 10:\n" + sweep_report.markdown(table, names, top=10))
  failed = [r for r in table if r["state"] == "fail"]
  if not args.report and table and len(failed) == len(table):
    why = (failed[0]["error"] or "no error recorded").strip().splitlines()[0][:200]
    raise sweep_errors.SweepError(f"all {len(table)} trials failed; trial {failed[0]['trial']}: "
                                  f"{why} (see {spec.path / 'results.md'} and the trials' "
                                  f"log.txt)")
  if table and table[0]["state"] == "complete":
    best = spec.path / "best_trial"
    print(f"\nbest: trial {table[0]['trial']}, {table[0]['val_bpc']:.4f} BPC -> {best}\n"
          f"  sample:   python experiments/sample.py --workdir {best} --best\n"
          f"  continue: python experiments/alice.py --workdir {best} --resume --steps N")
  print(f"tables and plots in {spec.path} (results.md, results.csv, params.png, curves.png)")
  return 0


if __name__ == "__main__":
  cli.run(main, charlm.error_types() + (sweep_errors.SweepError,))
