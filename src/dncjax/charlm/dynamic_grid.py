"""Dynamic evaluation of a trained run over a grid of update rules, rates, decays and
windows (experiments/dynamic_eval.py): a table of static and dynamic validation BPC."""

from __future__ import annotations

import csv
import itertools
import math
import pathlib
import time
from typing import Callable

from dncjax.charlm import evaluate
from dncjax.training import dynamic


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
  """`run_grid`'s rows as a Markdown table: rule, S, lr, decay, static and dynamic
  validation BPC, gain."""
  lines = ["| rule | S | lr | decay | static val BPC | dynamic val BPC | gain |",
           "|---|---|---|---|---|---|---|"]
  lines += [f"| {r['rule']} | {r['seq_length']} | {r['lr']:.4g} | {r['decay']:.4g} | "
            f"{r['static_val_bpc']:.4f} | {r['dynamic_val_bpc']:.4f} | {r['gain']:+.4f} |"
            for r in rows]
  return "\n".join(lines)


def write_csv(rows: list[dict], path: str | pathlib.Path) -> None:
  """Writes `run_grid`'s rows to a CSV file at `path`, one column per key of the
  first row."""
  with pathlib.Path(path).open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
