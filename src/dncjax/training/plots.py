"""PNG plots of a run's metrics (matplotlib, no display needed).

`plot_metrics` draws each metric of metrics.jsonl against iterations (left) and against
training time (right: the records' `time`, seconds trained since the run began, a resumed
run counting on from its checkpoint). The y axis shows training after its start
(`y_range`): the first points, several times the final loss, would squash the rest, so
points off the scale are counted in the panel's title. The best point on the development
split (dev BPC), the one the char-LM job keeps in best/, is marked and annotated.
"""

from __future__ import annotations

import math
import pathlib

from matplotlib.figure import Figure  # no pyplot: no backend, no global state

SKIP = 0.05  # the start of training the y range may leave out: this fraction of the iters


def _finite(records: list[dict], key: str) -> list[dict]:
  return [r for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]


def best_point(records: list[dict], key: str = "dev_bpc") -> dict | None:
  """The first record holding the lowest finite `key` (the char-LM job's best checkpoint
  keeps the first of equal scores), or None when no record has one."""
  rows = _finite(records, key)
  return min(rows, key=lambda r: r[key]) if rows else None


def y_range(records: list[dict], keys: tuple[str, ...], skip: float = SKIP,
            pad: float = 0.05, best: str | None = "dev_bpc") -> tuple[float, float] | None:
  """(low, high) y limits showing the points of `keys` after the first `skip` of the
  iterations and after each curve's first point (a curve of one or two points: all of
  them), the lowest `best` point always included, padded by `pad` of the span; None when
  there is nothing finite to show."""
  rows = {key: _finite(records, key) for key in keys}
  steps = [r.get("step", 0) for key_rows in rows.values() for r in key_rows]
  if not steps:
    return None
  after = min(steps) + skip * (max(steps) - min(steps))
  every, later = [], []
  for key, key_rows in rows.items():
    for i, r in enumerate(key_rows):
      every.append(r[key])
      if len(key_rows) < 3 or (i > 0 and r.get("step", 0) > after):
        later.append(r[key])
  shown = later or every
  point = best_point(records, best) if best in keys else None
  low, high = min(shown + ([point[best]] if point else [])), max(shown)
  margin = pad * (high - low) or pad * abs(high) or pad
  return low - margin, high + margin


def _time_unit(seconds: float) -> tuple[str, float]:
  """(name, seconds per unit) readable for a run `seconds` long."""
  return ("s", 1.0) if seconds < 180 else ("min", 60.0) if seconds < 180 * 60 else ("h", 3600.0)


def plot_metrics(records: list[dict], path: str | pathlib.Path, title: str = "",
                 keys: tuple[str, ...] = ("train_bpc", "dev_bpc"), ylabel: str = "BPC",
                 best: str | None = "dev_bpc") -> None:
  """`metrics_figure` as a PNG in `path`."""
  metrics_figure(records, title, keys, ylabel, best).savefig(path, dpi=110)


def metrics_figure(records: list[dict], title: str = "",
                   keys: tuple[str, ...] = ("train_bpc", "dev_bpc"), ylabel: str = "BPC",
                   best: str | None = "dev_bpc") -> Figure:
  """Each metric in `keys` against iterations (left) and training time (right), on the y
  range of `y_range`; the lowest `best` point, if any, marked as the best checkpoint."""
  fig = Figure(figsize=(11, 4.2), layout="constrained")
  axes = fig.subplots(1, 2, sharey=True)
  times = [r["time"] for r in records if isinstance(r.get("time"), (int, float))]
  unit, per = _time_unit(max(times, default=0.0))
  for key in keys:
    rows = [r for r in records if key in r]
    if not rows:
      continue
    timed = [r for r in rows if "time" in r]
    marker = "." if len(rows) < 50 else None
    for ax, pts in ((axes[0], [(r["step"], r[key]) for r in rows]),
                    (axes[1], [(r["time"] / per, r[key]) for r in timed])):
      if pts:
        ax.plot(*zip(*pts), marker=marker, label=key.replace("_", " "))
  point = best_point(records, best) if best in keys else None
  if point is not None:
    _mark_best(axes, point, best, per)
  limits = y_range(records, keys, best=best)
  if limits is not None:
    axes[0].set_ylim(*limits)
    _note_off_scale(axes, records, keys, limits)
  for ax, xlabel in zip(axes, ("iteration", f"training time ({unit})")):
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    if ax.has_data():
      ax.legend(fontsize=8)
  axes[0].set_ylabel(ylabel)
  fig.suptitle(title)
  return fig


def _mark_best(axes, point: dict, key: str, per: float) -> None:
  """A star on the best point in both panels; its value and iteration above it (drawn
  inwards near either end of the iterations)."""
  xs = (point["step"], point["time"] / per if "time" in point else None)
  for ax, x in zip(axes, xs):
    if x is None:
      continue
    ax.plot([x], [point[key]], marker="*", markersize=13, color="crimson", linestyle="none",
            zorder=5, label="best checkpoint" if ax is axes[0] else None)
  low, high = axes[0].dataLim.intervalx
  where = (xs[0] - low) / (high - low) if high > low else 0.5
  align = "right" if where > 0.8 else "left" if where < 0.2 else "center"
  axes[0].annotate(f"best {point[key]:.4g}\niter {point['step']}", (xs[0], point[key]),
                   xytext=(0, 22), textcoords="offset points", ha=align, fontsize=8,
                   color="crimson", arrowprops={"arrowstyle": "->", "color": "crimson"})


def _note_off_scale(axes, records: list[dict], keys: tuple[str, ...],
                    limits: tuple[float, float]) -> None:
  """Says in each panel's title how many points lie outside the y `limits`, if any."""
  values = [r[k] for k in keys for r in _finite(records, k)]
  above = [v for v in values if v > limits[1]]
  below = [v for v in values if v < limits[0]]
  parts = ([f"{len(above)} early point{'s' * (len(above) > 1)} above (up to {max(above):.3g})"]
           if above else []) + ([f"{len(below)} below"] if below else [])
  if parts:
    for ax in axes:
      ax.set_title(f"y axis clipped: {', '.join(parts)}", fontsize=8, color="dimgrey")
