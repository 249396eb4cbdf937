"""The orbax wrapper: round trip of a TrainState, replacing a step, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dncjax
from dncjax import checkpoint, train


def test_train_state_round_trip_and_step_replacement(tmp_path):
  model = dncjax.make_model("seed_dnc", 5, 5, hidden=4, memory_size=3, word_size=2)
  opt = train.make_optimizer(train.OptimizerConfig(clip_norm=1.0))
  ts = train.init_train_state(model, opt, jax.random.key(0), 2)
  ckpts = checkpoint.Checkpoints(tmp_path / "c", keep=2)
  ckpts.save(3, {"train": ts}, {"note": "first"})
  moved = ts._replace(params=jax.tree.map(lambda a: a + 1, ts.params))
  ckpts.save(3, {"train": moved}, {"note": "second"})  # a step left by a killed run
  ckpts.close()
  again = checkpoint.Checkpoints(tmp_path / "c", create=False)
  assert again.restore_meta() == (3, {"note": "second"})
  restored = again.restore_state(3, {"train": ts})["train"]
  assert jax.tree.structure(restored) == jax.tree.structure(ts)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(moved)):
    np.testing.assert_array_equal(a, b)


def test_missing_folder_and_step_are_clear_errors(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint folder"):
    checkpoint.Checkpoints(tmp_path / "none", create=False)
  ckpts = checkpoint.Checkpoints(tmp_path / "empty")
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint in"):
    ckpts.restore_meta()
  ckpts.save(1, {"x": jnp.ones(2)}, {})
  ckpts.wait()
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint for step 7"):
    ckpts.restore_meta(7)


def test_prng_key_round_trip():
  key = jax.random.key(42)
  again = checkpoint.array_to_key(checkpoint.key_to_array(key))
  assert np.array_equal(jax.random.normal(key, (3,)), jax.random.normal(again, (3,)))
