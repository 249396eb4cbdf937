"""A sweep's results: the ranked table (CSV, Markdown), plots (PNG), the best trial.

  results.csv, results.md  every counted trial, best first: state, dev BPC on the
                           development split (best for finished trials, last reported
                           for pruned ones), the iter it was reached, iters and seconds
                           trained, the hyperparameters
  params.png               dev BPC against each swept hyperparameter
  curves.png               dev (and training) BPC of the best trials against iters
  best_trial               a link to the best trial's folder: sample from it or resume it
                           with alice.py (--workdir <sweep>/best_trial)
Checkpoints of finished trials ranked below `keep_top` are deleted (their metrics stay).
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import shutil

import optuna
from matplotlib import ticker
from matplotlib.figure import Figure
from optuna.trial import TrialState

from dncjax.sweeps import runs, study as sweep_lib, trials

_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.RUNNING: 2,
          TrialState.WAITING: 3, TrialState.FAIL: 4}


def rows(study: optuna.Study, sweep: sweep_lib.Sweep) -> list[dict]:
  """One row per counted trial, ranked: finished by BPC, then pruned, running, failed."""
  out = []
  for t in trials.live_trials(study):
    value = t.value if t.state == TrialState.COMPLETE else (
        t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
    out.append({"trial": t.number, "state": t.state.name.lower(), "dev_bpc": value,
                "best_step": t.user_attrs.get("best_step"), "steps": t.user_attrs.get("step"),
                "time_s": t.user_attrs.get("elapsed_s"),
                "workdir": t.user_attrs.get("workdir", ""),
                "error": t.user_attrs.get("error", ""),
                **t.params})  # only the settings this trial drew (its model takes)
  out.sort(key=lambda r: (_ORDER[TrialState[r["state"].upper()]],
                          r["dev_bpc"] if r["dev_bpc"] is not None else math.inf, r["trial"]))
  for rank, r in enumerate(out, 1):
    r["rank"] = rank
  return out


def _cell(value) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}"
  return str(value)


COLUMNS = ("rank", "trial", "state", "dev_bpc", "best_step", "steps", "time_s")


def markdown(table: list[dict], names: list[str], top: int | None = None) -> str:
  """The ranked trials as a Markdown table: the columns, each swept setting, the folder."""
  cols = list(COLUMNS) + names + ["workdir"]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in table[:top]:
    lines.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
  return "\n".join(lines)


def plot_params(table: list[dict], sweep: sweep_lib.Sweep, path: pathlib.Path,
                span: float = 1.0) -> None:
  """`params_figure` as a PNG in `path`."""
  params_figure(table, sweep, span).savefig(path, dpi=100)


def params_figure(table: list[dict], sweep: sweep_lib.Sweep, span: float = 1.0) -> Figure:
  """Dev BPC against each swept setting; the y axis shows the best `span` BPC, and
  worse trials (diverging ones reach 10+) sit on its top edge as triangles."""
  params = sweep.space.params
  cols = min(3, len(params))
  rows_n = math.ceil(len(params) / cols)
  fig = Figure(figsize=(4.5 * cols, 3.6 * rows_n), layout="constrained")
  axes = fig.subplots(rows_n, cols, squeeze=False).ravel()
  scored = [r["dev_bpc"] for r in table if r["dev_bpc"] is not None]
  top = min(max(scored), min(scored) + span) if scored else None
  for ax, p in zip(axes, params):
    above_label = f"above {top:.2f}" if top is not None else None  # one legend entry
    for state, marker in (("complete", "o"), ("pruned", "x")):
      pts = [(r[p.name], r["dev_bpc"]) for r in table
             if r["state"] == state and r["dev_bpc"] is not None and p.name in r]
      if not pts:
        continue
      if p.choices is not None:  # categorical: one slot per choice
        labels = [str(c) for c in p.choices]
        xs = [labels.index(str(x)) for x, _ in pts]
        ax.set_xticks(range(len(labels)), labels)
      else:
        xs = [x for x, _ in pts]
      inside = [(x, y) for x, (_, y) in zip(xs, pts) if y <= top]
      above = [x for x, (_, y) in zip(xs, pts) if y > top]
      if inside:
        ax.scatter(*zip(*inside), marker=marker, label=state, alpha=0.8)
      if above:
        ax.scatter(above, [top] * len(above), marker="^", color="grey", label=above_label)
        above_label = None
    if p.log:
      log_x(ax, p.low, p.high)
    ax.set_xlabel(p.name)
    ax.set_ylabel("dev BPC")
    ax.grid(alpha=0.3)
    if ax.has_data():
      ax.legend(fontsize=7)
  for ax in axes[len(params):]:
    ax.set_visible(False)
  fig.suptitle(f"{sweep.study_name()}: dev BPC per hyperparameter")
  return fig


def log_ticks(low: float, high: float, most: int = 5) -> list[float]:
  """At most `most` round values between `low` and `high` (both positive) for a log axis:
  1 to 9 times powers of ten (a narrow range), else 1, 2 and 5 times, else 1 and 3 times,
  else powers of ten (every k-th on a wide range); a narrower range also gets its ends."""
  first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
  inside = lambda v: low * (1 - 1e-9) <= v <= high * (1 + 1e-9)
  for mantissas in (range(1, 10), (1, 2, 5), (1, 3), (1,)):
    ticks = [v for e in range(first, last + 1) for m in mantissas if inside(v := m * 10.0 ** e)]
    if len(ticks) < 2:  # a range within two round values: its ends too
      return sorted({low, *ticks, high})
    if len(ticks) <= most:
      return ticks
  return ticks[::math.ceil(len(ticks) / most)]


def compact(value: float, _pos=None) -> str:
  """The short form of a tick value: 0.003, 20, 1e-5, 2.5e6."""
  if value == 0 or 1e-3 <= abs(value) < 1e4:
    return f"{value:.4g}"
  mantissa, _, exponent = f"{value:.1e}".partition("e")
  return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def log_x(ax, low: float, high: float) -> None:
  """A log-scaled x axis over the swept range [low, high]: a few round values labelled
  compactly (`log_ticks`, `compact`), minor ticks unlabelled, so that no labels overlap."""
  ax.set_xscale("log")
  pad = (high / low) ** 0.05
  ax.set_xlim(low / pad, high * pad)
  ax.xaxis.set_major_locator(ticker.FixedLocator(log_ticks(low, high)))
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(compact))
  ax.xaxis.set_minor_locator(ticker.LogLocator(subs="auto"))
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def plot_curves(table: list[dict], sweep: sweep_lib.Sweep, path: pathlib.Path,
                top: int = 5) -> None:
  """curves.png: dev (and training) BPC against iteration, the `top` trials."""
  fig = Figure(figsize=(8, 4.5), layout="constrained")
  ax = fig.subplots()
  for r in [r for r in table if r["state"] in ("complete", "pruned")][:top]:
    metrics = sweep.path / r["workdir"] / "metrics.jsonl"
    if not metrics.exists():
      continue
    records = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()]
    dev = [(x["step"], x["dev_bpc"]) for x in records if "dev_bpc" in x]
    train = [(x["step"], x["train_bpc"]) for x in records if "train_bpc" in x]
    label = f"#{r['trial']}: " + runs.describe(
        {p.name: r[p.name] for p in sweep.space.params if p.name in r})
    line, = ax.plot(*zip(*dev), marker=".", label=label) if dev else (None,)
    if train and line is not None:
      ax.plot(*zip(*train), color=line.get_color(), alpha=0.35, linestyle="--")
  ax.set_xlabel("iteration")
  ax.set_ylabel("BPC (solid: dev, dashed: training)")
  ax.grid(alpha=0.3)
  if ax.has_data():
    ax.legend(fontsize=7)
  fig.suptitle(f"{sweep.study_name()}: the best trials")
  fig.savefig(path, dpi=100)


def write(study: optuna.Study, sweep: sweep_lib.Sweep) -> list[dict]:
  """Writes the tables, plots and best_trial link into the sweep's folder; returns the rows."""
  table = rows(study, sweep)
  names = [p.name for p in sweep.space.params]
  folder = sweep.path
  with open(folder / "results.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(COLUMNS) + names + ["workdir", "error"],
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(table)
  (folder / "results.md").write_text(
      f"# Sweep {sweep.study_name()}: {len(table)} trials, ranked by dev BPC\n\n"
      + markdown(table, names) + "\n")
  if table:
    plot_params(table, sweep, folder / "params.png")
    plot_curves(table, sweep, folder / "curves.png")
  ranked = [r for r in table if r["state"] in ("complete", "pruned")]
  if ranked and (folder / ranked[0]["workdir"]).is_dir():
    link = folder / "best_trial"
    tmp = folder / ".best_trial.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(ranked[0]["workdir"], tmp)
    os.replace(tmp, link)
  for r in ranked[sweep.keep_top:] + [r for r in table if r["state"] == "fail"]:
    if r["workdir"]:  # finished trials only: running ones keep theirs
      for sub in ("checkpoints", "best"):
        shutil.rmtree(folder / r["workdir"] / sub, ignore_errors=True)
  return table
