"""Tests for dncjax.charlm.batches: the seed's training lanes (windows, resets, stride,
determinism and resumption) and the windows that score a split."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from dncjax.charlm import batches, data


def test_ids_too_short():
  with pytest.raises(data.DataError, match="fewer than the 7"):
    batches.lane_batcher(np.zeros(6, np.int32), 2, 5)
  with pytest.raises(data.DataError, match="fewer than the 6"):
    batches.validation_windows(np.zeros(5, np.int32), 5)


# ------------------------------------------------------------------- lane batching


def take(batcher, state, count):
  taken = []
  for _ in range(count):
    state, batch = batcher.next(state)
    taken.append(batch)
  return state, taken


def test_lane_windows_resets_and_stride():
  n, B, S = 40, 6, 5
  ids = np.arange(n, dtype=np.int32)  # id == position, so a window shows where it read
  batcher = batches.lane_batcher(ids, B, S, overlap=0.5)
  assert batcher.stride == 2
  state = batcher.init(seed=3)
  rng = np.random.Generator(np.random.PCG64(3))  # one generator kept for the whole run
  previous = None
  for step in range(200):
    pointers = np.asarray(state.pointers, np.int64)
    state, batch = batcher.next(state)
    assert batch.inputs.shape == batch.targets.shape == (B, S) and batch.reset.shape == (B,)
    assert batch.inputs.dtype == batch.targets.dtype == np.int32 and batch.reset.dtype == bool
    start = batch.inputs[:, 0]
    np.testing.assert_array_equal(batch.inputs, start[:, None] + np.arange(S))
    np.testing.assert_array_equal(batch.targets, batch.inputs + 1)
    expected_reset = (pointers + S + 1 >= n) | (step == 0)  # the seed's rule
    np.testing.assert_array_equal(batch.reset, expected_reset)
    np.testing.assert_array_equal(  # reset lanes restart at rng.integers(0, n - 1 - S)
        start[batch.reset], rng.integers(0, n - 1 - S, size=batch.reset.sum()))
    if previous is not None:
      np.testing.assert_array_equal(start[~batch.reset], previous[~batch.reset] + 2)
    assert batch.targets.max() <= n - 2  # as the seed: never the last character
    previous = start
    np.testing.assert_array_equal(state.pointers, start + 2)


def test_batches_never_read_the_development_split_or_the_tail(tmp_path):
  text = (("the quick brown fox jumps over the lazy dog. " * 8).encode() + b"0123456789" * 4
          + b"ABCDEFGHIJ" * 4)
  (tmp_path / "t.txt").write_bytes(text)
  fraction = 40 / len(text) + 1e-9
  corpus = data.load_corpus(tmp_path / "t.txt", val_fraction=fraction, seq_length=7,
                            dev_fraction=fraction)
  assert corpus.vocab.decode(corpus.dev_ids) == "0123456789" * 4
  assert corpus.vocab.decode(corpus.tail_ids()) == "ABCDEFGHIJ" * 4
  held_out = corpus.vocab.encode("0123456789ABCDEFGHIJ")
  batcher = batches.lane_batcher(corpus.train_ids, 8, 7, overlap=2 / 3)
  _, taken = take(batcher, batcher.init(0), 300)
  seen = np.concatenate([np.concatenate([b.inputs, b.targets]) for b in taken])
  assert not np.isin(seen, held_out).any() and sum(b.reset.sum() for b in taken) > 8


def test_stride_from_overlap():
  ids = np.zeros(100, np.int32)
  assert batches.lane_batcher(ids, 1, 25).stride == 25
  assert batches.lane_batcher(ids, 1, 25, overlap=2 / 3).stride == 25 // 3
  assert batches.lane_batcher(ids, 1, 20, overlap=0.9).stride == 2
  assert batches.lane_batcher(ids, 1, 3, overlap=0.9).stride == 1
  with pytest.raises(ValueError, match="overlap"):
    batches.lane_batcher(ids, 1, 5, overlap=1.0)
  with pytest.raises(ValueError, match="batch_size"):
    batches.lane_batcher(ids, 0, 5)


def same(batches_a, batches_b):
  return len(batches_a) == len(batches_b) and all(
      all(np.array_equal(x, y) for x, y in zip(a, b)) for a, b in zip(batches_a, batches_b))


def test_deterministic_and_resumable(alice_file):
  corpus = data.load_corpus(alice_file)
  batcher = batches.lane_batcher(corpus.train_ids, 16, 25)
  _, straight = take(batcher, batcher.init(7), 400)
  assert same(take(batcher, batcher.init(7), 400)[1], straight)
  assert not same(take(batcher, batcher.init(8), 400)[1], straight)
  half, first = take(batcher, batcher.init(7), 200)
  saved = json.loads(json.dumps(half.to_dict()))
  fresh = batches.lane_batcher(corpus.train_ids, 16, 25)
  _, rest = take(fresh, batches.LaneState.from_dict(saved), 200)
  assert same(first + rest, straight)
  as_jax = type(half)(*(jnp.asarray(x) for x in half))  # as a checkpoint restores it
  assert same(first + take(fresh, as_jax, 200)[1], straight)
  assert sum(b.reset.sum() for b in straight[1:]) > 0  # resets happened after step 0


def test_resume_at_every_step():
  batcher = batches.lane_batcher(np.arange(40, dtype=np.int32), 3, 5, overlap=0.5)
  _, straight = take(batcher, batcher.init(11), 40)
  for k in range(40):  # many resets, so the generator's buffered 32-bit half matters too
    state, first = take(batcher, batcher.init(11), k)
    restored = batches.LaneState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert same(first + take(batcher, restored, 40 - k)[1], straight), k


# -------------------------------------------------------------- validation windows


@pytest.mark.parametrize("L, S, lanes", [(26, 5, 1), (27, 5, 1), (100, 7, 3), (12, 4, 8)])
def test_validation_covers_every_transition_once(L, S, lanes):
  ids = np.random.default_rng(0).integers(0, 50, L).astype(np.int32)
  windows = list(batches.validation_windows(ids, S, lanes))
  assert all(b.inputs.shape == b.targets.shape == m.shape == (lanes, S) for b, m in windows)
  masks = np.stack([m for _, m in windows])  # [K, b, S]
  assert masks.dtype == np.float32 and masks.sum() == L - 1
  np.testing.assert_array_equal([b.reset for b, _ in windows],
                                [[k == 0] * lanes for k in range(len(windows))])
  inputs, targets = [], []
  for j in range(lanes):  # lane j's chunk, read window after window, continues lane j - 1's
    for b, m in windows:
      inputs += b.inputs[j][m[j] > 0].tolist()
      targets += b.targets[j][m[j] > 0].tolist()
      assert (b.inputs[j][m[j] == 0] == 0).all()
  assert inputs == ids[:-1].tolist() and targets == ids[1:].tolist()


def test_alice_development_windows(alice_file):
  corpus = data.load_corpus(alice_file)
  windows = list(batches.validation_windows(corpus.dev_ids, 25))
  assert len(windows) == -(-14_847 // 25) == 594
  assert sum(m.sum() for _, m in windows) == 14_847
  assert list(batches.validation_windows(np.zeros(0, np.int32), 25)) == []
