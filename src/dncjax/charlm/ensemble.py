"""Ensembles of trained char-LMs: the mixture p(c) = sum_m w_m p_m(c) of several runs'
next-character distributions, each run scoring the text as it does alone (statically, or
with dynamic evaluation adapting its own parameters, Krause et al. 2017).

Everything is chosen on the development split: each run's dynamic evaluation setting
(`scoring.choose` over the options' grid) and the weights w, which maximise the mixture's
likelihood there (EM, Dempster et al. 1977; one set for static scoring, one for dynamic).
Then the tail is read once (`scoring.tail_nlls`) and scored with everything fixed. The runs
must share their text and its split (the same file, --dev_fraction and --val_fraction).
"""

from __future__ import annotations

import math
import pathlib
from typing import Callable, NamedTuple

import numpy as np

from dncjax.charlm import data, restore, scoring
from dncjax.charlm.config import Options

LN2 = math.log(2)


class Member(NamedTuple):
  """One run of the ensemble: where it is, its scorer, the iteration of its state, its
  dynamic evaluation setting and that setting's loss of each development character (None
  without dynamic evaluation)."""
  workdir: str
  scorer: scoring.Scorer
  step: int
  setting: scoring.Setting | None
  dev_dynamic: np.ndarray | None


def em_weights(nll: np.ndarray, steps: int = 1000, tol: float = 1e-12) -> np.ndarray:
  """The weights w (w >= 0, sum 1) maximising sum_i log sum_m w_m exp(-nll[m, i]), the
  mixture's log-likelihood of the characters i whose losses under member m are nll [M, n]
  (nats): EM from equal weights, each step w_m <- mean_i of m's responsibility for i."""
  w = np.full(nll.shape[0], 1.0 / nll.shape[0])
  for _ in range(steps):
    joint = np.log(w)[:, None] - nll
    new = np.exp(joint - np.logaddexp.reduce(joint, axis=0)).mean(axis=1)
    done = np.max(np.abs(new - w)) < tol
    w = new
    if done:
      break
  return w


def mixture_bpc(nll: np.ndarray, w: np.ndarray) -> float:
  """BPC of the mixture with weights `w` of members whose losses are nll [M, n] (nats)."""
  with np.errstate(divide="ignore"):  # a weight of 0 adds nothing
    joint = np.log(w)[:, None] - nll
  return float(-np.logaddexp.reduce(joint, axis=0).mean() / LN2)


def load(workdirs: list[str], best: bool) -> tuple[data.Corpus, list]:
  """(the runs' corpus, [(workdir, config, model, TrainState, step)]) of trained runs;
  DataError unless every run has the first's text and split and there is a development
  split to choose on."""
  if len(workdirs) < 2:
    raise ValueError(f"an ensemble needs at least 2 runs, got {len(workdirs)}")
  runs, corpus, first = [], None, None
  for workdir in workdirs:
    config, model, ts, vocab, meta = restore.restore_trained(workdir, best)
    split = (config.data.val_fraction, config.data.dev_fraction)
    if corpus is None:
      corpus, first = data.load(config.data), (workdir, split)
      where = pathlib.Path(corpus.path).resolve()
    elif (split != first[1] or vocab.to_list() != corpus.vocab.to_list()
          or pathlib.Path(data.load(config.data).path).resolve() != where):
      raise data.DataError(f"{workdir} was trained on another text or split than {first[0]} "
                           f"(an ensemble's runs must share the file, --dev_fraction and "
                           f"--val_fraction)")
    runs.append((workdir, config, model, ts, meta["step"]))
  if not len(corpus.dev_ids):
    raise data.DataError(f"the runs have no development split (dev_fraction 0): there is "
                         f"nothing to choose the ensemble's weights on")
  return corpus, runs


def members(corpus: data.Corpus, runs: list, options: Options,
            say: Callable[[str], None] = print) -> list[Member]:
  """The runs as members, each with its dynamic evaluation setting chosen on the
  development split among the `options`' (none without `options.dynamic_eval`)."""
  out = []
  for workdir, config, model, ts, step in runs:
    scorer = scoring.Scorer(model, config, corpus.train_ids, ts.params, ts.opt_state, 1)
    setting, nlls = None, {}

    def score(setting, scorer=scorer, nlls=nlls):  # kept: the chosen one's are mixed
      nlls[setting] = scorer.dynamic_nll(corpus.dev_ids, setting)
      return float(nlls[setting].mean() / LN2)
    if options.dynamic_eval:
      say(f"{workdir}: dynamic evaluation's setting, chosen on the development split")
      setting, _, _ = scoring.choose(score, scoring.settings_of(options, config),
                                     lambda compute: float(compute()), say)
    out.append(Member(str(workdir), scorer, step, setting, nlls.get(setting)))
  return out


def score(corpus: data.Corpus, runs: list[Member], score_tail: bool = True) -> dict:
  """The members and their mixture scored: the weights fitted on the development split,
  then, with `score_tail`, the tail once. {'members': [per run: workdir, step, dynamic
  setting, weights, BPCs], 'mixture': BPCs} with 'dev_bpc', 'dynamic_dev_bpc',
  'tail_bpc', 'dynamic_tail_bpc' (the dynamic ones with dynamic evaluation)."""
  dynamic = all(m.setting is not None for m in runs)
  dev = {"": np.stack([m.scorer.static_nll(corpus.dev_ids) for m in runs])}
  if dynamic:
    dev["dynamic_"] = np.stack([m.dev_dynamic for m in runs])
  weights = {kind: em_weights(nll) for kind, nll in dev.items()}
  rows = [{"workdir": m.workdir, "step": m.step, "weight": float(weights[""][i])}
          for i, m in enumerate(runs)]
  mixture = {}
  splits = [("dev", dev)]
  if score_tail and corpus.tail_length:
    nlls = scoring.tail_nlls([(m.scorer, m.setting) for m in runs], corpus)
    tail = {"": np.stack([s for s, _ in nlls])}
    if dynamic:
      tail["dynamic_"] = np.stack([d for _, d in nlls])
    splits.append(("tail", tail))
  for name, nll in splits:
    for kind, values in nll.items():
      mixture[f"{kind}{name}_bpc"] = mixture_bpc(values, weights[kind])
      for i, row in enumerate(rows):
        row[f"{kind}{name}_bpc"] = float(values[i].mean() / LN2)
  if dynamic:
    for i, (row, m) in enumerate(zip(rows, runs)):
      row.update(dynamic=m.setting.to_dict(), dynamic_weight=float(weights["dynamic_"][i]))
  return {"members": rows, "mixture": mixture}


def markdown(summary: dict) -> str:
  """`score`'s summary as a Markdown table: one row per run, then the mixture."""
  keys = [k for k in ("dev_bpc", "dynamic_dev_bpc", "tail_bpc", "dynamic_tail_bpc")
          if k in summary["mixture"]]
  heads = {"dev_bpc": "dev, static", "dynamic_dev_bpc": "dev, dynamic",
           "tail_bpc": "tail, static", "dynamic_tail_bpc": "tail, dynamic"}
  weights = "weight (static" + (" / dynamic)" if "dynamic_dev_bpc" in keys else ")")
  lines = ["| run | iter | " + weights + " | " + " | ".join(heads[k] for k in keys) + " |",
           "|---|---:|---:|" + "---:|" * len(keys)]
  for r in summary["members"]:
    w = f"{r['weight']:.3f}" + (f" / {r['dynamic_weight']:.3f}" if "dynamic_weight" in r else "")
    lines.append(f"| {r['workdir']} | {r['step']} | {w} | "
                 + " | ".join(f"{r[k]:.4f}" for k in keys) + " |")
  lines.append("| **mixture** | | | " + " | ".join(f"**{summary['mixture'][k]:.4f}**"
                                                  for k in keys) + " |")
  return "\n".join(lines)
