"""dncjax.charlm.memory_use and experiments/memory_use.py: each ablation takes away only
the memory (a DNC that ignores its reads scores the same under all of them, one that
uses them does not), the age of what is read, and the command end to end (its "trained"
BPC is the run's own development BPC; a model without memory is refused in one line)."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from dncjax import configs, models
from dncjax.charlm import memory_use
from dncjax.commands import alice
from dncjax.commands import memory_use as command

REPO = pathlib.Path(__file__).resolve().parents[2]


def tiny_dnc(vocab: int = 7):
  config = configs.model_config("dnc", {"hidden": 6, "memory_size": 5, "word_size": 3,
                                        "read_heads": 2, "init_scale": 0.5})
  model = models.build(dataclasses.replace(config, input_size=vocab, output_size=vocab))
  return model, model.init(jax.random.key(0))


def test_the_ablations_take_away_only_the_memory():
  model, params = tiny_dnc()
  ids = np.random.default_rng(0).integers(0, 7, 60).astype(np.int32)
  used = memory_use.ablation_bpcs(model, params, ids, seq_length=10)
  assert set(used) == {"trained", *memory_use.ABLATIONS}
  assert all(abs(used[how] - used["trained"]) > 1e-6 for how in memory_use.ABLATIONS)
  # the reads reach neither the controller nor the output: nothing to take away
  blind = {**params, "Wrh": 0 * params["Wrh"], "Wry": 0 * params["Wry"]}
  unused = memory_use.ablation_bpcs(model, blind, ids, seq_length=10)
  assert all(unused[how] == unused["trained"] for how in memory_use.ABLATIONS)
  with pytest.raises(ValueError, match="unknown ablation 'all'"):
    memory_use.ablated(model, "all")


def test_the_age_of_what_is_read():
  write = np.zeros((4, 3))
  write[0, 0] = 1.0  # slot 0 written whole at t = 0
  write[1, 1] = 0.5  # half of slot 1 at t = 1
  read = np.zeros((4, 2, 3))
  read[3, 0, 0] = 1.0  # head 1 reads slot 0 at t = 3: written 3 steps ago
  read[1, 1, 1] = 2.0  # head 2 reads slot 1 at t = 1: half new, half aged 2 steps
  ages = memory_use.read_ages(write, read)
  assert ages[3, 0] == pytest.approx(3.0) and ages[1, 1] == pytest.approx(1.0)
  assert np.isnan(ages[0, 1])  # reads nothing


@pytest.mark.slow
def test_the_command_end_to_end(text_file, tmp_path):
  workdir = tmp_path / "dnc"
  alice.main(["--data", str(text_file), "--workdir", str(workdir), "--model", "dnc",
              "--hidden", "8", "--memory_size", "6", "--word_size", "4", "--read_heads", "2",
              "--batchsize", "2", "--seqlength", "8", "--steps", "4", "--eval_every", "4",
              "--sample_length", "0", "--no-dynamic_eval", "--fp64"])
  assert command.main(["--workdir", str(workdir), "--best", "--chars", "50",
                       "--excerpt", "30"]) == 0
  found = json.loads((workdir / "memory_use.json").read_text())
  best = json.loads((workdir / "results.json").read_text())["best_dev_bpc"]
  assert found["dev_bpc"]["trained"] == pytest.approx(best, rel=1e-9)
  assert found["trace"]["steps"] == 50 and len(found["trace"]["read_modes"]) == 2
  assert all(sum(m.values()) == pytest.approx(1.0) for m in found["trace"]["read_modes"])
  assert (workdir / "memory_use.png").stat().st_size > 0
  lstm = tmp_path / "lstm"
  alice.main(["--data", str(text_file), "--workdir", str(lstm), "--model", "lstm",
              "--hidden", "8", "--batchsize", "2", "--seqlength", "8", "--steps", "2",
              "--eval_every", "2", "--sample_length", "0", "--no-dynamic_eval", "--no-score_tail"])
  done = subprocess.run([sys.executable, str(REPO / "experiments" / "memory_use.py"),
                         "--workdir", str(lstm)], capture_output=True, text=True)
  assert done.returncode == 2, done.stderr
  assert done.stderr.strip().splitlines() == [
      f"error: --workdir {lstm}: model lstm has no memory"]
