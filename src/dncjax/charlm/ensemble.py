"""Ensembles of trained char-LMs: the mixture p(c) = sum_m w_m p_m(c) of several runs'
next-character distributions, each run scoring the text as it does alone (statically, or
with dynamic evaluation adapting its own parameters, Krause et al. 2017).

Everything is chosen on the development split: each run's dynamic evaluation setting
(`scoring.choose` over the options' grid) and the weights w, which maximise the mixture's
likelihood there (EM, Dempster et al. 1977; one set for static scoring, one for dynamic).
Then the tail is read once (`scoring.tail_nlls`) and scored with everything fixed. The runs
must share their text and its split (the same file, --dev_fraction and --val_fraction).

A count model may join the networks (`ngram.py`, its order and discount chosen on the
development split among those given): statically it keeps the counts of the training split,
as a network keeps its trained parameters; dynamically it is given all the text before the
split it predicts (as a compressor is) and counts each character once predicted.
"""

from __future__ import annotations

import math
import pathlib
from typing import Callable, NamedTuple

import numpy as np

from dncjax.charlm import data, ngram, restore, scoring
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
  """(the runs' corpus, [(workdir, config, model, TrainState, step)]) of trained runs (one
  alone mixes with the count model); DataError unless every run has the first's text and
  split and there is a development split to choose on."""
  if not workdirs:
    raise ValueError("an ensemble needs at least 1 run")
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


def ngram_nll(corpus: data.Corpus, before: np.ndarray, ids: np.ndarray, order: int,
              discounts, dynamic: bool) -> np.ndarray:
  """The count model's loss (nats) of each character of the split `ids` after its first,
  one row per discount, `before` being all the text before the split: static, with the
  training split's counts; dynamic, given `before` and counting as it goes."""
  return ngram.split_nll(before if dynamic else corpus.train_ids, before, ids, order,
                         corpus.vocab.size, discounts, adapt=dynamic)


def choose_ngram(corpus: data.Corpus, dev: np.ndarray, orders, discounts, dynamic: bool,
                 say: Callable[[str], None]) -> tuple[tuple[int, float], np.ndarray]:
  """(the count model's (order, discount), among `orders` x `discounts`, under which the
  mixture with the networks' losses `dev` [M, n] predicts the development split best, its
  losses there)."""
  best = None
  for order in orders:
    rows = ngram_nll(corpus, corpus.train_ids, corpus.dev_ids, order, discounts, dynamic)
    for discount, nll in zip(discounts, rows):
      both = np.vstack([dev, nll[None]])
      bpc = mixture_bpc(both, em_weights(both))
      say(f"  {'dynamic' if dynamic else 'static'} n-gram, order {order}, discount "
          f"{discount}: mixture {bpc:.4f} BPC on the development split (alone "
          f"{nll.mean() / LN2:.4f})")
      if best is None or bpc < best[0]:
        best = (bpc, (order, discount), nll)
  return best[1], best[2]


def score(corpus: data.Corpus, runs: list[Member], score_tail: bool = True,
          ngram_orders: tuple[int, ...] = (),
          ngram_discounts: tuple[float, ...] = ngram.DISCOUNTS,
          say: Callable[[str], None] = print) -> dict:
  """The members and their mixture scored: the weights fitted on the development split,
  then, with `score_tail`, the tail once. With `ngram_orders`, a count model joins them,
  its order and discount (among `ngram_discounts`) chosen there. {'members': [per run:
  workdir, step, dynamic setting, weights, BPCs; then the count model's row], 'mixture':
  BPCs} with 'dev_bpc', 'dynamic_dev_bpc', 'tail_bpc', 'dynamic_tail_bpc' (the dynamic
  ones with dynamic evaluation)."""
  dynamic = all(m.setting is not None for m in runs)
  dev = {"": np.stack([m.scorer.static_nll(corpus.dev_ids) for m in runs])}
  if dynamic:
    dev["dynamic_"] = np.stack([m.dev_dynamic for m in runs])
  rows = [{"workdir": m.workdir, "step": m.step} for m in runs]
  others, chosen = [], {}
  if ngram_orders:
    say("the count model's order and discount, chosen on the development split")
    for kind in dev:
      chosen[kind], nll = choose_ngram(corpus, dev[kind], ngram_orders, ngram_discounts,
                                       kind == "dynamic_", say)
      dev[kind] = np.vstack([dev[kind], nll[None]])
    rows.append({"workdir": None, "step": None, "model": "ngram"}
                | {f"{kind}{key}": value for kind, (order, discount) in chosen.items()
                   for key, value in (("order", order), ("discount", discount))})
    before = np.concatenate([corpus.train_ids, corpus.dev_ids])
    others = [lambda tail: tuple(
        ngram_nll(corpus, before, tail, chosen[kind][0], chosen[kind][1:], kind == "dynamic_")[0]
        if kind in chosen else None for kind in ("", "dynamic_"))]
  weights = {kind: em_weights(nll) for kind, nll in dev.items()}
  splits = [("dev", dev)]
  if score_tail and corpus.tail_length:
    nlls = scoring.tail_nlls([(m.scorer, m.setting) for m in runs], corpus, others)
    splits.append(("tail", {kind: np.stack([pair[i] for pair in nlls])
                            for i, kind in enumerate(dev)}))
  mixture = {}
  for name, nll in splits:
    for kind, values in nll.items():
      mixture[f"{kind}{name}_bpc"] = mixture_bpc(values, weights[kind])
      for i, row in enumerate(rows):
        row[f"{kind}{name}_bpc"] = float(values[i].mean() / LN2)
  for i, row in enumerate(rows):
    row.update({f"{kind}weight": float(w[i]) for kind, w in weights.items()})
    if dynamic and i < len(runs):
      row["dynamic"] = runs[i].setting.to_dict()
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
    name = r["workdir"] or "n-gram, order / discount " + ", ".join(
        f"{r[kind + 'order']} / {r[kind + 'discount']}" for kind in ("", "dynamic_")
        if kind + "order" in r)
    lines.append(f"| {name} | {r['step'] or ''} | {w} | "
                 + " | ".join(f"{r[k]:.4f}" for k in keys) + " |")
  lines.append("| **mixture** | | | " + " | ".join(f"**{summary['mixture'][k]:.4f}**"
                                                  for k in keys) + " |")
  return "\n".join(lines)
