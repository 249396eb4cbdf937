"""dncjax.training.plots: metrics.png's y range leaves out the first points of training but
keeps the best one, the best checkpoint is marked, and a time axis is drawn."""

import math

import pytest

from dncjax.training import plots


def char_lm_records(steps=1000, every=10, eval_every=100):
  """A char-LM run's records: 6.6 BPC at iter 0, falling to ~2, dev best at 600."""
  out = [{"step": 0, "time": 0.2, "dev_bpc": 6.6}]
  for step in range(every, steps + 1, every):
    out.append({"step": step, "time": 1.5 * step,
                "train_bpc": 2.0 + 4.0 * math.exp(-step / 8) + 0.01 * (step % 30 == 0)})
    if step % eval_every == 0:
      out.append({"step": step, "time": 1.5 * step + 0.5,
                  "dev_bpc": 2.3 + 1e-4 * (step - 600) ** 2 / 100})
  return out


def test_the_y_range_leaves_out_the_start_and_keeps_the_best_point():
  records = char_lm_records()
  low, high = plots.y_range(records, ("train_bpc", "dev_bpc"))
  best = plots.best_point(records)
  assert (best["step"], best["dev_bpc"]) == (600, 2.3)
  later = [r[k] for r in records if r["step"] > 50 for k in ("train_bpc", "dev_bpc") if k in r]
  assert low <= min(later) and high >= max(later)  # everything after the start is shown
  assert low <= best["dev_bpc"] <= high
  assert high < 3.0  # not 6.6, nor the first training reports (~5)
  assert high - low < 1.5


def test_the_y_range_keeps_an_early_best_point_and_ignores_nan():
  records = [{"step": 0, "dev_bpc": 1.0}, {"step": 1, "dev_bpc": float("nan")},
             *({"step": s, "dev_bpc": 3.0 + s / 100} for s in range(2, 100))]
  low, high = plots.y_range(records, ("dev_bpc",))
  assert low < 1.0 and 3.9 < high < 4.2
  assert plots.best_point(records)["step"] == 0


def test_a_short_or_empty_run_shows_all_its_points():
  assert plots.y_range([], ("train_bpc",)) is None
  assert plots.y_range([{"step": 1, "train_bpc": float("inf")}], ("train_bpc",)) is None
  two = [{"step": 1, "train_bpc": 4.0}, {"step": 2, "train_bpc": 3.0}]
  low, high = plots.y_range(two, ("train_bpc",))
  assert low < 3.0 and high > 4.0
  low, high = plots.y_range([{"step": 5, "train_bpc": 2.0}], ("train_bpc",))
  assert low < 2.0 < high


def test_metrics_png_marks_the_best_checkpoint_on_both_axes(tmp_path):
  records = char_lm_records()
  fig = plots.metrics_figure(records, "lstm")
  steps_ax, time_ax = fig.axes
  assert steps_ax.get_ylim() == pytest.approx(plots.y_range(records, ("train_bpc", "dev_bpc")))
  stars = [[l for l in ax.get_lines() if l.get_marker() == "*"] for ax in (steps_ax, time_ax)]
  assert [len(s) for s in stars] == [1, 1]
  assert list(stars[0][0].get_xydata()[0]) == [600, 2.3]
  assert list(stars[1][0].get_xydata()[0]) == pytest.approx([(1.5 * 600 + 0.5) / 60, 2.3])
  assert "best checkpoint" in [t.get_text() for t in steps_ax.get_legend().get_texts()]
  assert any("iter 600" in t.get_text() for t in steps_ax.texts)
  assert time_ax.get_xlabel() == "training time (min)"  # 1500 s: minutes
  assert "above" in steps_ax.get_title() and "6.6" in steps_ax.get_title()
  plots.plot_metrics(records, tmp_path / "metrics.png")
  assert (tmp_path / "metrics.png").read_bytes()[:4] == b"\x89PNG"


def test_a_tasks_plot_has_no_best_mark_and_keeps_its_keys():
  records = [{"step": s, "time": s / 10, "train_loss": 10 / s, "val_loss": 12 / s}
             for s in range(1, 200)]
  fig = plots.metrics_figure(records, keys=("train_loss", "val_loss"), ylabel="nats")
  steps_ax, time_ax = fig.axes
  assert not [l for l in steps_ax.get_lines() if l.get_marker() == "*"]
  assert [t.get_text() for t in steps_ax.get_legend().get_texts()] == ["train loss", "val loss"]
  assert time_ax.get_xlabel() == "training time (s)" and steps_ax.get_ylabel() == "nats"
  assert steps_ax.get_ylim()[1] < 10  # the first loss (12) is off the scale
