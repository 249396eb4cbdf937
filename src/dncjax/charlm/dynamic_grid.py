"""Dynamic evaluation of a trained run over a grid of update rules, rates, decays and
windows (experiments/dynamic_eval.py): a table of static and dynamic validation BPC."""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import pathlib
import time
from typing import Callable

from dncjax.charlm import evaluate
from dncjax.configs import UsageError
from dncjax.training import dynamic


def add_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--workdir", required=True, help="the run's folder (as given to alice.py)")
  parser.add_argument("--best", action="store_true",
                      help="start from the best-validation checkpoint instead of the latest")
  parser.add_argument("--data", default=None,
                      help="the text file, if it moved since training (default: the run's)")
  parser.add_argument("--rule", nargs="+", choices=dynamic.RULES, default=["adagrad"],
                      help="update rules: the training optimiser continued, or Krause's RMS rule")
  parser.add_argument("--lr", nargs="+", type=float, default=[None],
                      help="learning rates (default: the training rate)")
  parser.add_argument("--decay", nargs="+", type=float, default=[0.0],
                      help="rms rule: decay towards the trained parameters (ignored by adagrad)")
  parser.add_argument("--seq_length", "--seq-length", nargs="+", type=int, default=[None],
                      help="window lengths (default: the training window)")
  parser.add_argument("--eval_lanes", "--eval-lanes", type=int, default=1,
                      help="lanes the validation tail is split into")
  parser.add_argument("--csv", default=None, help="also write the table to this CSV file")


def checked(args: argparse.Namespace) -> argparse.Namespace:
  """The parsed flags, checked (UsageError on nonsense)."""
  for name in ("lr", "seq_length"):
    bad = [v for v in getattr(args, name) if v is not None and v <= 0]
    if bad:
      raise UsageError(f"--{name} must be positive, got {bad[0]}")
  if any(d < 0 for d in args.decay):
    raise UsageError(f"--decay must be >= 0, got {min(args.decay)}")
  if args.eval_lanes <= 0:
    raise UsageError(f"--eval_lanes must be positive, got {args.eval_lanes}")
  return args


def combinations(rules, seq_lengths, lrs, decays) -> list[tuple]:
  """(rule, seq_length, lr, decay) combinations, in order; adagrad takes no decay."""
  out = []
  for rule, S, lr, decay in itertools.product(rules, seq_lengths, lrs, decays):
    combo = (rule, S, lr, decay if rule == "rms" else 0.0)
    if combo not in out:
      out.append(combo)
  return out


def run_grid(config, model, ts, corpus, combos: list[tuple], lanes: int,
             say: Callable[[str], None] = print) -> tuple[dict[int, float], list[dict]]:
  """(static BPC by window length, one row per combination, best first); a None window
  or rate is the training one."""
  static_eval = evaluate.make_static_eval(model)

  def static_bpc(S):  # windows of S: a model that truncates its state at window ends scores
    windows = evaluate.stack_validation(corpus.val_ids, S, lanes)  # differently
    return float(static_eval(ts.params, windows)) / (
        math.log(2) * evaluate.scored_chars(windows))

  statics = {config.data.seq_length: static_bpc(config.data.seq_length)}
  rows, ms_states = [], {}
  for rule, S, lr, decay in combos:
    S_, lr_ = S or config.data.seq_length, lr or config.optim.learning_rate
    if S_ not in statics:
      statics[S_] = static_bpc(S_)
    start = time.monotonic()
    if rule == "rms" and S_ not in ms_states:  # MS_g once per window length
      ms_states[S_] = dynamic.rms_state(model, ts.params, evaluate.stack_validation(
          corpus.train_ids, S_, lanes))
    bpc = evaluate.dynamic_bpc(model, config, corpus, ts.params, ts.opt_state, rule, lr_,
                               decay, S_, lanes, ms_states.get(S_))
    rows.append({"rule": rule, "seq_length": S_, "lr": lr_, "decay": decay,
                 "static_val_bpc": statics[S_], "dynamic_val_bpc": bpc,
                 "gain": statics[S_] - bpc, "seconds": round(time.monotonic() - start, 1)})
    say(f"  {rule:7s} S={S_:<4d} lr={lr_:<10.4g} decay={decay:<8.4g} {bpc:.4f} BPC "
        f"({rows[-1]['seconds']} s)")
  rows.sort(key=lambda r: (not math.isfinite(r["dynamic_val_bpc"]), r["dynamic_val_bpc"]))
  return statics, rows


def markdown(rows: list[dict]) -> str:
  lines = ["| rule | S | lr | decay | static val BPC | dynamic val BPC | gain |",
           "|---|---|---|---|---|---|---|"]
  lines += [f"| {r['rule']} | {r['seq_length']} | {r['lr']:.4g} | {r['decay']:.4g} | "
            f"{r['static_val_bpc']:.4f} | {r['dynamic_val_bpc']:.4f} | {r['gain']:+.4f} |"
            for r in rows]
  return "\n".join(lines)


def write_csv(rows: list[dict], path: str | pathlib.Path) -> None:
  with pathlib.Path(path).open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
