"""A count model of the text for ensembles: a character n-gram model with interpolated
Kneser-Ney smoothing (Kneser & Ney 1995; Chen & Goodman 1999).

The model predicts a character c after the context h (its last K characters, K the order)
by interpolating orders K, K - 1, ..., 0 down to the uniform distribution over the V
characters, with one absolute discount D in (0, 1):

  p_k(c | h) = max(n_k(h c) - D, 0) / n_k(h .) + D t_k(h) / n_k(h .) p_{k-1}(c | h'),

h' being h without its first character, t_k(h) the number of distinct characters c with
n_k(h c) > 0, and p_{-1}(c) = 1 / V. At the highest order n_K counts how often h c
occurred; below it n_k counts the distinct characters seen just before h c (the
continuation counts that make Kneser-Ney's lower orders estimate how likely c is to follow
a context it has not yet been seen in). A context never seen passes the lower order's
estimate on. Counting each character once it has been predicted (`adapt`) makes the model
learn from the text it scores, as dynamic evaluation does for a network; without it the
counts stay those it was given.
"""

from __future__ import annotations

import math

import numpy as np

MAX_ORDER = 32
DISCOUNTS = (0.6, 0.75, 0.9)  # the discounts an ensemble chooses among by default


def check_order(order: int, flag: str = "--ngram_order") -> None:
  """ValueError naming `flag` unless 0 <= order <= MAX_ORDER."""
  if not 0 <= order <= MAX_ORDER:
    raise ValueError(f"{flag} must be between 0 and {MAX_ORDER}, got {order}")


def check_discount(discount: float, flag: str = "--ngram_discount") -> None:
  """ValueError naming `flag` unless 0 < discount < 1."""
  if not 0 < discount < 1:
    raise ValueError(f"{flag} must be in (0, 1), got {discount}")


def as_text(ids) -> str:
  """Character ids as a string (one code point each), so contexts are hashable slices."""
  return "".join(map(chr, np.asarray(ids, dtype=np.int64).tolist()))


class NGram:
  """The counts of an interpolated Kneser-Ney model of `order` over `vocab_size`
  characters (the counts do not depend on the discount, which each prediction is given)."""

  def __init__(self, order: int, vocab_size: int):
    check_order(order, "order")
    self.order, self.vocab_size = order, vocab_size
    self.tables = [{} for _ in range(order + 1)]  # by k: h -> [{c: n_k(h c)}, n_k(h .)]

  def _bump(self, k: int, context: str, c: str) -> bool:
    """n_k(context c) += 1; whether it was 0."""
    entry = self.tables[k].setdefault(context, [{}, 0])
    n = entry[0].get(c, 0)
    entry[0][c], entry[1] = n + 1, entry[1] + 1
    return n == 0

  def _add(self, text: str, t: int) -> None:
    # n_K(h c) counts occurrences; the first occurrence of h c at order k is one more
    # distinct character before h' c, which order k - 1 counts, and so on down. The
    # first K characters of a text, with shorter contexts, start at the longest they have.
    k = min(self.order, t)
    while k >= 0 and self._bump(k, text[t - k:t], text[t]):
      k -= 1

  def count(self, text: str, start: int = 0) -> NGram:
    """Counts text[t] after its contexts, for every t >= start."""
    for t in range(start, len(text)):
      self._add(text, t)
    return self

  def loss(self, text: str, t: int, discounts) -> list[float]:
    """-log p(text[t] | text[:t]) in nats under each of the `discounts`."""
    c, ps = text[t], [1.0 / self.vocab_size] * len(discounts)
    for k in range(min(self.order, t) + 1):
      entry = self.tables[k].get(text[t - k:t])
      if entry is None:
        break
      follow, n = entry
      seen, distinct = follow.get(c, 0), len(follow)
      ps = [(max(seen - d, 0) + d * distinct * p) / n for d, p in zip(discounts, ps)]
    return [-math.log(p) for p in ps]

  def losses(self, text: str, start: int, discounts, adapt: bool) -> np.ndarray:
    """The loss (nats) of each text[t], t >= start, given text[:t] (contexts reach back
    before `start`), under each of the `discounts`: [len(discounts), len(text) - start];
    with `adapt`, each character is counted once it has been predicted."""
    out = np.empty((len(discounts), len(text) - start))
    for t in range(start, len(text)):
      out[:, t - start] = self.loss(text, t, discounts)
      if adapt:
        self._add(text, t)
    return out


def split_nll(counted: np.ndarray, before: np.ndarray, ids: np.ndarray, order: int,
              vocab_size: int, discounts, adapt: bool) -> np.ndarray:
  """The loss (nats) of each character of the split `ids` after its first (as a network's
  per-character losses are) under a model of `order` given the counts of the text
  `counted`, one row per discount of `discounts` (one pass: the counts are shared); the
  contexts at the split's start come from the text `before` it; with `adapt` the model
  counts the split's characters as it goes (the first, not predicted, before the rest)."""
  for discount in discounts:
    check_discount(discount, "discount")
  model = NGram(order, vocab_size).count(as_text(counted))
  head = np.asarray(before)[max(len(before) - order, 0):]
  text = as_text(np.concatenate([head, ids]))
  if adapt:
    model.count(text[:len(head) + 1], len(head))
  return model.losses(text, len(head) + 1, discounts, adapt)
