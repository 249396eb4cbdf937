"""dncjax.tasks: the generators, the masked loss, the bit-error metric, and
experiments/tasks.py end to end on tiny settings (exact resume, one-line errors)."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dncjax.training import checkpoint
from dncjax.tasks import job as tasks

REPO = pathlib.Path(__file__).resolve().parents[2]

spec = importlib.util.spec_from_file_location("tasks_script", REPO / "experiments" / "tasks.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

CONFIGS = [tasks.TaskConfig("copy", bits=5, min_length=1, max_length=6),
           tasks.TaskConfig("repeat_copy", bits=4, min_length=2, max_length=4, max_repeats=3),
           tasks.TaskConfig("associative_recall", bits=3, min_length=2, max_length=5,
                            item_length=2)]


def draw(config, seed=0, batch_size=64):
  return tasks.sample(config, np.random.default_rng(seed), batch_size)


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
      tasks.TaskConfig(**kwargs)


def test_loss_is_masked_sigmoid_cross_entropy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 4))
  targets = rng.integers(0, 2, (3, 5, 4)).astype(float)
  mask = np.array([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], float)
  p = 1 / (1 + np.exp(-logits))
  xent = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
  expected = (xent.sum(-1) * mask).sum() / 3
  loss = tasks.sigmoid_cross_entropy(jnp.asarray(logits), (targets, mask))
  np.testing.assert_allclose(loss, expected, rtol=1e-12)
  grad = jax.grad(tasks.sigmoid_cross_entropy)(jnp.asarray(logits), (targets, mask))
  assert np.all(np.asarray(grad)[mask == 0] == 0) and np.all(np.asarray(grad)[mask == 1] != 0)


def test_bit_errors_hand_worked():
  targets = np.array([[[1, 0, 1], [0, 0, 0], [1, 1, 1]],
                      [[0, 1, 0], [1, 1, 0], [0, 0, 0]]], float)
  logits = np.array([[[2., -1., -3.], [5., 5., 5.], [1., 1., 1.]],     # 1 wrong; 3 unscored
                     [[-1., 1., -1.], [-2., -2., 0.], [9., 9., 9.]]])  # 0 wrong; 2 wrong
  mask = np.array([[1, 0, 1], [1, 1, 0]], float)
  # sequence 0: 1 wrong bit (step 0); sequence 1: 2 wrong bits (step 1; logit 0 means 0)
  assert float(tasks.bit_errors(logits, (targets, mask))) == pytest.approx(1.5)
  np.testing.assert_array_equal(tasks.bit_errors_per_sequence(logits, (targets, mask)), [1, 2])
  assert float(tasks.bit_errors(logits, (targets, np.zeros_like(mask)))) == 0
  assert float(tasks.bit_errors(logits, (targets, np.ones_like(mask)))) == pytest.approx(
      (1 + 3 + 0 + 0 + 2 + 3) / 2)


def test_optimizers():
  params = {"w": jnp.ones(3)}
  for name in tasks.OPTIMIZERS:
    opt = tasks.make_optimizer(name, 0.1, clip_norm=1.0)
    updates, _ = opt.update({"w": jnp.full(3, 100.0)}, opt.init(params), params)
    assert np.all(np.asarray(updates["w"]) < 0)
  rms = tasks.make_optimizer("rmsprop", 1e-4, momentum=0.9, eps=1e-10)
  ref = optax.rmsprop(1e-4, decay=0.9, eps=1e-10, momentum=0.9)
  g = {"w": jnp.arange(3.0)}
  np.testing.assert_allclose(rms.update(g, rms.init(params))[0]["w"],
                             ref.update(g, ref.init(params))[0]["w"])
  for kwargs, text in [(dict(name="sgd"), "unknown optimizer"), (dict(learning_rate=0), "learning"),
                       (dict(momentum=1.0), "momentum")]:
    with pytest.raises(ValueError, match=text):
      tasks.make_optimizer(**{"name": "rmsprop", "learning_rate": 1e-3, **kwargs})


TINY = ["--hidden", "8", "--memory_size", "6", "--word_size", "4", "--read_heads", "1",
        "--bits", "3", "--max_length", "3", "--batchsize", "2", "--eval_sequences", "4",
        "--eval_length", "4", "--report_interval", "1", "--eval_every", "3", "--optimizer",
        "adam", "--lr", "0.01", "--fp64"]


def run(workdir, *extra):
  return script.main(["--workdir", str(workdir), *TINY, *extra])


def records(workdir, key):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [(r["step"], r[key]) for r in map(json.loads, lines) if key in r]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("straight")
  run(workdir, "--steps", "6")
  return workdir


def test_straight_run_outputs(straight):
  assert [s for s, _ in records(straight, "train_loss")] == list(range(1, 7))
  assert [s for s, _ in records(straight, "eval_len4_bit_errors")] == [3, 6]
  results = json.loads((straight / "results.json").read_text())
  assert results["step"] == 6 and results["stopped_by"] == "steps"
  assert {"train_bit_errors", "eval_bit_errors", "eval_len4_bit_errors", "eval_perfect",
          "eval_len4_perfect"} <= set(results)
  assert (straight / "loss.png").stat().st_size and (straight / "bit_errors.png").stat().st_size
  model, params, config, step = tasks.restore(straight)
  assert step == 6 and config.task.max_length == 3 and model.config.memory_size == 6


def test_resume_continues_exactly(straight, tmp_path):
  run(tmp_path, "--steps", "3")
  run(tmp_path, "--steps", "6", "--resume")
  for key in ("train_loss", "train_bit_errors", "eval_loss", "eval_len4_loss"):
    assert records(tmp_path, key) == records(straight, key)  # float64: identical
  a, b = tasks.restore(straight)[1], tasks.restore(tmp_path)[1]
  assert all(np.array_equal(a[k], b[k]) for k in a)


def test_errors(straight, tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="already holds checkpoints"):
    run(straight, "--steps", "7")
  with pytest.raises(checkpoint.CheckpointError, match="another config.*hidden=9"):
    run(straight, "--steps", "7", "--resume", "--hidden", "9")
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint folder"):
    run(tmp_path / "none", "--steps", "1", "--resume")
  with pytest.raises(ValueError, match="min_length 5 > max_length 3"):
    run(tmp_path, "--min_length", "5")
  with pytest.raises(ValueError, match="does not apply to model 'lstm'"):
    script.main(["--model", "lstm", "--memory_size", "4", "--workdir", str(tmp_path)])
  with pytest.raises(ValueError, match="--eval_length must be positive"):
    run(tmp_path, "--eval_length", "4", "0")
  with pytest.raises(SystemExit):
    script.main(["--task", "sort"])


def test_one_line_error_and_exit_status(tmp_path):
  done = subprocess.run([sys.executable, str(REPO / "experiments" / "tasks.py"), "--workdir",
                         str(tmp_path), "--batchsize", "0"], capture_output=True, text=True)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == ["error: batch_size must be a positive integer, "
                                              "got 0"]


# ----- experiments/tasks_report.py ---------------------------------------------------------

spec = importlib.util.spec_from_file_location("tasks_report",
                                              REPO / "experiments" / "tasks_report.py")
report_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report_script)


def test_run_report_summarises_the_metrics_and_only_reads(straight):
  log = (straight / "metrics.jsonl").read_bytes()
  errors = records(straight, "eval_len4_bit_errors")  # at iterations 3 and 6
  whole = tasks.run_report(straight)  # length: the run's longest evaluation length, 4
  assert (whole["length"], whole["iters"], whole["evaluations"]) == (4, 6, 2)
  values = [v for _, v in errors]
  assert whole["end"] == values[-1] and whole["mean"] == pytest.approx(np.mean(values))
  assert whole["median"] == pytest.approx(np.median(values))
  assert whole["below"] == sum(v < 0.05 for v in values)
  late = tasks.run_report(straight, length=4, since=4, target=1e9)
  assert late["evaluations"] == 1 and late["mean"] == values[-1] and late["below"] == 1
  perfect = records(straight, "eval_len4_perfect")[-1][1]
  assert late["perfect"] == perfect
  assert (straight / "metrics.jsonl").read_bytes() == log  # reading left the log alone
  with pytest.raises(tasks.ReportError, match="no evaluation at length 9"):
    tasks.run_report(straight, length=9)
  with pytest.raises(tasks.ReportError, match="iteration 7 or later"):
    tasks.run_report(straight, since=7)


def test_options_label_names_what_changed_but_the_seed():
  d = tasks.DEFAULT_RUN
  assert tasks.options_label(d, d) == "copy"
  changed = tasks.RunConfig(task=tasks.TaskConfig("copy", max_length=12),
                            hyper=tuple(sorted({**dict(d.hyper), "hidden": 128,
                                                "link_sharpness": True}.items())),
                            learning_rate=d.learning_rate, seed=4)
  assert tasks.options_label(changed, d) == "copy max_length=12 hidden=128 link_sharpness"


def test_report_cli_groups_runs_and_fails_in_one_line(straight, tmp_path, capsys):
  copy = tmp_path / "seed5"  # the same run under another seed: one group of two
  copy.mkdir()
  config = json.loads((straight / "config.json").read_text())
  (copy / "config.json").write_text(json.dumps({**config, "seed": 5}))
  (copy / "metrics.jsonl").write_bytes((straight / "metrics.jsonl").read_bytes())
  assert report_script.main([str(straight), str(copy), "--markdown"]) == 0
  out = capsys.readouterr().out
  assert out.count("### copy") == 1 and "| seed5 | 5 | 6 |" in out
  assert "2 runs; ends below 0.05:" in out
  # A run without --eval_length: its training-length evaluations.
  rows = [{k: v for k, v in json.loads(l).items() if not k.startswith("eval_len")}
          for l in (straight / "metrics.jsonl").read_text().splitlines()]
  (copy / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  plain = tasks.run_report(copy)
  assert plain["length"] is None and plain["end"] == records(straight, "eval_bit_errors")[-1][1]
  done = subprocess.run([sys.executable, str(REPO / "experiments" / "tasks_report.py"),
                         str(tmp_path / "none")], capture_output=True, text=True)
  assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
  assert "holds no task run's config.json" in done.stderr
