"""dncjax.sweeps.report: params.png labels a log-scaled setting with a few round values
whose labels do not overlap (the whole report of a real sweep: test_study.py)."""

import itertools
import random

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from dncjax.sweeps import report, space, study as sweep


def spec(workdir, params) -> sweep.Sweep:
  fixed = (space.parse_fixed("model=lstm"),)
  return sweep.Sweep(str(workdir), space.Space(tuple(map(space.Param.parse, params)), fixed),
                     sweep.Budget(steps=8), trials=4, sampler="random")


def table(params: list[space.Param], n=24) -> list[dict]:
  rng = random.Random(0)
  draw = lambda p: (p.low * (p.high / p.low) ** rng.random() if p.log else
                    rng.randint(p.low, p.high))
  return [{"trial": i, "state": ("complete", "pruned")[i % 2], "dev_bpc": 2 + rng.random(),
           **{p.name: draw(p) for p in params}} for i in range(n)]


def shown_labels(ax, renderer):
  """The x tick labels drawn on `ax` (major and minor, inside the view, with text)."""
  low, high = ax.get_xlim()
  ticks = ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
  return [t.label1 for t in ticks if t.label1.get_visible() and t.label1.get_text()
          and low <= t.get_loc() <= high and t.label1.get_window_extent(renderer).width > 0]


@pytest.mark.parametrize("ranges", [
    ("lr=0.003:0.08:log", "eps=1e-10:1e-2:log", "clip_norm=1:30:log"),
    ("lr=0.02:0.03:log", "eps=1e-8:1e-6:log", "weight_decay=5e-4:2e-3:log"),
])
def test_log_axes_have_few_labels_that_do_not_overlap(tmp_path, ranges):
  s = spec(tmp_path / "s", ranges)
  fig = report.params_figure(table(s.space.params), s)
  canvas = FigureCanvasAgg(fig)
  canvas.draw()
  renderer = canvas.get_renderer()
  for ax, p in zip(fig.axes, s.space.params):
    assert ax.get_xscale() == "log"
    labels = shown_labels(ax, renderer)
    assert 2 <= len(labels) <= 6, (p.name, [l.get_text() for l in labels])
    boxes = [l.get_window_extent(renderer) for l in labels]
    for a, b in itertools.combinations(boxes, 2):
      assert not a.overlaps(b), (p.name, [l.get_text() for l in labels])
    low, high = ax.get_xlim()
    assert low < p.low and high > p.high  # the whole swept range is in view
  report.plot_params(table(s.space.params), s, tmp_path / "params.png")
  assert (tmp_path / "params.png").read_bytes()[:4] == b"\x89PNG"


def test_log_ticks_are_round_and_few():
  assert report.log_ticks(0.003, 0.08) == pytest.approx([0.005, 0.01, 0.02, 0.05])
  assert report.log_ticks(1e-10, 1e-2) == pytest.approx([1e-10, 1e-8, 1e-6, 1e-4, 1e-2])
  assert report.log_ticks(0.021, 0.029) == pytest.approx([0.021, 0.029])  # no round value
  assert len(report.log_ticks(1e-40, 1e40)) <= 5
  assert [report.compact(v) for v in (0.003, 20, 1e-5, 2.5e6, 1000)] == [
      "0.003", "20", "1e-5", "2.5e6", "1000"]
