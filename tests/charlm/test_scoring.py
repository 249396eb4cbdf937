"""dncjax.charlm.scoring: the held-out tail decides nothing (two texts that differ only
in their tail train, evaluate and choose identically) and is read once, by the final
scoring; a run without a development split, and a run saved before it existed."""

import json
import pathlib
import re

import numpy as np
import pytest

from dncjax.charlm import data, restore, scoring
from dncjax.charlm.config import Options
from dncjax.commands import alice, dynamic_eval, sample
from dncjax.training import loop

REPO = pathlib.Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "dncjax"
TINY = ["--model", "lstm", "--hidden", "8", "--batchsize", "2", "--seqlength", "8",
        "--sample_length", "16", "--report_interval", "1", "--eval_every", "2",
        "--checkpoint_every", "3", "--fp64", "--dropout", "0.1"]




def run(text_file, workdir, *extra):
  alice.main(["--data", str(text_file), "--workdir", str(workdir), *TINY, *extra])
  return workdir


def records(workdir):
  """metrics.jsonl without the wall-clock fields."""
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [{k: v for k, v in json.loads(l).items() if k not in ("time", "char_per_s")}
          for l in lines]


def results(workdir):
  return json.loads((workdir / "results.json").read_text())


def test_only_the_final_scoring_reads_the_tail():
  callers = [p.relative_to(SRC) for p in SRC.rglob("*.py") if "tail_ids(" in p.read_text()]
  assert sorted(map(str, callers)) == ["charlm/data.py", "charlm/scoring.py"]


@pytest.mark.slow
def test_the_tail_decides_nothing_and_is_read_once_at_the_end(text_file, tmp_path,
                                                               monkeypatch):
  text = text_file.read_text()
  n_tail = int(len(text) * 0.1)
  other = tmp_path / "other.txt"  # the same text but a reversed tail: the same vocabulary
  other.write_text(text[:-n_tail] + text[-n_tail:][::-1])
  trained, reads, real_run, real_tail = [], [], loop.run, data.Corpus.tail_ids

  def training(**kwargs):
    result = real_run(**kwargs)
    trained.append(result.step)
    return result

  def tail_ids(corpus):
    reads.append(list(trained))
    return real_tail(corpus)

  monkeypatch.setattr(loop, "run", training)
  monkeypatch.setattr(data.Corpus, "tail_ids", tail_ids)
  grid = ("--dynamic_seq_length", "8", "--dynamic_lr", "1e-3", "3e-2")  # chosen on dev
  one = run(text_file, tmp_path / "one", "--steps", "6", *grid)
  assert reads == [[6]]  # once, after training
  monkeypatch.undo()
  two = run(other, tmp_path / "two", "--steps", "6", *grid)
  assert records(one) == records(two) and len(records(one)) == 6 + 3
  r1, r2 = results(one), results(two)
  for key in ("best_step", "best_dev_bpc", "train_bpc", "scored_step", "scored_checkpoint",
              "dev_bpc", "dynamic_dev_bpc", "dynamic", "dynamic_grid"):
    assert r1[key] == r2[key], key
  assert len(r1["dynamic_grid"]) == 2 * 2  # the rates given times the default decays
  assert r1["scored_checkpoint"] == "best/" and r1["dev_bpc"] == r1["best_dev_bpc"]
  assert r1["tail_bpc"] != r2["tail_bpc"] and r1["dynamic_tail_bpc"] != r2["dynamic_tail_bpc"]
  assert (one / "samples.txt").read_text() == (two / "samples.txt").read_text()
  for best in (False, True):
    a, b = (restore.restore_for_sampling(w, best=best)[1] for w in (one, two))
    assert all(np.array_equal(a[k], b[k]) for k in a)
  log = (one / "log.txt").read_text()
  assert "tail (scored once): static" in log and "development split: static" in log


@pytest.fixture(scope="module")
def no_dev(text_file, tmp_path_factory):
  """5 iterations without a development split (float64), checkpoints at 3 and 5."""
  return run(text_file, tmp_path_factory.mktemp("no_dev"), "--steps", "5", "--dev_fraction",
             "0", "--no-dynamic_eval")


@pytest.mark.slow
def test_without_a_development_split_the_last_state_is_scored(no_dev, tmp_path):
  assert not any("dev_bpc" in r for r in records(no_dev)) and not (no_dev / "best").exists()
  summary = results(no_dev)
  assert summary["best_dev_bpc"] is None and summary["best_step"] is None
  assert (summary["scored_step"], summary["scored_checkpoint"]) == (5, "checkpoints/")
  assert "dev_bpc" not in summary and np.isfinite(summary["tail_bpc"])
  assert "---- iter 2" in (no_dev / "samples.txt").read_text()  # evaluations still sample
  with pytest.raises(data.DataError, match="no development split") as e:
    dynamic_eval.main(["--workdir", str(no_dev), "--lr", "0.1"])
  assert "\n" not in str(e.value)


def _as_saved_before_the_development_split(workdir):
  """Rewrites a dev_fraction-0 run as an older version wrote it: no data.dev_fraction in
  config.json or in the checkpoints' config, and a best record named val_bpc."""
  config = json.loads((workdir / "config.json").read_text())
  del config["data"]["dev_fraction"]
  (workdir / "config.json").write_text(json.dumps(config))
  for path in (workdir / "checkpoints").glob("*/meta/metadata"):
    meta = json.loads(path.read_text())
    del meta["config"]["data"]["dev_fraction"]
    meta["best"] = {"val_bpc": 3.0, "step": meta["step"]}
    path.write_text(json.dumps(meta))


@pytest.mark.slow
def test_a_run_saved_before_the_development_split_resumes_and_samples(text_file, no_dev,
                                                                        tmp_path, capsys):
  old = run(text_file, tmp_path / "old", "--steps", "3", "--dev_fraction", "0",
            "--no-dynamic_eval")
  _as_saved_before_the_development_split(old)
  assert "dev_fraction" not in (old / "config.json").read_text()
  config, _, _, _, meta = restore.restore_trained(old)
  assert config.data.dev_fraction == 0.0 and meta["step"] == 3
  capsys.readouterr()
  assert sample.main(["--workdir", str(old), "--length", "20", "--prime", "Al"]) == 0
  assert len(capsys.readouterr().out.rstrip("\n")) == 22
  run(text_file, old, "--steps", "5", "--resume", "--no-dynamic_eval")  # no --dev_fraction
  assert re.search(r"\d+ training / 0 development / \d+ tail", (old / "log.txt").read_text())
  trained = [r for r in records(old) if "train_bpc" in r]
  assert trained == [r for r in records(no_dev) if "train_bpc" in r]  # on the same split
  assert len(trained) == 5 and not (old / "best").exists()
  assert results(old)["tail_bpc"] == results(no_dev)["tail_bpc"]
  assert json.loads((old / "config.json").read_text())["data"]["dev_fraction"] == 0.0


class _Planted:
  """A Scorer whose dynamic BPC on any split is planted per learning rate."""

  def __init__(self, by_lr):
    self.by_lr, self.scored = by_lr, []

  def dynamic(self, ids, setting):
    self.scored.append(setting.lr)
    return self.by_lr[setting.lr]


@pytest.mark.parametrize("by_lr, chosen", [
    ({1e-3: 2.0, 3e-3: 1.5, 1e-2: 1.7}, 3e-3),
    ({1e-3: 2.0, 3e-3: float("nan"), 1e-2: float("inf")}, 1e-3),  # diverged: never chosen
    ({1e-3: float("nan"), 3e-3: float("nan"), 1e-2: float("nan")}, 1e-3),  # all: reported
])
def test_the_setting_lowest_on_the_development_split_is_chosen(by_lr, chosen):
  settings = [scoring.Setting("rms", 10, lr, 1e-3) for lr in by_lr]
  scorer = _Planted(by_lr)
  shown = []
  setting, bpc, rows = scoring.choose(lambda s: scorer.dynamic(np.arange(5), s), settings,
                                      lambda compute: float(compute()), shown.append)
  assert setting.lr == chosen and (bpc == by_lr[chosen] or np.isnan(bpc))
  assert scorer.scored == list(by_lr) and len(shown) == 3
  assert [r["lr"] for r in rows] == list(by_lr)
  assert all(r["dynamic_dev_bpc"] == by_lr[r["lr"]] or np.isnan(r["dynamic_dev_bpc"])
             for r in rows)


def test_options_take_one_value_or_several():
  options = Options(dynamic_lr=1e-3, dynamic_decay=[1e-3, 3e-3])
  assert options.dynamic_lr == (1e-3,) and options.dynamic_decay == (1e-3, 3e-3)
  with pytest.raises(ValueError, match="--dynamic_lr needs at least one value"):
    Options(dynamic_lr=())
  with pytest.raises(ValueError, match="--dynamic_seq_length must be an integer"):
    Options(dynamic_seq_length=(10, 0))
  _, args, _ = alice.parse(["--dynamic_lr", "1e-3", "none", "--dynamic_seq_length", "none"])
  assert (args.dynamic_lr, args.dynamic_seq_length) == ([1e-3, None], [None])


def test_without_a_development_split_the_first_setting_is_used(text_file, tmp_path):
  workdir = run(text_file, tmp_path, "--steps", "3", "--dev_fraction", "0",
                "--dynamic_seq_length", "8", "--dynamic_lr", "3e-2", "1e-3")
  summary = results(workdir)
  assert summary["dynamic"]["lr"] == 3e-2 and summary["dynamic"]["decay"] == 1e-3
  assert "dynamic_grid" not in summary and np.isfinite(summary["dynamic_tail_bpc"])
  assert ("no development split to choose dynamic evaluation's setting on: the first of 4 is "
          "used (rms, S 8, lr 0.03, decay 0.001" in (workdir / "log.txt").read_text())


@pytest.mark.slow
def test_a_grid_that_diverges_everywhere_ends_the_run_in_one_line(text_file, tmp_path):
  float32 = [f for f in TINY if f != "--fp64"]  # where a step of 1e38 overflows
  with pytest.raises(loop.TrainingError, match="diverged .* with each of the 4 settings") as e:
    alice.main(["--data", str(text_file), "--workdir", str(tmp_path), *float32, "--steps", "3",
                "--dynamic_seq_length", "8", "--dynamic_lr", "1e38", "3e38"])
  assert "\n" not in str(e.value)
  summary = results(tmp_path)  # written first: every setting's row is there, NaN as null
  assert len(summary["dynamic_grid"]) == 4 and summary["dynamic"]["lr"] == 1e38
  assert all(r["dynamic_dev_bpc"] is None for r in summary["dynamic_grid"])
