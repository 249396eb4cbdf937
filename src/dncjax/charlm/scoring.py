"""The final scoring of a char-LM: the one reader of the held-out tail.

Once the state is fixed (chosen on the development split: the best/ checkpoint, or the
last state when there is no development split), `score_run` scores it on the development
split: static BPC in windows of the training length, and dynamic evaluation (Krause et al.
2017) with every setting the run's options name, the best of which is chosen there. Then
it scores the tail once, the same way, with that one setting, the recurrent state and the
parameters starting afresh at each split. So the development figures are what settings
are chosen by, and the tail's are scored as they were.
`Corpus.tail_ids()` is called here and nowhere else (tests/charlm/test_scoring.py checks
both).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, NamedTuple, Sequence

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
  eps: float = Options.dynamic_eps[0]

  def to_dict(self) -> dict:
    """The setting as results.json records it."""
    return {"rule": self.rule, "lr": self.lr, "decay": self.decay, "eps": self.eps,
            "seq_length": self.seq_length}

  def describe(self) -> str:
    """'rms, S 10, lr 0.001, decay 0.001, eps 0.003' (decay and eps: the rms rule's)."""
    decay = f", decay {self.decay:.4g}, eps {self.eps:.4g}" if self.rule == "rms" else ""
    return f"{self.rule}, S {self.seq_length}, lr {self.lr:.4g}{decay}"


def combinations(rules, seq_lengths, lrs, decays, epss=Options.dynamic_eps) -> list[tuple]:
  """(rule, seq_length, lr, decay, eps) combinations, in order, without repeats; adagrad
  takes no decay and no eps (its own are the training optimiser's)."""
  out = []
  for rule, S, lr, decay, eps in itertools.product(rules, seq_lengths, lrs, decays, epss):
    rms = rule == "rms"
    combo = (rule, S, lr, decay if rms else 0.0, eps if rms else epss[0])
    if combo not in out:
      out.append(combo)
  return out


def settings_of(options: Options, config) -> list[Setting]:
  """The run's dynamic evaluation settings: every combination of its --dynamic_rule,
  --dynamic_seq_length, --dynamic_lr, --dynamic_decay and --dynamic_eps, a window or
  rate left unset ('none') being the training one."""
  o = options
  out = []
  for rule, S, lr, decay, eps in combinations(o.dynamic_rule, o.dynamic_seq_length,
                                              o.dynamic_lr, o.dynamic_decay, o.dynamic_eps):
    setting = Setting(rule, S or config.data.seq_length, lr or config.optim.learning_rate,
                      decay, eps)
    if setting not in out:
      out.append(setting)
  return out


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
  S = max((S for S in options.dynamic_seq_length if S), default=None)
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
    self.ms_states, self.evaluators = {}, {}  # by window length; compiled, by kind

  def static(self, ids: np.ndarray, seq_length: int | None = None) -> float:
    """Static BPC of the split `ids` in windows of `seq_length` (default: the training
    window's)."""
    windows = evaluate.stack_validation(ids, seq_length or self.config.data.seq_length,
                                        self.lanes)
    return evaluate.static_bpc(self.static_eval, self.params, windows)

  def dynamic(self, ids: np.ndarray, setting: Setting) -> float:
    """Dynamic-evaluation BPC of the split `ids` from the trained state with `setting`."""
    return evaluate.dynamic_bpc(*self._dynamic_args(ids, setting, False))

  def static_nll(self, ids: np.ndarray) -> np.ndarray:
    """The static loss (nats) of each character of the split `ids` after the first, in
    windows of the training length, in the text's order."""
    if "static_nll" not in self.evaluators:
      self.evaluators["static_nll"] = evaluate.make_static_eval(self.model, per_position=True)
    windows = evaluate.stack_validation(ids, self.config.data.seq_length, self.lanes)
    return evaluate.in_text_order(self.evaluators["static_nll"](self.params, windows), windows)

  def dynamic_nll(self, ids: np.ndarray, setting: Setting) -> np.ndarray:
    """As `dynamic`, the loss (nats) of each character after the first, in the text's order."""
    return evaluate.dynamic_nll(*self._dynamic_args(ids, setting, True))

  def _dynamic_args(self, ids, setting: Setting, per_position: bool) -> tuple:
    S, key = setting.seq_length, (setting.rule, per_position)
    if setting.rule == "rms" and S not in self.ms_states:
      self.ms_states[S] = evaluate.rms_state(self.model, self.params, self.train_ids, S,
                                             self.lanes)
    if key not in self.evaluators:  # one compiled program per rule, any rate
      self.evaluators[key] = evaluate.make_dynamic(self.model, self.config, *key)
    return (self.model, self.config, ids, self.train_ids, self.params, self.opt_state,
            setting.rule, setting.lr, setting.decay, S, self.lanes, self.ms_states.get(S),
            setting.eps, self.evaluators[key])


def score_tail(scorer: Scorer, corpus: data.Corpus, setting: Setting | None) -> dict:
  """The tail, scored once: 'tail_bpc' (static) and, with a `setting`, 'dynamic_tail_bpc'."""
  tail = corpus.tail_ids()
  out = {"tail_bpc": scorer.static(tail)}
  if setting is not None:
    out["dynamic_tail_bpc"] = scorer.dynamic(tail, setting)
  return out


def tail_nlls(members: list[tuple[Scorer, Setting | None]], corpus: data.Corpus,
              others: Sequence[Callable[[np.ndarray], tuple]] = ()) -> list[tuple]:
  """The tail, read once with everything fixed and scored character by character by each
  member: (static loss, dynamic loss with its setting or None), nats per character; then
  by each of `others`, a function of the tail's ids giving the same pair."""
  tail = corpus.tail_ids()
  return [(scorer.static_nll(tail),
           None if setting is None else scorer.dynamic_nll(tail, setting))
          for scorer, setting in members] + [score(tail) for score in others]


def choose(score: Callable[[Setting], float], settings: list[Setting], each: Each,
           say: Callable[[str], None]) -> tuple[Setting, float, list[dict]]:
  """(the setting whose `score(setting)`, its dynamic BPC on the development split, is
  lowest; that BPC; one row per setting: its dict and 'dynamic_dev_bpc'). A diverged
  setting (NaN/Inf) is never chosen unless every one diverged (then the first, so the run
  reports it)."""
  rows = []
  for setting in settings:
    bpc = each(lambda setting=setting: score(setting))
    rows.append({**setting.to_dict(), "dynamic_dev_bpc": bpc})
    say(f"  development split, dynamic: {bpc:.4f} BPC ({setting.describe()})")
  finite = [i for i, r in enumerate(rows) if math.isfinite(r["dynamic_dev_bpc"])]
  best = min(finite, key=lambda i: rows[i]["dynamic_dev_bpc"]) if finite else 0
  return settings[best], rows[best]["dynamic_dev_bpc"], rows


def score_run(scorer: Scorer, corpus: data.Corpus, options: Options, config,
              each: Each = lambda compute: float(compute()),
              say: Callable[[str], None] = print) -> dict:
  """The end of a run: its state scored on the development split ('dev_bpc',
  'dynamic_dev_bpc') and, with `options.score_tail`, once on the tail ('tail_bpc',
  'dynamic_tail_bpc'); with `options.dynamic_eval`, dynamic evaluation with the run's
  setting ('dynamic'), chosen on the development split when the options name several
  ('dynamic_grid': each one's development BPC; without a development split, the first).
  `each` runs each score (multi-host: on process 0 only)."""
  settings = settings_of(options, config) if options.dynamic_eval else []
  setting = settings[0] if settings else None  # without a development split: the first
  out = {}
  if len(corpus.dev_ids):
    out["dev_bpc"] = each(lambda: scorer.static(corpus.dev_ids))
    shown = f"static {out['dev_bpc']:.4f} BPC"
    if len(settings) > 1:
      setting, out["dynamic_dev_bpc"], out["dynamic_grid"] = choose(
          lambda setting: scorer.dynamic(corpus.dev_ids, setting), settings, each, say)
      shown += f", dynamic {out['dynamic_dev_bpc']:.4f} BPC (chosen: {setting.describe()})"
    elif setting is not None:
      out["dynamic_dev_bpc"] = each(lambda: scorer.dynamic(corpus.dev_ids, setting))
      shown += f", dynamic {out['dynamic_dev_bpc']:.4f} BPC ({setting.describe()})"
    say(f"development split: {shown}")
  if setting is not None:
    out["dynamic"] = setting.to_dict()
  if options.score_tail and corpus.tail_length:
    tail = []  # read once, here, with everything chosen

    def tail_ids():
      if not tail:
        tail.append(corpus.tail_ids())
      return tail[0]
    out["tail_bpc"] = each(lambda: scorer.static(tail_ids()))
    shown = f"static {out['tail_bpc']:.4f} BPC"
    if setting is not None:
      out["dynamic_tail_bpc"] = each(lambda: scorer.dynamic(tail_ids(), setting))
      shown += f", dynamic {out['dynamic_tail_bpc']:.4f} BPC ({setting.describe()})"
    say(f"tail (scored once): {shown}")
  return out


def diverged(summary: dict) -> bool:
  """Whether a dynamic score in `summary` is NaN/Inf."""
  return any(not math.isfinite(summary[k]) for k in ("dynamic_dev_bpc", "dynamic_tail_bpc")
             if summary.get(k) is not None)
