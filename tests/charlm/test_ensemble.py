"""dncjax.charlm.ensemble: EM finds the best weights, a member's per-character losses sum to
its run's own scores, the mixture is at least as good as its best member on the development
split, the tail is read once, and runs that cannot be mixed are refused in one line."""

import json

import numpy as np
import pytest

from dncjax import cli
from dncjax.charlm import data, ensemble
from dncjax.commands import alice
from dncjax.commands import ensemble as command

TINY = ["--model", "lstm", "--hidden", "8", "--batchsize", "2", "--seqlength", "8",
        "--sample_length", "0", "--report_interval", "3", "--eval_every", "3", "--fp64",
        "--dynamic_seq_length", "8", "--dynamic_lr", "1e-3", "3e-2", "--steps", "6"]


def test_em_weights_maximise_the_mixture_likelihood():
  rng = np.random.default_rng(0)
  nll = rng.exponential(1.0, size=(2, 400)) + np.array([[0.0], [0.3]])
  w = ensemble.em_weights(nll)
  grid = np.linspace(0, 1, 2001)
  best = grid[np.argmin([ensemble.mixture_bpc(nll, np.array([a, 1 - a])) for a in grid])]
  assert w.sum() == pytest.approx(1.0) and w[0] == pytest.approx(best, abs=1e-3)
  assert ensemble.mixture_bpc(nll, w) <= min(ensemble.mixture_bpc(nll, np.array([a, 1 - a]))
                                              for a in grid) + 1e-12
  alone = ensemble.mixture_bpc(nll, np.array([1.0, 0.0]))
  assert alone == pytest.approx(nll[0].mean() / np.log(2), rel=1e-12)
  same = np.stack([nll[0], nll[0], nll[0]])  # identical members: the member itself
  assert ensemble.mixture_bpc(same, ensemble.em_weights(same)) == pytest.approx(alone)


@pytest.fixture(scope="module")
def two_runs(text_file, tmp_path_factory):
  root = tmp_path_factory.mktemp("ensemble")
  for seed in (0, 1):
    alice.main(["--data", str(text_file), "--workdir", str(root / f"s{seed}"), "--seed",
                str(seed), *TINY])
  return [root / "s0", root / "s1"]


@pytest.mark.slow
def test_members_score_as_their_runs_and_the_mixture_is_no_worse(two_runs, tmp_path,
                                                                  monkeypatch):
  reads, real_tail = [], data.Corpus.tail_ids
  monkeypatch.setattr(data.Corpus, "tail_ids", lambda c: reads.append(1) or real_tail(c))
  out = tmp_path / "ensemble.json"
  assert command.main([*map(str, two_runs), "--best", "--dynamic_seq_length", "8",
                       "--dynamic_lr", "1e-3", "3e-2", "--json", str(out)]) == 0
  assert reads == [1]  # the tail, once
  summary = json.loads(out.read_text())
  for row, workdir in zip(summary["members"], two_runs):
    run = json.loads((workdir / "results.json").read_text())
    assert row["step"] == run["scored_step"] and row["dynamic"] == run["dynamic"]
    for key in ("dev_bpc", "dynamic_dev_bpc", "tail_bpc", "dynamic_tail_bpc"):
      assert row[key] == pytest.approx(run[key], rel=1e-9), key  # per character = summed
  mixture = summary["mixture"]
  for kind in ("", "dynamic_"):
    assert mixture[f"{kind}dev_bpc"] <= min(r[f"{kind}dev_bpc"] for r in summary["members"])
  weights = [r["weight"] for r in summary["members"]]
  assert sum(weights) == pytest.approx(1.0) and all(0 < w < 1 for w in weights)


@pytest.mark.slow
def test_runs_that_cannot_be_mixed_are_refused(two_runs, text_file, tmp_path):
  with pytest.raises(cli.UsageError, match="at least 2 runs"):
    command.main([str(two_runs[0])])
  other = tmp_path / "other"
  alice.main(["--data", str(text_file), "--workdir", str(other), *TINY, "--dev_fraction",
              "0.2"])
  with pytest.raises(data.DataError, match="another text or split") as e:
    command.main([str(two_runs[0]), str(other), "--no-dynamic_eval"])
  assert "\n" not in str(e.value)
  none = tmp_path / "none"
  alice.main(["--data", str(text_file), "--workdir", str(none), *TINY, "--dev_fraction", "0"])
  with pytest.raises(data.DataError, match="no development split"):
    command.main([str(none), str(none), "--no-dynamic_eval"])
