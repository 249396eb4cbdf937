"""Gradient check of every model (float64), and proof that the check can fail."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import dncjax
from dncjax import gradcheck
from tests.conftest import REPO

SMALL = dict(hidden=5, init_scale=0.5, dtype="float64")
MODELS = [("rnn", {}), ("lstm", {}), ("lstm", {"variant": "textbook"}),
          ("seed_dnc", {"addressing": "location", "memory_size": 4, "word_size": 3}),
          ("seed_dnc", {"addressing": "content", "memory_size": 4, "word_size": 3})]


@pytest.mark.parametrize("name, hyper", MODELS)
def test_every_parameter_passes(name, hyper):
  model = dncjax.make_model(name, 6, 6, **SMALL, **hyper)
  rows = gradcheck.check_model(model, batch_size=2, seq_length=6, num_checks=6)
  assert {r.name for r in rows} == set(model.init(jax.random.key(0)))
  assert all(r.valid > 0 for r in rows if r.name != "Wxh"), gradcheck.format_table(rows)
  assert gradcheck.max_error(rows) < 1e-4, gradcheck.format_table(rows)


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


def test_table_has_a_row_per_parameter_in_seed_order():
  model = dncjax.make_model("seed_dnc", 6, 6, **SMALL)
  table = gradcheck.format_table(gradcheck.check_model(model, batch_size=1, seq_length=3,
                                                       num_checks=2))
  names = [line.split()[0] for line in table.splitlines()[1:]]
  assert names == ["Wxh", "Whh", "Why", "Whr", "Whv", "Whw", "Whe", "Wrh", "Wry", "bh", "by"]


def test_cli_passes_and_exits_zero():
  out = subprocess.run([sys.executable, "experiments/gradcheck.py", "--model", "lstm",
                        "--hidden", "4", "--vocab", "5", "--seqlength", "4", "--num_checks", "3"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert "PASS" in out.stdout and "Whh" in out.stdout


def test_cli_rejects_bad_flags_with_one_line():
  out = subprocess.run([sys.executable, "experiments/gradcheck.py", "--model", "rnn",
                        "--memory_size", "3"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 2
  assert out.stderr.strip().count("\n") == 0 and "memory_size" in out.stderr
