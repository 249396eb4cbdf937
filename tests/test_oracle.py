"""The JAX models against the NumPy oracle (tests/oracle.py), all in float64.

  oracle backward == central finite differences of the oracle forward
  JAX loss, every gradient and the final state == the oracle's (rtol 1e-9), at the seed's
    init scale 0.01 and at scales 1.0 and 2.0 where the nonlinearities saturate
  state carried over several windows == the oracle's
  20 steps of the jitted optax train step == 20 steps of the seed's hand-written Adagrad
  dnc-debug.py's own backward is wrong, term by term (findings in oracle.py's docstring)

Each model's JAX functions are compiled once (module-level caches) and reused.
"""

import functools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dncjax import pytrees
import dncjax  # noqa: E402
from dncjax.training import losses, optim, train  # noqa: E402
from tests import oracle  # noqa: E402

B, S, V, H, N, W = 3, 5, 7, 6, 4, 5
RTOL, ATOL = 1e-9, 1e-12
JAX_MODELS = {  # oracle name -> (dncjax name, hyperparameters)
    "rnn": ("rnn", {}),
    "lstm": ("lstm", {}),
    "seed_dnc_location": ("seed_dnc", dict(memory_size=N, word_size=W, addressing="location")),
    "seed_dnc_content": ("seed_dnc", dict(memory_size=N, word_size=W, addressing="content")),
}
DNCS = ("seed_dnc_location", "seed_dnc_content")


@functools.cache
def jax_model(name, reset_memory=True):
  model_name, hyper = JAX_MODELS[name]
  if model_name == "seed_dnc":
    hyper = {**hyper, "reset_memory": reset_memory}
  return dncjax.make_model(model_name, V, V, hidden=H, dtype="float64", **hyper)


@functools.cache
def jax_window(name):
  """Jitted (params, states, inputs, targets) -> ((loss, final states), grads), no resets."""
  model = jax_model(name)

  def loss_fn(params, states, inputs, targets):
    batch = pytrees.Batch(inputs, targets, jnp.zeros(inputs.shape[0], bool))
    loss, (final, _) = train.window_loss(model, losses.softmax_cross_entropy, params, states,
                                         batch)
    return loss, final

  return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


@functools.cache
def jax_train_step(name, reset_memory):
  model = jax_model(name, reset_memory)
  optimizer = optim.make(optim.OptimizerConfig("adagrad", learning_rate=0.1, eps=1e-8))
  return model, optimizer, train.make_train_step(model, optimizer)


def to_jax_state(name, state):
  cls = type(jax_model(name).initial_state())
  return cls(**{k: jnp.asarray(state[k]) for k in cls._fields})


def from_jax(tree):
  return {k: np.asarray(v) for k, v in (tree.items() if isinstance(tree, dict)
                                        else tree._asdict().items())}


def random_problem(name, seed, scale):
  """Seed-style params at `scale`, a random window and a random (non-zero) state."""
  rng = np.random.default_rng(seed)
  params = oracle.init_params(name, rng, V, H, N, W, scale)
  inputs, targets = rng.integers(0, V, (2, B, S))
  state = {k: 0.5 * rng.standard_normal(z.shape)
           for k, z in oracle.zero_state(name, B, H, N, W).items()}
  return params, inputs, targets, state


def run_jax(name, params, inputs, targets, state):
  (loss, final), grads = jax_window(name)(
      {k: jnp.asarray(v) for k, v in params.items()}, to_jax_state(name, state),
      jnp.asarray(inputs, jnp.int32), jnp.asarray(targets, jnp.int32))
  return float(loss), from_jax(grads), from_jax(final)


def assert_dicts_close(actual, expected, rtol=RTOL, atol=ATOL, what=""):
  assert set(actual) == set(expected)
  for k in expected:
    np.testing.assert_allclose(actual[k], expected[k], rtol=rtol, atol=atol,
                               err_msg=f"{what} {k}")


# ---------------------------------------------------------------------------------------
# The oracle itself


@pytest.mark.parametrize("name", oracle.MODELS)
def test_init_params_have_the_jax_models_names_and_shapes(name):
  jax_params = jax.eval_shape(jax_model(name).init, jax.random.key(0))
  params = oracle.init_params(name, np.random.default_rng(0), V, H, N, W)
  assert {k: v.shape for k, v in params.items()} == {k: v.shape for k, v in jax_params.items()}
  forget = np.zeros_like(params["bh"])
  if name != "rnn":
    forget[2 * H:3 * H] = 1.0
  np.testing.assert_array_equal(params["bh"], forget)


@pytest.mark.parametrize("scale", [0.01, 1.0])
@pytest.mark.parametrize("name", oracle.MODELS)
def test_oracle_backward_matches_finite_differences(name, scale):
  params, inputs, targets, state = random_problem(name, 1, scale)
  _, grads, _ = oracle.ORACLES[name](params, inputs, targets, state)
  loss_fn = lambda p: oracle.ORACLES[name](p, inputs, targets, state)[0]
  rng = np.random.default_rng(2)
  for k, value in params.items():
    for _ in range(3):
      index = tuple(int(rng.integers(n)) for n in value.shape)
      numerical = oracle.finite_difference(loss_fn, params, k, index)
      np.testing.assert_allclose(grads[k][index], numerical, rtol=1e-5, atol=1e-7,
                                 err_msg=f"{k}{index}")


def test_softmax_backward_is_the_jacobian_transpose():
  rng = np.random.default_rng(0)
  s, d = rng.standard_normal((2, 6, 1))
  w = oracle.softmax(s)
  jacobian = np.diagflat(w) - w @ w.T          # dw_i / ds_j
  np.testing.assert_allclose(oracle.softmax_backward(w, d), jacobian.T @ d, rtol=1e-13)
  # (a) the seed's `w * (d - sum(d))` is not, and its entries do not sum to zero
  seed = w * (d - d.sum(axis=0))
  assert np.abs(seed - jacobian.T @ d).max() > 1e-2
  assert abs(seed.sum()) > 1e-2
  assert abs(oracle.softmax_backward(w, d).sum()) < 1e-14


def test_adagrad_is_the_seeds_update():
  p, g = {"a": np.array([1.0, -2.0])}, {"a": np.array([0.5, 0.0])}
  params, accum = oracle.adagrad(p, g, {"a": np.array([0.75, 0.0])}, lr=0.1, eps=1e-8)
  np.testing.assert_allclose(accum["a"], [1.0, 0.0])
  np.testing.assert_allclose(params["a"], [1.0 - 0.05 / np.sqrt(1 + 1e-8), -2.0])


# ---------------------------------------------------------------------------------------
# JAX == oracle


@pytest.mark.slow
@pytest.mark.parametrize("scale", [0.01, 1.0, 2.0])
@pytest.mark.parametrize("name", oracle.MODELS)
def test_jax_loss_gradients_and_state_match_oracle(name, scale):
  params, inputs, targets, state = random_problem(name, 3, scale)
  loss, grads, final = oracle.ORACLES[name](params, inputs, targets, state)
  jax_loss, jax_grads, jax_final = run_jax(name, params, inputs, targets, state)
  np.testing.assert_allclose(jax_loss, loss, rtol=RTOL)
  assert_dicts_close(jax_grads, grads, what="gradient")
  assert_dicts_close(jax_final, final, what="state")


@pytest.mark.parametrize("name", oracle.MODELS)
def test_state_carried_over_windows_matches_oracle(name):
  params, _, _, state = random_problem(name, 4, 0.5)
  rng = np.random.default_rng(5)
  jax_state = state
  for window in range(4):
    inputs, targets = rng.integers(0, V, (2, B, S))
    loss, _, state = oracle.ORACLES[name](params, inputs, targets, state)
    jax_loss, _, jax_state = run_jax(name, params, inputs, targets, jax_state)
    np.testing.assert_allclose(jax_loss, loss, rtol=RTOL, err_msg=f"window {window}")
    assert_dicts_close(jax_state, state, what=f"window {window} state")


TRAIN_CASES = [("rnn", True), ("lstm", True), ("seed_dnc_location", True),
               ("seed_dnc_content", True), ("seed_dnc_content", False)]


@pytest.mark.slow
@pytest.mark.parametrize("name,reset_memory", TRAIN_CASES)
def test_adagrad_training_matches_oracle(name, reset_memory):
  """20 jitted train steps == 20 oracle steps with the seed's Adagrad, state carried across
  windows (lanes reset at random), memory wiped between windows iff `reset_memory`."""
  model, optimizer, step = jax_train_step(name, reset_memory)
  rng = np.random.default_rng(6)
  params = oracle.init_params(name, rng, V, H, N, W, scale=0.01)
  zeros = oracle.zero_state(name, B, H, N, W)
  state, accum = dict(zeros), {k: np.zeros_like(v) for k, v in params.items()}
  ts = train.init_train_state(model, optimizer, jax.random.key(0), B)
  jax_params = {k: jnp.asarray(v) for k, v in params.items()}
  ts = ts._replace(params=jax_params, opt_state=optimizer.init(jax_params))
  for n in range(20):
    inputs, targets = rng.integers(0, V, (2, B, S))
    reset = rng.random(B) < 0.25
    state = {k: np.where(reset.reshape((B,) + (1,) * (v.ndim - 1)), zeros[k], v)
             for k, v in state.items()}
    loss, grads, state = oracle.ORACLES[name](params, inputs, targets, state)
    params, accum = oracle.adagrad(params, grads, accum, lr=0.1, eps=1e-8)
    if name in DNCS and reset_memory:           # the seed wipes M and r at every window
      state.update(memory=zeros["memory"], read=zeros["read"])
    ts, metrics = step(ts, pytrees.Batch(jnp.asarray(inputs, jnp.int32),
                                       jnp.asarray(targets, jnp.int32), jnp.asarray(reset)))
    np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=RTOL, err_msg=f"step {n}")
  assert_dicts_close(from_jax(ts.params), params, what="params after 20 steps")
  assert_dicts_close(from_jax(ts.model_state), state, what="carried state after 20 steps")


# ---------------------------------------------------------------------------------------
# dnc-debug.py's original backward and forward (findings (a), (b), (f), (g), (j) in oracle.py)


def square_problem(seed, scale):
  """A content-DNC problem with N == W (the seed's np.dot needs it), random memory."""
  rng = np.random.default_rng(seed)
  params = oracle.init_params("seed_dnc_content", rng, V, H, W, W, scale)
  inputs, targets = rng.integers(0, V, (2, B, S))
  state = {k: 0.5 * rng.standard_normal(z.shape)
           for k, z in oracle.zero_state("seed_dnc_content", B, H, W, W).items()}
  return params, inputs, targets, state


@pytest.mark.parametrize("mistakes", [(m,) for m in oracle.ORIGINAL_MISTAKES]
                         + [oracle.ORIGINAL_MISTAKES], ids=list(oracle.ORIGINAL_MISTAKES) + ["all"])
def test_original_backward_is_wrong(mistakes):
  """Each of dnc-debug.py's mistakes, alone, makes some gradient wrong by more than 5%, against
  the corrected backward and against finite differences; W_hy, b_y, W_ry stay exact."""
  params, inputs, targets, state = square_problem(7, 1.0)
  _, good, _ = oracle.seed_dnc_content(params, inputs, targets, state)
  _, seed, _ = oracle.seed_dnc_content_original_backward(params, inputs, targets, state,
                                                          mistakes)
  errors = {k: oracle.relative_error(seed[k], good[k]) for k in params}
  for k in ("Why", "by", "Wry"):                # these never see the memory backward
    assert errors[k] < 1e-12, (k, errors[k])
  worst = max(errors, key=errors.get)
  assert errors[worst] > 0.05, errors
  loss_fn = lambda p: oracle.seed_dnc_content(p, inputs, targets, state)[0]
  numerical = np.reshape([oracle.finite_difference(loss_fn, params, worst, i)
                          for i in np.ndindex(params[worst].shape)], params[worst].shape)
  np.testing.assert_allclose(good[worst], numerical, rtol=1e-5, atol=1e-7)
  assert oracle.relative_error(seed[worst], numerical) > 0.05


def test_original_backward_without_mistakes_is_the_oracle():
  params, inputs, targets, state = square_problem(8, 1.0)
  _, good, _ = oracle.seed_dnc_content(params, inputs, targets, state)
  _, fixed, _ = oracle.seed_dnc_content_original_backward(params, inputs, targets, state, ())
  assert_dicts_close(fixed, good, rtol=1e-13, atol=0)


@pytest.mark.parametrize("mistake", ["memory", "key"])
def test_original_backward_needs_as_many_slots_as_word_entries(mistake):
  params, inputs, targets, state = random_problem("seed_dnc_content", 9, 0.5)  # N=4, W=5
  with pytest.raises(ValueError):
    oracle.seed_dnc_content_original_backward(params, inputs, targets, state, (mistake,))
  oracle.seed_dnc_content_original_backward(params, inputs, targets, state, ("softmax",))


def test_seed_forward_never_writes_from_zero_memory():
  """(g) dnc-debug.py writes with the raw scores M_{t-1} k: from M = 0 nothing is written,
  the loss does not depend on the memory's weights, yet its backward says it does."""
  rng = np.random.default_rng(10)
  params = oracle.init_params("seed_dnc_content", rng, V, H, W, W, 0.01)
  inputs, targets = rng.integers(0, V, (2, B, S))
  state = oracle.zero_state("seed_dnc_content", B, H, W, W)
  loss, seed_grads, final = oracle.seed_dnc_content_as_run(params, inputs, targets, state)
  assert not final["memory"].any() and not final["read"].any()
  for k in ("Whv", "Whe", "Whw", "Whr", "Wry", "Wrh"):
    shifted = {**params, k: params[k] + 1.0}
    assert oracle.seed_dnc_content_as_run(shifted, inputs, targets, state)[0] == loss, k
  assert np.linalg.norm(seed_grads["Whv"]) > 1e-6  # the true gradient is exactly 0
  for k in ("Whe", "Whw", "Whr", "Wry", "Wrh"):     # these carry a factor M = 0 or r = 0
    assert not seed_grads[k].any(), k


def test_content_addressing_from_zero_memory_keeps_all_slots_identical():
  """From M = 0 (every window of the seed and of dncjax's default reset_memory=True) the
  content scores are equal across slots, so w is uniform, every slot gets the same write and
  the keys W_hw, W_hr get no gradient: in both the oracle and the JAX model."""
  params, inputs, targets, state = random_problem("seed_dnc_content", 11, 1.0)
  state = oracle.zero_state("seed_dnc_content", B, H, N, W)
  _, grads, final = oracle.seed_dnc_content(params, inputs, targets, state)
  _, jax_grads, jax_final = run_jax("seed_dnc_content", params, inputs, targets, state)
  for g, memory in ((grads, final["memory"]), (jax_grads, jax_final["memory"])):
    assert np.linalg.norm(memory) > 1e-2
    np.testing.assert_array_equal(memory, np.broadcast_to(memory[:, :1], memory.shape))
    for k in ("Whw", "Whr"):
      assert np.abs(g[k]).max() < 1e-12 * np.abs(g["Wxh"]).max(), k
