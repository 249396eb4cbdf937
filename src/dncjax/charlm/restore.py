"""A trained char-LM back from its workdir (for sampling and evaluation), read-only."""

from __future__ import annotations

import pathlib

import jax

from dncjax.charlm import data
from dncjax.charlm.config import RunConfig
from dncjax.charlm.job import KIND, build_model, evaluated
from dncjax.training import checkpoint, run, train


def restore_trained(workdir: str | pathlib.Path, best: bool = False):
  """(config, model, TrainState, vocab, meta) from the latest (or, with `best`, the best on
  the development split) checkpoint of an alice.py run, its params those the run evaluates
  (their average with --average); nothing in `workdir` is modified.
  A run saved before the development split existed reads as dev_fraction 0
  (`RunConfig.from_json`)."""
  folder = pathlib.Path(workdir) / ("best" if best else "checkpoints")
  if best and not checkpoint.holds_checkpoints(folder) and checkpoint.holds_checkpoints(
      pathlib.Path(workdir) / "checkpoints"):
    raise checkpoint.CheckpointError(f"no best checkpoint in {folder} (one is kept at each "
                                     f"evaluation on the development split; a run without "
                                     f"one keeps none): leave out --best to use the latest "
                                     f"checkpoint")
  if not checkpoint.holds_checkpoints(folder):
    where = f"in {folder}" if folder.is_dir() else f"folder at {folder}"
    raise checkpoint.CheckpointError(f"no checkpoint {where}: train a model there first "
                                     f"(python experiments/alice.py --workdir {workdir})")
  built = {}

  def template(meta):
    config = built["config"] = RunConfig.from_json(meta["config"])
    vocab = built["vocab"] = data.Vocab.from_list(meta["vocab"])
    built["model"], optimizer = build_model(config, vocab.size)
    return {"train": train.init_train_state(built["model"], optimizer, jax.random.key(0),
                                            config.data.batch_size),
            "rng": checkpoint.key_to_array(jax.random.key(0))}

  step, meta, restored = run.restore_latest(folder, KIND, template)
  ts = evaluated(restored["train"])  # the averaged parameters of a run with --average
  return built["config"], built["model"], ts, built["vocab"], {**meta, "step": step}


def restore_for_sampling(workdir: str | pathlib.Path, best: bool = False):
  """(model, params, vocab, meta) from the latest (or best on the development split)
  checkpoint."""
  _, model, ts, vocab, meta = restore_trained(workdir, best)
  return model, ts.params, vocab, meta
