"""The final scoring of a char-LM: the one reader of the held-out tail.

Once everything is fixed (the state, chosen on the development split: the best/
checkpoint, or the last state when there is no development split; the settings of
dynamic evaluation), `score_run` scores that state on the development split and, once,
on the tail, the same way: static BPC in windows of the training length, and dynamic
evaluation (Krause et al. 2017) from the trained parameters with the same setting, the
recurrent state and the parameters starting afresh at each split. So the development
figures are what settings are chosen by, and the tail's are scored as they were.
`Corpus.tail_ids()` is called here and nowhere else (tests/charlm/test_scoring.py checks
both).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from dncjax.charlm import data, evaluate
from dncjax.charlm.config import Options

Each = Callable[[Callable[[], float]], float]  # runs one score (multi-host: on process 0)


class Setting(NamedTuple):
  """A dynamic evaluation setting, resolved: rule, window S, learning rate, and the rms
  rule's decay and epsilon."""
  rule: str
  seq_length: int
  lr: float
  decay: float
  eps: float = Options.dynamic_eps

  def to_dict(self) -> dict:
    """The setting as results.json records it."""
    return {"rule": self.rule, "lr": self.lr, "decay": self.decay, "eps": self.eps,
            "seq_length": self.seq_length}

  def describe(self) -> str:
    """'rms, S 10, lr 0.001, decay 0.001, eps 0.003' (decay and eps: the rms rule's)."""
    decay = f", decay {self.decay:.4g}, eps {self.eps:.4g}" if self.rule == "rms" else ""
    return f"{self.rule}, S {self.seq_length}, lr {self.lr:.4g}{decay}"


def setting_of(options: Options, config) -> Setting:
  """The run's dynamic evaluation setting: its Options, a window or rate left unset
  being the training one."""
  return Setting(options.dynamic_rule, options.dynamic_seq_length or config.data.seq_length,
                 options.dynamic_lr or config.optim.learning_rate, options.dynamic_decay,
                 options.dynamic_eps)


def check_options(options: Options, corpus: data.Corpus) -> None:
  """ValueError or DataError, before training, when a split cannot be scored with
  `options`: more --eval_lanes than a split scores characters, or a split shorter than
  one window of --dynamic_seq_length (judged from the splits' lengths, the tail unread)."""
  splits = [(n, name) for n, name in ((len(corpus.dev_ids), "development split"),
                                      (corpus.tail_length, "held-out tail")) if n]
  fewest = min((n for n, _ in splits), default=0)
  if options.eval_lanes > max(fewest - 1, 1):
    raise ValueError(f"--eval_lanes {options.eval_lanes} is more than the "
                     f"{max(fewest - 1, 0)} characters a split scores")
  S = options.dynamic_seq_length
  for n, name in splits if options.dynamic_eval and S else ():
    if n < S + 1:
      raise data.DataError(f"the {name} has {n} characters, fewer than the {S + 1} of one "
                           f"window of --dynamic_seq_length {S}")


class Scorer:
  """Scores one trained state (`params`, and the training optimiser's `opt_state` for the
  adagrad rule) on a split's ids; MS_g of the rms rule is measured once per window length
  and kept for every split."""

  def __init__(self, model, config, train_ids: np.ndarray, params, opt_state, lanes: int,
               static_eval=None):
    self.model, self.config, self.train_ids = model, config, train_ids
    self.params, self.opt_state, self.lanes = params, opt_state, lanes
    self.static_eval = static_eval or evaluate.make_static_eval(model)
    self.ms_states = {}

  def static(self, ids: np.ndarray, seq_length: int | None = None) -> float:
    """Static BPC of the split `ids` in windows of `seq_length` (default: the training
    window's)."""
    windows = evaluate.stack_validation(ids, seq_length or self.config.data.seq_length,
                                        self.lanes)
    return evaluate.static_bpc(self.static_eval, self.params, windows)

  def dynamic(self, ids: np.ndarray, setting: Setting) -> float:
    """Dynamic-evaluation BPC of the split `ids` from the trained state with `setting`."""
    S = setting.seq_length
    if setting.rule == "rms" and S not in self.ms_states:
      self.ms_states[S] = evaluate.rms_state(self.model, self.params, self.train_ids, S,
                                             self.lanes)
    return evaluate.dynamic_bpc(self.model, self.config, ids, self.train_ids, self.params,
                                self.opt_state, setting.rule, setting.lr, setting.decay, S,
                                self.lanes, self.ms_states.get(S), eps=setting.eps)


def score_tail(scorer: Scorer, corpus: data.Corpus, setting: Setting | None) -> dict:
  """The tail, scored once: 'tail_bpc' (static) and, with a `setting`, 'dynamic_tail_bpc'."""
  tail = corpus.tail_ids()
  out = {"tail_bpc": scorer.static(tail)}
  if setting is not None:
    out["dynamic_tail_bpc"] = scorer.dynamic(tail, setting)
  return out


def score_run(scorer: Scorer, corpus: data.Corpus, options: Options, config,
              each: Each = lambda compute: float(compute()),
              say: Callable[[str], None] = print) -> dict:
  """The end of a run: its state scored on the development split ('dev_bpc',
  'dynamic_dev_bpc') and, with `options.score_tail`, once on the tail ('tail_bpc',
  'dynamic_tail_bpc'); dynamic evaluation with the run's setting ('dynamic') when
  `options.dynamic_eval`. `each` runs each score (multi-host: on process 0 only)."""
  setting = setting_of(options, config) if options.dynamic_eval else None
  out = {} if setting is None else {"dynamic": setting.to_dict()}
  tail = []  # read at most once, and only where a score is computed

  def tail_ids():
    if not tail:
      tail.append(corpus.tail_ids())
    return tail[0]

  splits = [("dev", "development split", lambda: corpus.dev_ids, len(corpus.dev_ids))]
  if options.score_tail:
    splits.append(("tail", "tail (scored once)", tail_ids, corpus.tail_length))
  for name, title, ids, length in splits:
    if not length:
      continue
    out[f"{name}_bpc"] = each(lambda: scorer.static(ids()))
    shown = f"static {out[f'{name}_bpc']:.4f} BPC"
    if setting is not None:
      out[f"dynamic_{name}_bpc"] = each(lambda: scorer.dynamic(ids(), setting))
      shown += f", dynamic {out[f'dynamic_{name}_bpc']:.4f} BPC ({setting.describe()})"
    say(f"{title}: {shown}")
  return out


def diverged(summary: dict) -> bool:
  """Whether a dynamic score in `summary` is NaN/Inf."""
  return any(not math.isfinite(summary[k]) for k in ("dynamic_dev_bpc", "dynamic_tail_bpc")
             if summary.get(k) is not None)
