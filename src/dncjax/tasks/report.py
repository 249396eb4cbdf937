"""Reading finished task runs: how one run's bit errors went at one evaluation length, its
test sets' scores, and a label of what a run changed from the defaults
(experiments/tasks_report.py)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import statistics

import numpy as np

from dncjax import configs, models
from dncjax.tasks.config import MODEL_DEFAULTS, RunConfig
from dncjax.tasks.curriculum import CurriculumConfig
from dncjax.tasks.generators import TaskConfig
from dncjax.training import records


class ReportError(ValueError):
  """A folder is not a task run with the requested evaluations: one-line message."""


def run_report(workdir: str | pathlib.Path, length: int | None = None, since: int = 0,
               target: float = 0.05) -> dict:
  """How one run's bit errors at an evaluation `length` went: at the end, and over the
  evaluations from iteration `since` on (mean, median, how many below `target`, the mean
  share of perfect sequences). `length` None: the run's longest evaluation length (or its
  training-length set if it had none). Reads config.json and metrics.jsonl only; a member
  of a population (experiments/tasks.py --seeds) is named '<population folder>/seed<N>'."""
  workdir = pathlib.Path(workdir)
  try:
    config = RunConfig.from_json(json.loads((workdir / "config.json").read_text()))
  except (OSError, ValueError, TypeError, KeyError) as e:
    raise ReportError(f"{workdir} holds no task run's config.json ({e})") from None
  evals = [r for r in records.read_metrics(workdir / "metrics.jsonl") if "eval_loss" in r]
  if length is None:
    lengths = [int(k[len("eval_len"):-len("_bit_errors")]) for k in (evals[-1] if evals else {})
               if k.startswith("eval_len") and k.endswith("_bit_errors")]
    length = max(lengths, default=None)
  prefix = "eval" if length is None else f"eval_len{length}"
  rows = [r for r in evals if f"{prefix}_bit_errors" in r]
  if not rows:
    raise ReportError(f"{workdir}: no evaluation at length {length} in metrics.jsonl")
  late = [r for r in rows if r["step"] >= since]
  if not late:
    raise ReportError(f"{workdir}: no evaluation at iteration {since} or later "
                      f"(last: {rows[-1]['step']})")
  errors = np.array([r[f"{prefix}_bit_errors"] for r in late])
  name = workdir.name  # a population's member: '<population>/seed<N>'
  if (workdir.parent / "population.json").exists():
    name = f"{workdir.parent.name}/{name}"
  return {"run": name, "config": config, "length": length, "iters": rows[-1]["step"],
          "end": rows[-1][f"{prefix}_bit_errors"], "mean": float(errors.mean()),
          "median": float(np.median(errors)), "below": int((errors < target).sum()),
          "evaluations": len(late),
          "perfect": float(np.mean([r[f"{prefix}_perfect"] for r in late])),
          "tests": test_scores(workdir)}


def test_scores(workdir: str | pathlib.Path) -> dict:
  """{L: {"last": (bit errors, perfect share), "chosen": the same or None}} of the test
  sets a run scored once at its end (results.json's test_len<L>_* and, with
  --select_length, selected_test_len<L>_*); {} for a run without them."""
  try:
    results = json.loads((pathlib.Path(workdir) / "results.json").read_text())
  except (OSError, ValueError):
    return {}

  def score(name: str):
    if f"{name}_bit_errors" not in results:
      return None
    return results[f"{name}_bit_errors"], results.get(f"{name}_perfect")

  found = (re.fullmatch(r"test_len(\d+)_bit_errors", key) for key in results)
  lengths = sorted(int(m.group(1)) for m in found if m)
  return {n: {"last": score(f"test_len{n}"), "chosen": score(f"selected_test_len{n}")}
          for n in lengths}


def _tests_table(rows: list[dict], target: float, markdown: bool) -> str:
  """A table of `rows`' test-set scores: a column per length and kind, then how many runs
  are below `target` in each."""
  def score(r, length, kind):
    return r["tests"].get(length, {}).get(kind)

  def cell(found):
    if found is None:
      return "-"
    return f"{found[0]:.4f}" + ("" if found[1] is None else f" ({found[1]:.1%})")

  def below(column):
    found = [score(r, *column) for r in rows]
    return f"{sum(1 for f in found if f is not None and f[0] < target)}/{len(rows)}"

  columns = [(length, kind) for length in sorted({n for r in rows for n in r["tests"]})
             for kind in ("last", "chosen") if any(score(r, length, kind) for r in rows)]
  table = [["run", "seed"] + [f"test {n}, {kind}" for n, kind in columns]]
  table += [[r["run"], str(r["config"].seed)] + [cell(score(r, *c)) for c in columns]
            for r in rows]
  table.append([f"below {target}", ""] + [below(c) for c in columns])
  return _table(table, markdown)


def options_label(config: RunConfig, defaults: RunConfig) -> str:
  """The task and what a run changed from `defaults`, all but the seed (e.g. 'copy
  curriculum hidden=128 link_sharpness')."""
  parts = []
  for field in dataclasses.fields(TaskConfig):  # the task: its name, then changed sizes
    value = getattr(config.task, field.name)
    if field.name == "name" or value != getattr(defaults.task, field.name):
      parts.append(f"{field.name}={value}" if field.name != "name" else value)
  for field in dataclasses.fields(CurriculumConfig):  # --curriculum, then its settings
    value = getattr(config.curriculum, field.name)
    if value != getattr(defaults.curriculum, field.name):
      parts.append("curriculum" if value is True else f"curriculum_{field.name}={value}")
  name = models.name_of(config.model)
  base = (defaults.model if models.name_of(defaults.model) == name
          else configs.model_config(name, MODEL_DEFAULTS))
  for field in sorted(dataclasses.fields(config.model), key=lambda f: f.name):
    value = getattr(config.model, field.name)
    if value != getattr(base, field.name):
      parts.append(field.name if value is True else f"{field.name}={value}")
  if base is not defaults.model:
    parts.append(f"model={name}")
  for field in dataclasses.fields(config.optim):
    value = getattr(config.optim, field.name)
    if value != getattr(defaults.optim, field.name):
      parts.append(f"{'optimizer' if field.name == 'name' else field.name}={value}")
  if config.batch_size != defaults.batch_size:
    parts.append(f"batch_size={config.batch_size}")
  return " ".join(parts)


def summarise_ends(reports: list[dict], target: float) -> dict:
  """Over the runs of one setting (their seeds): how many, the mean, standard deviation
  (n - 1; 0 for one run), min and max of their bit errors at the last evaluation, and how
  many of them end below `target`."""
  ends = [r["end"] for r in reports]
  return {"runs": len(ends), "mean": statistics.mean(ends),
          "std": statistics.stdev(ends) if len(ends) > 1 else 0.0, "min": min(ends),
          "max": max(ends), "below": sum(e < target for e in ends)}


def _table(rows: list[list[str]], markdown: bool) -> str:
  if markdown:
    rows = [rows[0], ["---"] * len(rows[0]), *rows[1:]]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def tables(reports: list[dict], defaults: RunConfig, since: int, target: float,
           markdown: bool = False) -> str:
  """`run_report`s grouped by `options_label`: a table per group (seeds as rows) and a
  line of totals, then one row per group: the seeds' bit errors at the end (mean, std,
  min..max) and how many end below `target`."""
  groups: dict[str, list[dict]] = {}
  for r in reports:
    groups.setdefault(options_label(r["config"], defaults), []).append(r)
  head = ["run", "seed", "iters", "end", f"mean from {since}", "median", f"below {target}",
          "perfect"]
  out, overview = [], [["setting", "length", "seeds", "end mean", "std", "min..max",
                        f"< {target}"]]
  for label, rows in groups.items():
    rows.sort(key=lambda r: r["config"].seed)
    table = [head] + [[r["run"], str(r["config"].seed), str(r["iters"]), f"{r['end']:.4f}",
                       f"{r['mean']:.4f}", f"{r['median']:.4f}",
                       f"{r['below']}/{r['evaluations']}", f"{r['perfect']:.2%}"]
                      for r in rows]
    length = rows[0]["length"]
    at = "training lengths" if length is None else f"length {length}"
    out.append(f"\n{'### ' if markdown else ''}{label} ({at})\n")
    out.append(_table(table, markdown))
    ends = summarise_ends(rows, target)
    if any(r["tests"] for r in rows):
      out.append("\nTest sets, scored once at the end (bit errors per sequence, perfect share; "
                 "chosen: the parameters --select_length kept):\n")
      out.append(_tests_table(rows, target, markdown))
    out.append(f"\n{len(rows)} runs; at the end: mean {ends['mean']:.4f}, std "
               f"{ends['std']:.4f}, {ends['min']:.4f}..{ends['max']:.4f}, "
               f"{ends['below']}/{ends['runs']} < {target}; mean of means "
               f"{statistics.mean(r['mean'] for r in rows):.4f}; evaluations below: "
               f"{sum(r['below'] for r in rows)}/{sum(r['evaluations'] for r in rows)}; "
               f"perfect {statistics.mean(r['perfect'] for r in rows):.2%}")
    overview.append([label, "train" if length is None else str(length), str(ends["runs"]),
                     f"{ends['mean']:.4f}", f"{ends['std']:.4f}",
                     f"{ends['min']:.4f}..{ends['max']:.4f}", f"{ends['below']}/{ends['runs']}"])
  out.append(f"\n{'### ' if markdown else ''}Per setting: bit errors per sequence at the last "
             f"evaluation\n")
  out.append(_table(overview, markdown))
  return "\n".join(out)
