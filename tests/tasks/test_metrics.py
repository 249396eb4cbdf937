"""dncjax.tasks.metrics: the bit-error metric; and the task loss, the masked sigmoid
cross-entropy of dncjax.training.losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax.tasks import metrics
from dncjax.training import losses


def test_loss_is_masked_sigmoid_cross_entropy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 4))
  targets = rng.integers(0, 2, (3, 5, 4)).astype(float)
  mask = np.array([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], float)
  p = 1 / (1 + np.exp(-logits))
  xent = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
  expected = (xent.sum(-1) * mask).sum() / 3
  loss = losses.sigmoid_cross_entropy(jnp.asarray(logits), (targets, mask))
  np.testing.assert_allclose(loss, expected, rtol=1e-12)
  grad = jax.grad(losses.sigmoid_cross_entropy)(jnp.asarray(logits), (targets, mask))
  assert np.all(np.asarray(grad)[mask == 0] == 0) and np.all(np.asarray(grad)[mask == 1] != 0)


def test_bit_errors_hand_worked():
  targets = np.array([[[1, 0, 1], [0, 0, 0], [1, 1, 1]],
                      [[0, 1, 0], [1, 1, 0], [0, 0, 0]]], float)
  logits = np.array([[[2., -1., -3.], [5., 5., 5.], [1., 1., 1.]],     # 1 wrong; 3 unscored
                     [[-1., 1., -1.], [-2., -2., 0.], [9., 9., 9.]]])  # 0 wrong; 2 wrong
  mask = np.array([[1, 0, 1], [1, 1, 0]], float)
  # sequence 0: 1 wrong bit (step 0); sequence 1: 2 wrong bits (step 1; logit 0 means 0)
  assert float(metrics.bit_errors(logits, (targets, mask))) == pytest.approx(1.5)
  np.testing.assert_array_equal(metrics.bit_errors_per_sequence(logits, (targets, mask)), [1, 2])
  assert float(metrics.bit_errors(logits, (targets, np.zeros_like(mask)))) == 0
  assert float(metrics.bit_errors(logits, (targets, np.ones_like(mask)))) == pytest.approx(
      (1 + 3 + 0 + 0 + 2 + 3) / 2)
