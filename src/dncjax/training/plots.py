"""PNG plots of a run's metrics (matplotlib, no display needed)."""

from __future__ import annotations

import pathlib

from matplotlib.figure import Figure  # no pyplot: no backend, no global state


def plot_metrics(records: list[dict], path: str | pathlib.Path, title: str = "",
                 keys: tuple[str, ...] = ("train_bpc", "val_bpc"), ylabel: str = "BPC") -> None:
  """Each metric in `keys` against steps (left) and seconds (right)."""
  fig = Figure(figsize=(11, 4), layout="constrained")
  axes = fig.subplots(1, 2)
  for key in keys:
    rows = [r for r in records if key in r]
    if not rows:
      continue
    for ax, x in zip(axes, ("step", "time")):
      ax.plot([r[x] for r in rows], [r[key] for r in rows], marker="." if len(rows) < 50 else None,
              label=key.replace("_", " "))
  for ax, xlabel in zip(axes, ("iteration", "seconds")):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.has_data():
      ax.legend()
  fig.suptitle(title)
  fig.savefig(path, dpi=110)
