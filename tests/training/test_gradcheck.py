"""Gradient check of every model (float64), and proof that the check can fail."""

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dncjax
from dncjax.models import core
from dncjax.training import gradcheck, losses, train

REPO = pathlib.Path(__file__).resolve().parents[2]

SMALL = dict(hidden=5, init_scale=0.5, dtype="float64")
MODELS = [("rnn", {}), ("lstm", {}), ("lstm", {"variant": "textbook"}),
          ("seed_dnc", {"addressing": "location", "memory_size": 4, "word_size": 3}),
          ("seed_dnc", {"addressing": "content", "memory_size": 4, "word_size": 3}),
          ("dnc", {"memory_size": 4, "word_size": 3, "read_heads": 2})]
DNC = dict(hidden=5, memory_size=4, word_size=3, read_heads=2, init_scale=0.5, dtype="float64")


@pytest.mark.slow
@pytest.mark.parametrize("name, hyper", MODELS)
def test_every_parameter_passes(name, hyper):
  model = dncjax.make_model(name, 6, 6, **SMALL, **hyper)
  rows = gradcheck.check_model(model, batch_size=2, seq_length=6, num_checks=6)
  assert {r.name for r in rows} == set(model.init(jax.random.key(0)))
  assert all(r.valid > 0 for r in rows if r.name != "Wxh"), gradcheck.format_table(rows)
  assert gradcheck.max_error(rows) < 1e-4, gradcheck.format_table(rows)
  assert all(r.valid == r.checks for r in rows), gradcheck.format_table(rows)
  assert gradcheck.verdict(rows, 1e-4)[0], gradcheck.format_table(rows)


@pytest.mark.slow
def test_dnc_starts_from_a_state_it_reaches():
  model = dncjax.make_model("dnc", 6, 6, **DNC)
  params, states, batch = gradcheck.check_setup(model, batch_size=3, seq_length=6)
  acc = jax.tree.map(np.asarray, states.access)
  assert not batch.reset.any()
  assert np.all(acc.usage >= 0) and np.all(acc.usage <= 1)
  for w in (acc.read_weights, acc.write_weights, acc.precedence):
    assert np.all(w >= 0) and np.all(w.sum(-1) <= 1 + 1e-12)
  assert np.all(np.diagonal(acc.link, axis1=-2, axis2=-1) == 0) and np.all(acc.link >= 0)
  assert acc.usage.max() > 0 and np.abs(acc.memory).max() > 0 and acc.link.max() > 0
  loss = train.window_loss(model, losses.softmax_cross_entropy, params, states, batch)[0]
  assert np.isfinite(loss)


@pytest.mark.slow
def test_seed_dnc_memory_breaks_the_slot_symmetry():
  """From M = 0 content addressing keeps every row of M alike and W_hw, W_hr get no
  gradient; check_setup's start memory has distinct rows, so they are checked."""
  model = dncjax.make_model("seed_dnc", 6, 6, **SMALL, memory_size=4, word_size=3)
  _, states, _ = gradcheck.check_setup(model, batch_size=2, seq_length=4)
  memory = np.asarray(states.memory)
  assert np.abs(memory[:, 1:] - memory[:, :1]).min(axis=(1, 2)).min() > 0
  zero = core.batch_initial_state(model, 2)
  rows = gradcheck.check_model(model, batch_size=2, seq_length=4, num_checks=3, states=zero)
  silent = {r.name for r in rows if r.valid < r.checks}
  assert silent == {"Whw", "Whr"}, gradcheck.format_table(rows)
  ok, reason = gradcheck.verdict(rows, 1e-4)
  assert not ok and "carry signal" in reason and np.isinf(gradcheck.max_error(rows))


def test_a_wrong_gradient_is_caught():
  @jax.custom_vjp
  def cube(x):
    return x ** 3

  cube.defvjp(lambda x: (x ** 3, x), lambda x, g: (2.0 * x ** 2 * g,))  # wrong: 3x^2
  params = {"a": jnp.linspace(0.5, 1.5, 4), "b": jnp.linspace(-1.0, 1.0, 3)}
  rows = gradcheck.gradcheck(lambda p: jnp.sum(cube(p["a"])) + jnp.sum(p["b"] ** 2), params,
                             num_checks=4)
  by_name = {r.name: r for r in rows}
  assert by_name["a"].error[1] > 0.1 and by_name["b"].error[1] < 1e-8
  ok, reason = gradcheck.verdict(rows, 1e-4)
  assert not ok and reason.startswith("FAIL: relative error") and " a " in reason


def _quadratic(p):
  return jnp.sum(p["a"] ** 2) + jnp.sum(p["b"] ** 3)


PARAMS = {"a": jnp.linspace(0.5, 1.5, 4), "b": jnp.linspace(-1.0, 1.0, 3) + 0.1}


def test_nan_fails_and_is_not_an_error_of_zero():
  rows = gradcheck.gradcheck(lambda p: _quadratic(p) * jnp.sqrt(p["a"][0] - 2.0), PARAMS,
                             num_checks=3)
  assert all(r.nonfinite == r.checks for r in rows)
  ok, reason = gradcheck.verdict(rows, 1e-4)
  assert not ok and "3/3 checks of a are NaN" in reason
  assert np.isnan(gradcheck.max_error(rows))


def test_a_gradient_without_signal_fails():
  unused = {**PARAMS, "c": jnp.ones(5)}
  rows = gradcheck.gradcheck(_quadratic, unused, num_checks=3)
  by_name = {r.name: r for r in rows}
  assert by_name["c"].valid == 0 and np.isnan(by_name["c"].error[1])
  ok, reason = gradcheck.verdict(rows, 1e-4)
  assert not ok and reason.startswith("FAIL: only 0/3 checks of c carry signal (|gradient| >")
  assert np.isinf(gradcheck.max_error(rows))
  ok, reason = gradcheck.verdict(gradcheck.gradcheck(_quadratic, PARAMS, num_checks=3), 1e-4)
  assert ok and reason.startswith("PASS"), reason


def test_a_gradient_zeroed_where_it_is_not_drawn_still_shows():
  @jax.custom_vjp
  def square(x):
    return x ** 2

  square.defvjp(lambda x: (x ** 2, x), lambda x, g: ((2 * x * g).at[:6].set(0),))
  params = {"a": jnp.linspace(0.5, 1.5, 8)}
  rows = gradcheck.gradcheck(lambda p: jnp.sum(square(p["a"])), params, num_checks=2)
  assert rows[0].valid == 2 and rows[0].error[1] < 1e-8  # drawn among the non-zero ones
  assert rows[0].directional > 0.1  # the random direction sees the zeros
  assert not gradcheck.verdict(rows, 1e-4)[0]


def test_a_jump_in_the_loss_is_passed_over_not_scored():
  delta = 1e-5
  a0 = float(PARAMS["a"][0])

  def jumpy(p):  # a step of 1e-6 at a_0 + delta / 2: the central difference straddles it
    return _quadratic(p) + jnp.where(p["a"][0] > a0 + delta / 2, 1e-6, 0.0)

  rows = gradcheck.gradcheck(jumpy, PARAMS, num_checks=4, delta=delta)
  row = rows[0]
  assert row.name == "a" and row.unsmooth >= 1 and row.valid == 3
  ok, reason = gradcheck.verdict(rows, 1e-4)
  assert not ok and "only 3/4 checks of a carry signal" in reason and "not smooth" in reason
  for seed in range(3):
    rows = gradcheck.gradcheck(jumpy, PARAMS, num_checks=3, delta=delta, seed=seed)
    assert rows[0].valid == 3 and gradcheck.verdict(rows, 1e-4)[0], gradcheck.format_table(rows)


@pytest.mark.slow
def test_table_has_a_row_per_parameter_in_seed_order():
  model = dncjax.make_model("seed_dnc", 6, 6, **SMALL)
  table = gradcheck.format_table(gradcheck.check_model(model, batch_size=1, seq_length=3,
                                                       num_checks=2))
  names = [line.split()[0] for line in table.splitlines()[1:]]
  assert names == ["Wxh", "Whh", "Why", "Whr", "Whv", "Whw", "Whe", "Wrh", "Wry", "bh", "by"]


@pytest.mark.slow
def test_cli_passes_and_exits_zero():
  out = subprocess.run([sys.executable, "experiments/gradcheck.py", "--model", "lstm",
                        "--hidden", "4", "--vocab", "5", "--seqlength", "4", "--num_checks", "3"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert "PASS" in out.stdout and "Whh" in out.stdout
  assert out.stdout.strip().splitlines()[-1].startswith("PASS: largest relative error")


def test_cli_rejects_bad_flags_with_one_line():
  out = subprocess.run([sys.executable, "experiments/gradcheck.py", "--model", "rnn",
                        "--memory_size", "3"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 2
  assert out.stderr.strip().count("\n") == 0 and "memory_size" in out.stderr
