"""dncjax.charlm.ensemble: EM finds the best weights, a member's per-character losses sum to
its run's own scores, the mixture is at least as good as its best member on the development
split, the tail is read once, and runs that cannot be mixed are refused in one line."""

import json

import numpy as np
import pytest

from dncjax import cli
from dncjax.charlm import data, ensemble, ngram
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
  with pytest.raises(cli.UsageError, match="at least 2 members: 2 runs, or a run and "):
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


@pytest.mark.slow
def test_a_count_model_joins_chosen_on_the_development_split(two_runs, text_file, tmp_path,
                                                             monkeypatch):
  real_tail, summaries = data.Corpus.tail_ids, []
  for flip in (False, True):  # two tails, the same text before them
    monkeypatch.setattr(data.Corpus, "tail_ids",
                        lambda c, flip=flip: real_tail(c)[::-1].copy() if flip else real_tail(c))
    out = tmp_path / f"ensemble{flip}.json"
    assert command.main([*map(str, two_runs), "--best", "--dynamic_seq_length", "8",
                         "--dynamic_lr", "1e-3", "--ngram_order", "1", "3",
                         "--ngram_discount", "0.5", "0.8", "--json", str(out)]) == 0
    summaries.append(json.loads(out.read_text()))
  row = summaries[0]["members"][-1]
  assert row["model"] == "ngram" and row["order"] in (1, 3) and row["discount"] in (0.5, 0.8)
  decided = ("order", "discount", "dynamic_order", "dynamic_discount", "weight",
             "dynamic_weight", "dev_bpc", "dynamic_dev_bpc")
  for row_a, row_b in zip(*(s["members"] for s in summaries)):
    assert [row_a.get(k) for k in decided] == [row_b.get(k) for k in decided]
  assert summaries[0]["mixture"]["tail_bpc"] != summaries[1]["mixture"]["tail_bpc"]
  corpus = data.load_corpus(text_file)  # the runs' split: the defaults
  before = np.concatenate([corpus.train_ids, corpus.dev_ids])
  tail, V = real_tail(corpus), corpus.vocab.size
  static, dynamic = ((row["order"], V, (row["discount"],)),
                     (row["dynamic_order"], V, (row["dynamic_discount"],)))
  expect = {  # static: the training split's counts; dynamic: all text before, counting on
      "dev_bpc": ngram.split_nll(corpus.train_ids, corpus.train_ids, corpus.dev_ids, *static,
                                 adapt=False)[0],
      "dynamic_dev_bpc": ngram.split_nll(corpus.train_ids, corpus.train_ids, corpus.dev_ids,
                                         *dynamic, adapt=True)[0],
      "tail_bpc": ngram.split_nll(corpus.train_ids, before, tail, *static, adapt=False)[0],
      "dynamic_tail_bpc": ngram.split_nll(before, before, tail, *dynamic, adapt=True)[0]}
  for key, nll in expect.items():
    assert row[key] == pytest.approx(nll.mean() / np.log(2), rel=1e-12), key
  members = summaries[0]["members"]
  for kind in ("", "dynamic_"):
    assert summaries[0]["mixture"][f"{kind}dev_bpc"] <= min(r[f"{kind}dev_bpc"] for r in members)
    assert sum(r[f"{kind}weight"] for r in members) == pytest.approx(1.0)


@pytest.mark.slow
def test_one_run_mixes_with_the_count_model(two_runs, tmp_path):
  out = tmp_path / "one.json"
  assert command.main([str(two_runs[0]), "--no-dynamic_eval", "--ngram_order", "2",
                       "--json", str(out)]) == 0
  summary = json.loads(out.read_text())
  run, count = summary["members"]
  assert run["workdir"] == str(two_runs[0]) and count["model"] == "ngram"
  assert summary["mixture"]["dev_bpc"] <= min(run["dev_bpc"], count["dev_bpc"])
  assert "dynamic_dev_bpc" not in summary["mixture"]
