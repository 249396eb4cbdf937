"""Choosing a task run's parameters on a held-out length (dncjax.tasks.selection): the kept
parameters are those with the fewest held-out bit errors (a tie: the lower held-out loss)
and best/ holds them; the test
sets, drawn apart from every other set, are scored once at the end and take part in no
choice; a resumed run chooses and tests as an uninterrupted one; bad settings are refused
in one line; each member of a population (--seeds K) does all of it as its single run, and a
resumed population as an uninterrupted one."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dncjax.commands import tasks as command
from dncjax.tasks import generators, job as tasks, metrics, selection

REPO = pathlib.Path(__file__).resolve().parents[2]

TINY = ["--hidden", "8", "--memory_size", "6", "--word_size", "4", "--read_heads", "1",
        "--bits", "3", "--max_length", "3", "--batchsize", "4", "--eval_sequences", "8",
        "--report_interval", "2", "--eval_every", "2", "--optimizer", "adam", "--lr", "0.03",
        "--fp64", "--select_length", "5"]
TESTS = ["--test_length", "4", "7", "--test_memory_size", "9"]
STEPS = 10


def run(workdir, *extra):
  return command.main(["--workdir", str(workdir), *TINY, *extra])


def records(workdir, key):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [(r["step"], r[key]) for r in map(json.loads, lines) if key in r]


def results(workdir) -> dict:
  return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("selected")
  run(workdir, "--steps", str(STEPS), *TESTS)
  return workdir


@pytest.mark.slow
def test_the_kept_parameters_have_the_fewest_held_out_errors(straight):
  held_out = records(straight, "select_len5_bit_errors")
  assert [s for s, _ in held_out] == list(range(2, STEPS + 1, 2))
  assert len({e for _, e in held_out}) > 1  # the choice is not a tie
  losses = dict(records(straight, "select_len5_loss"))
  best, first = min((e, losses[s], s) for s, e in held_out)[0::2]
  got = results(straight)
  assert (got["selected_step"], got["selected_bit_errors"], got["select_length"]) == (
      first, best, 5)
  assert got["selected_loss"] == losses[first]
  model, params, config, step = tasks.restore(straight, "best")
  assert step == first and model.config.memory_size == 6
  # the selected test scores are best/'s parameters on the test sets, on 9 slots
  evaluate = selection.test_evaluate(model.config, 9)
  for length in (4, 7):
    seqs = selection.test_sets(config.task, config.seed, [length], 8)[f"test_len{length}"]
    scores = evaluate(params, metrics.to_batch(seqs, "float64"))
    assert got[f"selected_test_len{length}_loss"] == float(scores["loss"])
    last = evaluate(tasks.restore(straight)[1], metrics.to_batch(seqs, "float64"))
    assert got[f"test_len{length}_loss"] == float(last["loss"])
  assert got["test_memory_size"] == 9


@pytest.mark.slow
def test_the_test_sets_take_part_in_no_choice(straight, tmp_path):
  run(tmp_path, "--steps", str(STEPS))  # no test sets
  for key in ("train_loss", "eval_loss", "select_len5_loss"):
    assert records(tmp_path, key) == records(straight, key)
  got, with_tests = results(tmp_path), results(straight)
  assert got["selected_step"] == with_tests["selected_step"]
  assert not any(k.startswith(("test_", "selected_test_")) for k in got)
  task = generators.TaskConfig("copy", bits=3, max_length=3)
  held_out = selection.select_sets(task, 0, 5, 8)["select_len5"]
  test = selection.test_sets(task, 0, [5], 8)["test_len5"]
  assert not np.array_equal(held_out.inputs, test.inputs)


@pytest.mark.slow
def test_a_resumed_run_chooses_and_tests_as_an_uninterrupted_one(straight, tmp_path):
  run(tmp_path, "--steps", "4")
  run(tmp_path, "--steps", str(STEPS), "--resume")
  run(tmp_path, "--steps", str(STEPS), "--resume", *TESTS)  # tests only, best/ read back
  got, want = results(tmp_path), results(straight)
  tested = [k for k in want if k.startswith(("selected_", "test_"))]
  assert len(tested) > 10 and {k: got[k] for k in tested} == {k: want[k] for k in tested}
  with pytest.raises(tasks.checkpoint.CheckpointError, match="chosen at length 5"):
    run(tmp_path, "--steps", str(STEPS + 2), "--resume", "--select_length", "6")


@pytest.fixture(scope="module")
def population(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("population")
  run(workdir, "--steps", str(STEPS), "--seeds", "2", *TESTS)
  return workdir


@pytest.mark.slow
def test_each_member_of_a_population_chooses_and_tests_as_its_single_run(straight, population):
  member = population / "seed0"  # straight is seed 0's single run
  got, want = results(member), results(straight)
  chosen = [k for k in want if k.startswith(("select", "test_"))]
  assert len(chosen) > 10 and got["selected_step"] == want["selected_step"]
  for key in chosen:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)
  assert records(member, "select_len5_bit_errors") == records(straight, "select_len5_bit_errors")
  for seed in (0, 1):
    _, _, config, step = tasks.restore(population / f"seed{seed}", "best")
    assert (config.seed, step) == (seed, results(population / f"seed{seed}")["selected_step"])
  assert results(population / "seed1")["selected_test_len7_loss"] != got["selected_test_len7_loss"]


@pytest.mark.slow
def test_a_resumed_population_chooses_and_tests_as_an_uninterrupted_one(population, tmp_path):
  run(tmp_path, "--steps", "4", "--seeds", "2")
  run(tmp_path, "--steps", str(STEPS), "--seeds", "2", "--resume", *TESTS)
  for seed in (0, 1):
    got, want = results(tmp_path / f"seed{seed}"), results(population / f"seed{seed}")
    chosen = [k for k in want if k.startswith(("select", "test_"))]
    assert len(chosen) > 10 and {k: got[k] for k in chosen} == {k: want[k] for k in chosen}
    assert tasks.restore(tmp_path / f"seed{seed}", "best")[3] == want["selected_step"]


def test_fewer_errors_win_and_a_tie_goes_to_the_lower_loss(tmp_path):
  chosen = selection.Selection(tmp_path, 5)
  evaluations = [(1, 3.0, 0.9), (2, 1.0, 0.8), (3, 1.0, 0.5), (4, 1.0, 0.6), (5, 2.0, 0.1),
                 (6, 0.0, 0.7), (7, float("nan"), 0.0), (8, 0.0, float("nan"))]
  kept = [s for s, errors, loss in evaluations if chosen.consider(f"state{s}", s, errors, loss)]
  assert kept == [1, 2, 3, 6] and chosen.state == "state6"
  assert chosen.record == {"length": 5, "bit_errors": 0.0, "loss": 0.7, "step": 6}
  chosen.take_up({"length": 5, "bit_errors": 0.0, "step": 9}, resume=False)  # no "loss" kept
  assert chosen.consider("state10", 10, 0.0, 5.0) and chosen.record["step"] == 10
  chosen.close()


def test_bad_settings_are_refused_in_one_line(tmp_path):
  with pytest.raises(ValueError, match="--select_length must be a positive integer, got 0"):
    run(tmp_path, "--select_length", "0")
  with pytest.raises(ValueError, match="--test_length must be positive, got \\[4, 0\\]"):
    run(tmp_path, "--test_length", "4", "0")
  done = subprocess.run([sys.executable, str(REPO / "experiments" / "tasks.py"), "--workdir",
                         str(tmp_path / "lstm"), "--model", "lstm", "--test_memory_size", "8"],
                        capture_output=True, text=True)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
      "error: --test_memory_size 8: the model LSTMConfig has no memory slots"]
  assert not (tmp_path / "lstm" / "checkpoints").exists()
