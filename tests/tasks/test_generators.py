"""dncjax.tasks.generators: the shapes of each task's batches, determinism, what each
task asks for, and refused task configs."""

import numpy as np
import pytest

from dncjax.tasks import generators

CONFIGS = [generators.TaskConfig("copy", bits=5, min_length=1, max_length=6),
           generators.TaskConfig("repeat_copy", bits=4, min_length=2, max_length=4, max_repeats=3),
           generators.TaskConfig("associative_recall", bits=3, min_length=2, max_length=5,
                            item_length=2)]


def draw(config, seed=0, batch_size=64):
  return generators.sample(config, np.random.default_rng(seed), batch_size)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_shapes_and_determinism(config):
  seqs = draw(config)
  B, T = 64, config.time_steps
  assert seqs.inputs.shape == (B, T, config.input_size)
  assert seqs.targets.shape == (B, T, config.output_size)
  assert seqs.mask.shape == (B, T)
  assert all(a.dtype == np.float32 for a in seqs)
  assert all(np.array_equal(a, b) for a, b in zip(seqs, draw(config)))
  assert not np.array_equal(seqs.inputs, draw(config, seed=1).inputs)
  assert np.all(seqs.targets[seqs.mask == 0] == 0)  # nothing to predict off the answer phase
  assert seqs.mask[:, -1].any()                      # the longest sequence fills T


def test_copy_answer_is_the_input():
  config = CONFIGS[0]
  seqs, bits = draw(config), config.bits
  lengths = set()
  for x, y, m in zip(*seqs):
    (delimiter,) = np.flatnonzero(x[:, bits])
    L = int(delimiter)
    lengths.add(L)
    assert np.array_equal(np.flatnonzero(m), np.arange(L + 1, 2 * L + 1))
    assert np.array_equal(y[L + 1:2 * L + 1], x[:L, :bits])
    assert not x[L + 1:].any() and not x[:L, bits].any()
  assert lengths == set(range(config.min_length, config.max_length + 1))


def test_repeat_copy_repeats_then_ends():
  config = CONFIGS[1]
  seqs, bits = draw(config), config.bits
  repeats = set()
  for x, y, m in zip(*seqs):
    (L,) = np.flatnonzero(x[:, bits])
    n = round(x[L, bits + 1] * config.max_repeats)
    repeats.add(n)
    end = L + 1 + n * L
    assert np.array_equal(np.flatnonzero(m), np.arange(L + 1, end + 1))
    assert np.array_equal(y[L + 1:end, :bits], np.tile(x[:L, :bits], (n, 1)))
    assert np.array_equal(np.flatnonzero(y[:, bits]), [end])
  assert repeats == {1, 2, 3}


def test_associative_recall_answers_the_next_item():
  config = CONFIGS[2]
  seqs, bits, m = draw(config), config.bits, config.item_length
  for x, y, mask in zip(*seqs):
    starts = np.flatnonzero(x[:, bits]) + 1  # each item follows its delimiter
    items = [x[s:s + m, :bits] for s in starts]
    q0, q1 = np.flatnonzero(x[:, bits + 1])  # the query sits between two query delimiters
    assert q1 - q0 == m + 1 and q0 == starts[-1] + m
    query = x[q0 + 1:q1, :bits]
    (k,) = [i for i, item in enumerate(items) if np.array_equal(item, query)]
    assert k < len(items) - 1
    assert np.array_equal(np.flatnonzero(mask), np.arange(q1 + 1, q1 + 1 + m))
    assert np.array_equal(y[q1 + 1:q1 + 1 + m], items[k + 1])


def test_bad_task_configs():
  for kwargs, text in [(dict(name="sort"), "unknown task"), (dict(bits=0), "bits"),
                       (dict(min_length=5, max_length=4), "min_length 5 > max_length 4"),
                       (dict(name="associative_recall", min_length=1), "min_length >= 2")]:
    with pytest.raises(ValueError, match=text):
      generators.TaskConfig(**kwargs)
