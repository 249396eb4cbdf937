"""Dynamic evaluation of a trained run over a grid of update rules, rates, decays and
windows (experiments/dynamic_eval.py): a table of static and dynamic BPC on the
development split, best first; then the tail scored once with the setting best there
(`scoring.score_tail`)."""

from __future__ import annotations

import csv
import math
import pathlib
import time
from typing import Callable

from dncjax.charlm import data, scoring


def run_grid(config, model, ts, corpus: data.Corpus, combos: list[tuple], lanes: int,
             say: Callable[[str], None] = print):
  """(static dev BPC by window length, one row per combination on the development split,
  best first, the `scoring.Scorer` of `ts`); a None window or rate is the training one.
  DataError when the run has no development split to choose on."""
  if not len(corpus.dev_ids):
    raise data.DataError(f"{corpus.path} has no development split in this run (dev_fraction "
                         f"0): there is nothing to choose dynamic evaluation's settings on")
  scorer = scoring.Scorer(model, config, corpus.train_ids, ts.params, ts.opt_state, lanes)
  S_train = config.data.seq_length
  statics, rows = {S_train: scorer.static(corpus.dev_ids, S_train)}, []
  for rule, S, lr, decay, eps in combos:
    S_ = S or S_train
    if S_ not in statics:  # windows of S: a model that truncates its state at window ends
      statics[S_] = scorer.static(corpus.dev_ids, S_)  # scores differently in other windows
    setting = scoring.Setting(rule, S_, lr or config.optim.learning_rate, decay, eps)
    start = time.monotonic()
    bpc = scorer.dynamic(corpus.dev_ids, setting)
    rows.append({"rule": rule, "seq_length": S_, "lr": setting.lr, "decay": decay, "eps": eps,
                 "static_dev_bpc": statics[S_], "dynamic_dev_bpc": bpc,
                 "gain": statics[S_] - bpc, "seconds": round(time.monotonic() - start, 1)})
    say(f"  {rule:7s} S={S_:<4d} lr={setting.lr:<10.4g} decay={decay:<8.4g} eps={eps:<8.4g} "
        f"{bpc:.4f} BPC "
        f"({rows[-1]['seconds']} s)")
  rows.sort(key=lambda r: (not math.isfinite(r["dynamic_dev_bpc"]), r["dynamic_dev_bpc"]))
  return statics, rows, scorer


def best_setting(rows: list[dict]) -> scoring.Setting | None:
  """The setting of `run_grid`'s first row, or None when every setting diverged."""
  if not rows or not math.isfinite(rows[0]["dynamic_dev_bpc"]):
    return None
  r = rows[0]
  return scoring.Setting(r["rule"], r["seq_length"], r["lr"], r["decay"], r["eps"])


def markdown(rows: list[dict]) -> str:
  """`run_grid`'s rows as a Markdown table: rule, S, lr, decay, eps (rms), static and
  dynamic dev BPC, gain."""
  lines = ["| rule | S | lr | decay | eps | static dev BPC | dynamic dev BPC | gain |",
           "|---|---|---|---|---|---|---|---|"]
  lines += [f"| {r['rule']} | {r['seq_length']} | {r['lr']:.4g} | {r['decay']:.4g} | "
            f"{format(r['eps'], '.4g') if r['rule'] == 'rms' else '-'} | "
            f"{r['static_dev_bpc']:.4f} | {r['dynamic_dev_bpc']:.4f} | {r['gain']:+.4f} |"
            for r in rows]
  return "\n".join(lines)


def write_csv(rows: list[dict], path: str | pathlib.Path) -> None:
  """Writes `run_grid`'s rows to a CSV file at `path`, one column per key of the
  first row."""
  with pathlib.Path(path).open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
