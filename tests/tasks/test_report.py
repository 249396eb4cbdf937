"""tasks_report's numbers on hand-made runs (dncjax.tasks.report): per setting, the mean,
spread and count of seeds below the target of the bit errors at the last evaluation, and
the test sets' scores with the count of seeds below the target."""

import dataclasses
import json

import numpy as np
import pytest

from dncjax.tasks import config as tasks_config, report

ENDS = {"copy": [0.0, 0.25, 0.0, 0.0, 0.0], "copy hidden=128": [9.72, 0.0, 0.0, 0.33, 0.0078]}


def fake_run(folder, config, ends):
  """A run's config.json and metrics.jsonl: length-20 evaluations at 1000 .. 1000 k."""
  folder.mkdir(parents=True)
  (folder / "config.json").write_text(json.dumps(config.to_json()))
  rows = [{"step": 1000 * (k + 1), "time": 1.0, "eval_loss": 1.0, "eval_bit_errors": 0.0,
           "eval_perfect": 1.0, "eval_len20_bit_errors": e, "eval_len20_perfect": 0.5}
          for k, e in enumerate(ends)]
  (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def runs(tmp_path):
  """Five seeds of two settings, the second a population (population.json beside them)."""
  base = tasks_config.RunConfig()
  wide = dataclasses.replace(base, model=dataclasses.replace(base.model, hidden=128))
  folders = []
  for seed, end in enumerate(ENDS["copy"]):
    folders.append(tmp_path / f"copy_{seed}")
    fake_run(folders[-1], dataclasses.replace(base, seed=seed), [3.0, end])
  (tmp_path / "wide").mkdir()
  (tmp_path / "wide" / "population.json").write_text(json.dumps({"seeds": [0, 1, 2, 3, 4]}))
  for seed, end in enumerate(ENDS["copy hidden=128"]):
    folders.append(tmp_path / "wide" / f"seed{seed}")
    fake_run(folders[-1], dataclasses.replace(wide, seed=seed), [end + 1, end])
  return [report.run_report(f) for f in folders]


def test_summary_of_each_settings_seeds(runs):
  for label, ends in ENDS.items():
    mine = [r for r in runs if report.options_label(r["config"], tasks_config.RunConfig())
            == label]
    got = report.summarise_ends(mine, 0.05)
    assert got["runs"] == 5 and got["below"] == sum(e < 0.05 for e in ends)
    assert got["mean"] == pytest.approx(np.mean(ends))
    assert got["std"] == pytest.approx(np.std(ends, ddof=1))
    assert (got["min"], got["max"]) == (min(ends), max(ends))
  assert report.summarise_ends(runs[:1], 0.05)["std"] == 0.0  # one run: no spread


def test_tables_show_mean_spread_and_seeds_below_target(runs):
  text = report.tables(runs, tasks_config.RunConfig(), 0, 0.05, markdown=True)
  assert "| copy | 20 | 5 | 0.0500 | 0.1118 | 0.0000..0.2500 | 4/5 |" in text
  assert "| copy hidden=128 | 20 | 5 | 2.0116 | 4.3115 | 0.0000..9.7200 | 3/5 |" in text
  assert "5 runs; at the end: mean 0.0500, std 0.1118, 0.0000..0.2500, 4/5 < 0.05" in text
  assert "| wide/seed3 | 3 | 2000 | 0.3300 |" in text  # a population's member, named by it
  plain = report.tables(runs, tasks_config.RunConfig(), 0, 1.0)
  assert plain.splitlines()[-1].split() == ["copy", "hidden=128", "20", "5", "2.0116", "4.3115",
                                            "0.0000..9.7200", "4/5"]


def test_the_test_sets_are_tabled_with_the_seeds_below_target(runs, tmp_path):
  tests = [  # (last, chosen) bit errors at length 15 per seed; seed 3 scored no test set
      (0.0, 0.01), (25.5, 26.4), (0.0, 0.0), None, (0.625, 0.0156)]
  for seed, scores in enumerate(tests):
    if scores is not None:
      last, chosen = scores
      (tmp_path / f"copy_{seed}" / "results.json").write_text(json.dumps({
          "test_len15_bit_errors": last, "test_len15_perfect": 0.5,
          "selected_test_len15_bit_errors": chosen, "selected_test_len15_perfect": 0.25}))
  again = [report.run_report(tmp_path / f"copy_{seed}") for seed in range(5)]
  assert again[0]["tests"] == {15: {"last": (0.0, 0.5), "chosen": (0.01, 0.25)}}
  assert again[3]["tests"] == {} and runs[5]["tests"] == {}
  text = report.tables(again, tasks_config.RunConfig(), 0, 0.05, markdown=True)
  assert "| run | seed | test 15, last | test 15, chosen |" in text
  assert "| copy_1 | 1 | 25.5000 (50.0%) | 26.4000 (25.0%) |" in text
  assert "| copy_3 | 3 | - | - |" in text
  assert "| below 0.05 |  | 2/5 | 3/5 |" in text
  assert "test 15" not in report.tables(runs[5:], tasks_config.RunConfig(), 0, 0.05)
