"""dncjax.charlm.ngram: the count model's predictions are distributions, equal interpolated
Kneser-Ney by hand on a small text, and counting as it scores is counting the text before
each character afresh."""

import math

import numpy as np
import pytest

from dncjax.charlm import ngram

TEXT = "abracadabra arbadacarba abracadabra"


def _ids(text: str, alphabet: str) -> np.ndarray:
  return np.array([alphabet.index(c) for c in text])


@pytest.mark.parametrize("order, discount", [(0, 0.5), (1, 0.75), (2, 0.9), (5, 0.6)])
def test_every_prediction_is_a_distribution_over_the_alphabet(order, discount):
  alphabet = "abcdrx "  # 'x' never occurs: only the uniform distribution gives it mass
  model = ngram.NGram(order, len(alphabet)).count(TEXT[:20])
  for t in (0, 1, 3, 20, 27, len(TEXT) - 1):
    total = sum(math.exp(-model.loss(TEXT[:t] + c, t, (discount,))[0]) for c in alphabet)
    assert total == pytest.approx(1.0, abs=1e-12), t


def test_a_prediction_equals_kneser_ney_by_hand():
  model = ngram.NGram(1, 5).count("abracadabra")  # alphabet a b c d r
  loss = lambda text: model.loss(text, 1, (0.5,))[0]
  # order 1 after "a": b 2, c 1, d 1 (n 4, t 3). Order 0 counts the distinct characters
  # before each: a 4 (the text's start, r, c, d), b, c, d, r 1 each (n 8, t 5), so
  # p0(c) = (0.5 + 0.5 * 5 / 5) / 8 = 1/8 and p0(a) = (3.5 + 0.5) / 8 = 1/2.
  p0_c, p0_a = 1 / 8, 1 / 2
  assert loss("a" + "c") == pytest.approx(-math.log((0.5 + 1.5 * p0_c) / 4))
  assert loss("a" + "r") == pytest.approx(-math.log(1.5 * p0_c / 4))
  assert loss("a" + "a") == pytest.approx(-math.log(1.5 * p0_a / 4))
  assert loss("x" + "a") == pytest.approx(-math.log(p0_a))  # context never seen


@pytest.mark.parametrize("order", [1, 3])
def test_adapting_is_counting_the_text_before_each_character(order):
  alphabet = "abcdr "
  ids = _ids(TEXT, alphabet)
  counted, split = ids[:12], ids[12:]
  adapted = ngram.split_nll(counted, counted, split, order, len(alphabet), (0.7,), adapt=True)
  fixed = ngram.split_nll(counted, counted, split, order, len(alphabet), (0.7,), adapt=False)
  assert adapted.shape == fixed.shape == (1, len(split) - 1)
  text = ngram.as_text(ids)
  static = ngram.NGram(order, len(alphabet)).count(text[:12])
  for t in range(1, len(split)):  # a model counting afresh all that precedes split[t]
    fresh = ngram.NGram(order, len(alphabet)).count(text[:12 + t])
    assert adapted[0, t - 1] == pytest.approx(fresh.loss(text, 12 + t, (0.7,))[0], rel=1e-12)
    assert fixed[0, t - 1] == pytest.approx(static.loss(text, 12 + t, (0.7,))[0], rel=1e-12)


@pytest.mark.parametrize("adapt", [False, True])
def test_several_discounts_in_one_pass_equal_each_alone(adapt):
  ids = _ids(TEXT, "abcdr ")
  together = ngram.split_nll(ids[:12], ids[:12], ids[12:], 3, 6, (0.3, 0.6, 0.9), adapt)
  for row, discount in zip(together, (0.3, 0.6, 0.9)):
    alone = ngram.split_nll(ids[:12], ids[:12], ids[12:], 3, 6, (discount,), adapt)[0]
    np.testing.assert_array_equal(row, alone)
  assert not np.array_equal(together[0], together[2])


def test_contexts_at_a_split_start_come_from_the_text_before_it():
  ids = _ids(TEXT, "abcdr ")
  with_before = ngram.split_nll(ids[:12], ids[:12], ids[12:], 3, 6, (0.7,), adapt=False)[0]
  other = ngram.split_nll(ids[:12], _ids("dbr", "abcdr "), ids[12:], 3, 6, (0.7,),
                          adapt=False)[0]
  # split[1] = 'r' follows "a a" (never seen) or "bra" (seen, followed by c and ' ')
  assert with_before[0] != other[0] and np.array_equal(with_before[2:], other[2:])


@pytest.mark.parametrize("order", [-1, ngram.MAX_ORDER + 1])
def test_an_order_out_of_range_names_the_flag(order):
  with pytest.raises(ValueError, match=f"--ngram_order must be between 0 and 32, got {order}"):
    ngram.check_order(order)


@pytest.mark.parametrize("discount", [0.0, 1.0, float("nan")])
def test_a_discount_out_of_range_names_the_flag(discount):
  with pytest.raises(ValueError, match=r"--ngram_discount must be in \(0, 1\)"):
    ngram.check_discount(discount)
