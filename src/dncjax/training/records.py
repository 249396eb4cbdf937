"""A run's records on disk: metrics.jsonl (one JSON line per report or evaluation) and
strict JSON files such as results.json."""

from __future__ import annotations

import json
import math
import pathlib


def read_metrics(path: str | pathlib.Path) -> list[dict]:
  """The records of a metrics.jsonl (none if it does not exist); only reads."""
  path = pathlib.Path(path)
  if not path.exists():
    return []
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def write_json(path: str | pathlib.Path, record: dict) -> None:
  """`record` as strict JSON (NaN and Inf, which JSON lacks, written as null)."""
  clean = lambda v: (None if isinstance(v, float) and not math.isfinite(v) else
                     {k: clean(x) for k, x in v.items()} if isinstance(v, dict) else
                     [clean(x) for x in v] if isinstance(v, (list, tuple)) else v)
  pathlib.Path(path).write_text(json.dumps(clean(record), indent=2, allow_nan=False) + "\n")


class MetricsLog:
  """Append-only JSON lines (one record per report/evaluation) in `path`. Opening one
  without `resume_step` starts a new log (the old file is removed): to only read a
  run's records, use `read_metrics`."""

  def __init__(self, path: str | pathlib.Path, resume_step: int | None = None):
    self.path = pathlib.Path(path)
    if resume_step is not None and self.path.exists():  # drop records past the checkpoint
      kept = [l for l in self.path.read_text().splitlines()
              if l.strip() and json.loads(l).get("step", 0) <= resume_step]
      self.path.write_text("".join(l + "\n" for l in kept))
    elif resume_step is None and self.path.exists():
      self.path.unlink()

  def write(self, record: dict) -> None:
    """Appends `record` as one JSON line."""
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")

  def read(self) -> list[dict]:
    """The records written so far (see `read_metrics`)."""
    return read_metrics(self.path)


class NullLog:
  """What a non-primary process logs metrics to: nothing (see MetricsLog)."""

  def write(self, record: dict) -> None:
    """Drops `record`."""
    pass

  def read(self) -> list[dict]:
    """No records."""
    return []
