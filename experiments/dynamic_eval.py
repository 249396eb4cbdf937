"""Dynamic evaluation of a trained char-LM checkpoint, over a grid of settings.

  python experiments/dynamic_eval.py --workdir runs/alice --best --rule rms \\
      --lr 1e-4 3e-4 1e-3 --decay 0 0.01 --seq_length 16 32

Restores the run's latest (or --best) checkpoint and its corpus, scores the validation tail
statically once, then with dynamic evaluation (Krause et al., 2017; dncjax/dynamic.py) for
every combination of --rule, --seq_length, --lr and --decay, and prints one table row per
combination, best first, with its gain over static scoring in the same windows (a model
whose state is truncated at window ends scores differently in other windows). The
checkpoint is only read. --csv writes the rows to a file.
"""

from __future__ import annotations

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C while loading: no traceback

import csv
import dataclasses
import itertools
import math
import pathlib
import time

from dncjax.charlm import job as charlm
from dncjax import cli
from dncjax.charlm import data
from dncjax.training import dynamic


def parse_args(argv=None):
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--workdir", required=True, help="the run's folder (as given to alice.py)")
  p.add_argument("--best", action="store_true",
                 help="start from the best-validation checkpoint instead of the latest")
  p.add_argument("--data", default=None,
                 help="the text file, if it moved since training (default: the run's)")
  p.add_argument("--rule", nargs="+", choices=dynamic.RULES, default=["adagrad"],
                 help="update rules: the training optimiser continued, or Krause's RMS rule")
  p.add_argument("--lr", nargs="+", type=float, default=[None],
                 help="learning rates (default: the training rate)")
  p.add_argument("--decay", nargs="+", type=float, default=[0.0],
                 help="rms rule: decay towards the trained parameters (ignored by adagrad)")
  p.add_argument("--seq_length", "--seq-length", nargs="+", type=int, default=[None],
                 help="window lengths (default: the training window)")
  p.add_argument("--eval_lanes", "--eval-lanes", type=int, default=1,
                 help="lanes the validation tail is split into")
  p.add_argument("--csv", default=None, help="also write the table to this CSV file")
  args = p.parse_args(argv)
  for name in ("lr", "seq_length"):
    bad = [v for v in getattr(args, name) if v is not None and v <= 0]
    if bad:
      raise cli.UsageError(f"--{name} must be positive, got {bad[0]}")
  if any(d < 0 for d in args.decay):
    raise cli.UsageError(f"--decay must be >= 0, got {min(args.decay)}")
  if args.eval_lanes <= 0:
    raise cli.UsageError(f"--eval_lanes must be positive, got {args.eval_lanes}")
  return args


def grid(args) -> list[tuple]:
  """(rule, seq_length, lr, decay) combinations; adagrad takes no decay."""
  out = []
  for rule, S, lr, decay in itertools.product(args.rule, args.seq_length, args.lr, args.decay):
    combo = (rule, S, lr, decay if rule == "rms" else 0.0)
    if combo not in out:
      out.append(combo)
  return out


def main(argv=None) -> int:
  args = parse_args(argv)
  config, model, ts, vocab, meta = charlm.restore_trained(args.workdir, best=args.best)
  if args.data:
    config = dataclasses.replace(config, data=args.data)
  corpus = data.load_corpus(config.data, config.val_fraction, config.seq_length)
  if corpus.vocab.to_list() != meta["vocab"]:
    raise data.DataError(f"the vocabulary of {corpus.path} is not the checkpoint's")
  static_eval = charlm.make_static_eval(model)

  def static_bpc(S):  # windows of S: a model that truncates its state at window ends scores
    windows = charlm.stack_validation(corpus.val_ids, S, args.eval_lanes)  # differently
    return float(static_eval(ts.params, windows)) / (
        math.log(2) * float(windows.targets[1].sum()))

  statics = {config.seq_length: static_bpc(config.seq_length)}
  print(f"{args.workdir}: {config.model} {dict(config.hyper)}, iter {meta['step']}; "
        f"static validation {statics[config.seq_length]:.6f} BPC")
  rows, ms_states = [], {}
  for rule, S, lr, decay in grid(args):
    S_, lr_ = S or config.seq_length, lr or config.learning_rate
    if S_ not in statics:
      statics[S_] = static_bpc(S_)
    start = time.monotonic()
    if rule == "rms" and S_ not in ms_states:  # MS_g once per window length
      ms_states[S_] = dynamic.rms_state(model, ts.params, charlm.stack_validation(
          corpus.train_ids, S_, args.eval_lanes))
    bpc = charlm.dynamic_bpc(model, config, corpus, ts.params, ts.opt_state, rule, lr_, decay,
                             S_, args.eval_lanes, ms_states.get(S_))
    rows.append({"rule": rule, "seq_length": S_, "lr": lr_, "decay": decay,
                 "static_val_bpc": statics[S_], "dynamic_val_bpc": bpc,
                 "gain": statics[S_] - bpc,
                 "seconds": round(time.monotonic() - start, 1)})
    print(f"  {rule:7s} S={S_:<4d} lr={lr_:<10.4g} decay={decay:<8.4g} {bpc:.4f} BPC "
          f"({rows[-1]['seconds']} s)", flush=True)
  rows.sort(key=lambda r: (not math.isfinite(r["dynamic_val_bpc"]), r["dynamic_val_bpc"]))
  print("\n| rule | S | lr | decay | static val BPC | dynamic val BPC | gain |\n"
        "|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['rule']} | {r['seq_length']} | {r['lr']:.4g} | {r['decay']:.4g} | "
          f"{r['static_val_bpc']:.4f} | {r['dynamic_val_bpc']:.4f} | {r['gain']:+.4f} |")
  if args.csv:
    with pathlib.Path(args.csv).open("w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(rows)
  return 0


if __name__ == "__main__":
  cli.run(main, charlm.error_types())
