"""The algorithmic tasks of the NTM and DNC papers, their loss, metric and training run.

Tasks (as in Graves et al. 2014, "Neural Turing Machines", section 4), each drawn as B
sequences padded to one length T per `TaskConfig`, so a jitted train step compiles once:

  copy                L random bit vectors, a delimiter, then the L vectors again
  repeat_copy         the same with a repeat count n: the answer is the L vectors n times,
                      then an end marker
  associative_recall  K distinct items of `item_length` vectors, each after an item delimiter,
                      then one of the first K - 1 items between query delimiters; the
                      answer is the item that followed it

A batch is `Sequences(inputs [B, T, I], targets [B, T, O], mask [B, T])`; the mask is 1
exactly on the answer phase (the only scored steps). Input channels: the `bits` data
bits, then the delimiter channel(s); output channels: the bits (repeat copy: + the end
marker). The loss is sigmoid cross-entropy summed over channels and masked steps, per
sequence; the metric is bit errors per sequence (wrong bits at 0.5 on the masked steps).

`train_and_evaluate` trains any registered model with `dncjax.loop` and keeps orbax
checkpoints; experiments/tasks.py is its command line. `run_report` summarises a finished
run's evaluations at one length (experiments/tasks_report.py compares seeds and settings).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dncjax import pytrees
from dncjax import models
from dncjax import checks
from dncjax.training import checkpoint
from dncjax.models import core
from dncjax.training import loop
from dncjax.training import plots
from dncjax.training import train
from dncjax.training import workdir as workdir_lock

TASKS = ("copy", "repeat_copy", "associative_recall")
FORMAT = 1  # bump when the checkpoint layout changes


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """A task and its sizes. `min_length`..`max_length` counts vectors (associative recall:
  items); the repeat count channel holds n / max_repeats."""
  name: str = "copy"
  bits: int = 8
  min_length: int = 1
  max_length: int = 10
  min_repeats: int = 1   # repeat_copy only
  max_repeats: int = 3
  item_length: int = 3   # associative_recall only: vectors per item

  def __post_init__(self):
    if self.name not in TASKS:
      raise ValueError(f"unknown task {self.name!r}; choose one of: {', '.join(TASKS)}")
    checks.check_positive(self, "bits", "min_length", "max_length", "min_repeats",
                        "max_repeats", "item_length")
    if self.min_length > self.max_length:
      raise ValueError(f"min_length {self.min_length} > max_length {self.max_length}")
    if self.min_repeats > self.max_repeats:
      raise ValueError(f"min_repeats {self.min_repeats} > max_repeats {self.max_repeats}")
    if self.name == "associative_recall" and self.min_length < 2:
      raise ValueError("associative_recall needs min_length >= 2 items")
    if self.name == "associative_recall" and 2 ** (self.bits * self.item_length) < self.max_length:
      raise ValueError(f"{self.max_length} distinct items do not fit in "
                       f"{self.item_length} x {self.bits} bits")

  @property
  def input_size(self) -> int:
    """I: the bits + 1 delimiter (copy) or + 2 (repeat count / query delimiter)."""
    return self.bits + (1 if self.name == "copy" else 2)

  @property
  def output_size(self) -> int:
    """O: the bits (+ the end marker for repeat copy)."""
    return self.bits + (1 if self.name == "repeat_copy" else 0)

  @property
  def time_steps(self) -> int:
    """T, the padded length that fits the longest sequence."""
    L, m = self.max_length, self.item_length
    if self.name == "copy":
      return 2 * L + 1
    if self.name == "repeat_copy":
      return L + 1 + L * self.max_repeats + 1
    return L * (m + 1) + m + 2 + m

  def at_length(self, length: int) -> "TaskConfig":
    """The same task with every sequence of `length` (e.g. a generalisation test)."""
    return dataclasses.replace(self, min_length=length, max_length=length)


class Sequences(NamedTuple):
  inputs: np.ndarray   # [B, T, I] float32
  targets: np.ndarray  # [B, T, O] float32
  mask: np.ndarray     # [B, T] float32, 1 on the answer phase


def _copy(config, rng, L, x_TxI, y_TxO, mask_T):
  """L vectors, the delimiter at t = L, the answer at t = L+1 .. 2L."""
  seq_LxD = rng.integers(0, 2, (L, config.bits))
  x_TxI[:L, :config.bits] = seq_LxD
  x_TxI[L, config.bits] = 1
  y_TxO[L + 1:2 * L + 1] = seq_LxD
  mask_T[L + 1:2 * L + 1] = 1


def _repeat_copy(config, rng, L, x_TxI, y_TxO, mask_T):
  """L vectors; at t = L the delimiter and n / max_repeats; the answer: the L vectors n
  times, then the end marker (last output channel) at t = L + 1 + n L."""
  bits = config.bits
  seq_LxD = rng.integers(0, 2, (L, bits))
  n = int(rng.integers(config.min_repeats, config.max_repeats + 1))
  x_TxI[:L, :bits] = seq_LxD
  x_TxI[L, bits] = 1
  x_TxI[L, bits + 1] = n / config.max_repeats
  end = L + 1 + n * L
  y_TxO[L + 1:end, :bits] = np.tile(seq_LxD, (n, 1))
  y_TxO[end, bits] = 1
  mask_T[L + 1:end + 1] = 1


def _associative_recall(config, rng, K, x_TxI, y_TxO, mask_T):
  """K distinct items of m vectors, each after an item delimiter (channel `bits`); item q
  (q < K - 1) between two query delimiters (channel `bits` + 1); the answer: item q + 1."""
  bits, m = config.bits, config.item_length
  items = rng.integers(0, 2, (K, m, bits))
  while len(np.unique(items.reshape(K, -1), axis=0)) < K:
    items = rng.integers(0, 2, (K, m, bits))
  q = int(rng.integers(0, K - 1))
  for k in range(K):
    x_TxI[k * (m + 1), bits] = 1
    x_TxI[k * (m + 1) + 1:(k + 1) * (m + 1), :bits] = items[k]
  t = K * (m + 1)
  x_TxI[t, bits + 1] = x_TxI[t + m + 1, bits + 1] = 1
  x_TxI[t + 1:t + m + 1, :bits] = items[q]
  y_TxO[t + m + 2:t + 2 * m + 2] = items[q + 1]
  mask_T[t + m + 2:t + 2 * m + 2] = 1


_WRITERS = {"copy": _copy, "repeat_copy": _repeat_copy, "associative_recall": _associative_recall}


def sample(config: TaskConfig, rng: np.random.Generator, batch_size: int) -> Sequences:
  """B sequences of the task drawn with `rng` (the same rng state gives the same batch),
  each of a length drawn uniformly from min_length..max_length, zero-padded to T."""
  B, T = batch_size, config.time_steps
  seqs = Sequences(np.zeros((B, T, config.input_size), np.float32),
                   np.zeros((B, T, config.output_size), np.float32), np.zeros((B, T), np.float32))
  for b in range(B):
    length = int(rng.integers(config.min_length, config.max_length + 1))
    _WRITERS[config.name](config, rng, length, seqs.inputs[b], seqs.targets[b], seqs.mask[b])
  return seqs


def sigmoid_cross_entropy(logits_BxTxO: jax.Array, targets_and_mask) -> jax.Array:
  """Sigmoid cross-entropy (nats) summed over channels and masked steps, mean over B.

  `targets_and_mask` is (targets [B, T, O], mask [B, T]): the `loss_fn` of
  `train.make_train_step` with `Batch.targets = (targets, mask)`.
  """
  targets, mask = targets_and_mask
  per_step = optax.sigmoid_binary_cross_entropy(logits_BxTxO, targets).sum(-1)
  return (per_step * mask).sum() / mask.shape[0]


def bit_errors_per_sequence(logits_BxTxO: jax.Array, targets_and_mask) -> jax.Array:
  """Wrong bits of each sequence [B]: a bit is predicted 1 where sigmoid(y) > 0.5 (y > 0)
  and counted only at masked steps."""
  targets, mask = targets_and_mask
  wrong = (logits_BxTxO > 0) != (targets > 0.5)
  return (wrong.sum(-1) * mask).sum(-1)


def bit_errors(logits_BxTxO: jax.Array, targets_and_mask) -> jax.Array:
  """Wrong bits per sequence, mean over B (see `bit_errors_per_sequence`)."""
  return bit_errors_per_sequence(logits_BxTxO, targets_and_mask).mean()


def task_metrics(ys, targets_and_mask) -> dict:
  """The `metrics_fn` of `train.make_train_step`: bit errors of the training batch."""
  return {"bit_errors": bit_errors(ys, targets_and_mask)}


def to_batch(seqs: Sequences, dtype="float32") -> pytrees.Batch:
  """A `pytrees.Batch` whose lanes all start from the initial state."""
  return pytrees.Batch(jnp.asarray(seqs.inputs, dtype),
                     (jnp.asarray(seqs.targets, dtype), jnp.asarray(seqs.mask, dtype)),
                     jnp.ones((seqs.inputs.shape[0],), bool))


def make_evaluate(model: core.Model):
  """Jitted (params, Batch) -> {loss, bit_errors (both per sequence), perfect (the share
  of sequences without a wrong bit)}, every sequence from the initial state."""

  @jax.jit
  def evaluate(params, batch: pytrees.Batch):
    states = core.batch_initial_state(model, batch.inputs.shape[0])
    _, ys = core.batch_unroll(model, params, states, batch.inputs)
    errors_B = bit_errors_per_sequence(ys, batch.targets)
    return {"loss": sigmoid_cross_entropy(ys, batch.targets), "bit_errors": errors_B.mean(),
            "perfect": (errors_B == 0).mean()}

  return evaluate


OPTIMIZERS = ("rmsprop", "adam", "adagrad")
DEFAULT_EPS = {"rmsprop": 1e-10, "adam": 1e-8, "adagrad": 1e-8}


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9,
                   eps: float | None = None, clip_norm: float | None = None):
  """optax RMSProp (decay 0.9, eps inside the square root, with `momentum`), Adam or
  Adagrad, after clipping by global norm. (deepmind/dnc's train.py: RMSProp, lr 1e-4,
  eps 1e-10, no momentum, global norm clipped at 50.)"""
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
  checks.check_number("learning_rate (--lr)", learning_rate, 0, low_open=True)
  for shown, value in (("--eps", eps), ("--clip_norm", clip_norm)):
    checks.check_number(shown, value, 0, low_open=True, optional=True)
  checks.check_number("--momentum", momentum, 0, 1, high_open=True)
  eps = DEFAULT_EPS[name] if eps is None else eps
  if name == "rmsprop":
    opt = optax.rmsprop(learning_rate, decay=0.9, eps=eps, momentum=momentum or None)
  elif name == "adam":
    opt = optax.adam(learning_rate, eps=eps)
  else:
    opt = optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=eps)
  return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm else opt


TrainingError = loop.TrainingError  # re-exported: scripts and tests catch it here


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """What defines a run: a resumed run must agree with its checkpoint on all of it."""
  task: TaskConfig = TaskConfig()
  model: str = "dnc"
  hyper: tuple[tuple[str, Any], ...] = ()  # model hyperparameters, sorted (name, value)
  batch_size: int = 16
  optimizer: str = "rmsprop"
  learning_rate: float = 1e-4
  momentum: float = 0.9                    # rmsprop only
  eps: float | None = None                 # None: DEFAULT_EPS[optimizer]
  clip_norm: float | None = 10.0
  fp64: bool = False
  seed: int = 0

  def __post_init__(self):
    checks.check_positive(self, "batch_size")
    if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
      raise ValueError(f"--seed must be an integer in [0, 2**32), got {self.seed!r}")
    make_optimizer(self.optimizer, self.learning_rate, self.momentum, self.eps, self.clip_norm)

  def to_json(self) -> dict:
    return {**dataclasses.asdict(self), "hyper": dict(self.hyper)}

  @classmethod
  def from_json(cls, d: dict) -> "RunConfig":
    return cls(**{**d, "task": TaskConfig(**d["task"]),
                  "hyper": tuple(sorted(d["hyper"].items()))})

  def make(self) -> tuple[core.Model, optax.GradientTransformation]:
    model = models.make_model(self.model, self.task.input_size, self.task.output_size,
                            **dict(self.hyper), dtype="float64" if self.fp64 else "float32")
    train.check_fits(model)
    return model, make_optimizer(self.optimizer, self.learning_rate, self.momentum, self.eps,
                                 self.clip_norm)


DEFAULT_RUN = RunConfig(  # experiments/tasks.py's defaults: RMSProp, momentum 0.9, clip 10
    hyper=(("hidden", 64), ("memory_size", 32), ("read_heads", 1), ("word_size", 16)),
    learning_rate=3e-4)


@functools.lru_cache(maxsize=8)
def compiled(config: RunConfig):
  """(model, optimizer, jitted train step, jitted evaluate) of a config, built once per
  process, so runs of one config (e.g. a run and its resumption) compile once."""
  model, optimizer = config.make()
  train_step = train.make_train_step(model, optimizer, sigmoid_cross_entropy,
                                     metrics_fn=task_metrics)
  return model, optimizer, train_step, make_evaluate(model)


@dataclasses.dataclass(frozen=True)
class Options:
  """How to run it (may change between a run and its resumption)."""
  workdir: str = "runs/copy"
  resume: bool = False
  steps: int | None = None
  timelimit: float | None = 600.0
  report_interval: int = 100
  eval_every: int = 1000
  checkpoint_every: int = 1000
  keep: int = 3
  eval_sequences: int = 256      # fresh sequences per evaluation set
  eval_lengths: tuple[int, ...] = ()  # also evaluate at each of these lengths (generalisation)
  target: float = 0.05           # results.json records when eval bit errors first drop below

  def __post_init__(self):
    if not isinstance(self.eval_sequences, int) or self.eval_sequences <= 0:
      raise ValueError(f"--eval_sequences must be positive, got {self.eval_sequences!r}")
    if any(not isinstance(n, int) or n <= 0 for n in self.eval_lengths):
      raise ValueError(f"--eval_length must be positive, got {list(self.eval_lengths)}")
    checks.check_number("--target", self.target, 0)


def batch_at(config: RunConfig, step: int) -> Sequences:
  """The training batch of iteration `step` + 1: a function of (seed, step) alone, so a
  resumed run draws exactly the batches of an uninterrupted one."""
  return sample(config.task, np.random.default_rng([config.seed, 0, step]), config.batch_size)


def eval_sets(config: RunConfig, options: Options) -> dict[str, Sequences]:
  """Fixed evaluation sequences, drawn apart from the training stream."""
  sets = {"eval": sample(config.task, np.random.default_rng([config.seed, 1]),
                         options.eval_sequences)}
  for length in options.eval_lengths:
    sets[f"eval_len{length}"] = sample(config.task.at_length(length), np.random.default_rng(
        [config.seed, 2, length]), options.eval_sequences)
  return sets


KIND = f"task checkpoint of format {FORMAT}"


def is_ours(meta: dict) -> bool:
  return meta.get("format") == FORMAT and meta.get("kind") == "tasks"


def resolve_config(given: dict, defaults: RunConfig, ckpt_dir: pathlib.Path, resume: bool):
  """(config, checkpoints, step, meta): the flags `given` (with 'task' and 'hyper' dicts)
  on top of `defaults`, or with `resume` the checkpoint's config, which they must match."""
  if not resume:
    checkpoint.refuse_existing(ckpt_dir)
    hyper = models.merge_hyper(given.get("model", defaults.model), defaults.hyper,
                             given.get("hyper", {}))
    task = dataclasses.replace(defaults.task, **given.get("task", {}))
    flags = {k: v for k, v in given.items() if k not in ("task", "hyper")}
    return dataclasses.replace(defaults, **flags, task=task, hyper=hyper), None, None, None
  ckpts, step, meta = checkpoint.open_latest(ckpt_dir, is_ours, KIND)
  saved = RunConfig.from_json(meta["config"])
  pairs = [(k, v, getattr(saved, k)) for k, v in given.items() if k not in ("task", "hyper")]
  pairs += [(k, v, getattr(saved.task, k)) for k, v in given.get("task", {}).items()]
  pairs += models.hyper_pairs(saved.model, saved.hyper, given.get("hyper", {}))
  checkpoint.check_agrees(ckpt_dir, pairs)
  return saved, ckpts, step, meta


def train_and_evaluate(config: RunConfig, options: Options, given: dict | None = None,
                       out=print) -> dict:
  """Runs (or resumes) a task run in `options.workdir`; returns results.json's summary.
  The run holds the workdir's lock (dncjax.workdir) while it runs."""
  with workdir_lock.lock(options.workdir):
    return _train_and_evaluate(config, options, given or {}, out)


def _train_and_evaluate(config: RunConfig, options: Options, given: dict, out) -> dict:
  workdir = pathlib.Path(options.workdir)
  config, ckpts, step, meta = resolve_config(given, config, workdir / "checkpoints",
                                             options.resume)
  if config.fp64:
    jax.config.update("jax_enable_x64", True)
  dtype = "float64" if config.fp64 else "float32"
  model, optimizer, train_step, evaluate_fn = compiled(config)
  ts = train.init_train_state(model, optimizer, jax.random.key(config.seed), config.batch_size)
  elapsed = 0.0
  if ckpts is not None:
    step, meta, restored = ckpts.restore_latest({"train": ts}, is_ours, KIND, say=out,
                                                set_aside=True)
    ts, elapsed = restored["train"], meta["elapsed"]
    out(f"resumed {workdir} at iter {step} ({elapsed:.1f} s trained)")
  else:
    step = 0
    ckpts = checkpoint.Checkpoints(workdir / "checkpoints", keep=options.keep)
  if options.resume and not (workdir / "metrics.jsonl").exists():
    out(f"warning: {workdir / 'metrics.jsonl'} is missing: the records before iter {step} "
        f"are lost; new ones are appended from here")
  log = loop.MetricsLog(workdir / "metrics.jsonl", resume_step=step if options.resume else None)
  (workdir / "config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
  n_params = sum(p.size for p in jax.tree.leaves(ts.params))
  out(f"task {config.task}; T = {config.task.time_steps}")
  out(f"model {config.model} {model.config}; {n_params:,} parameters; workdir {workdir}")

  sets = {name: to_batch(seqs, dtype) for name, seqs in eval_sets(config, options).items()}
  position = {"step": step}

  def next_batch():
    position["step"] += 1
    return to_batch(batch_at(config, position["step"] - 1), dtype)

  def save(at_step, state, elapsed_s):
    ckpts.save(at_step, {"train": state}, {
        "format": FORMAT, "kind": "tasks", "step": at_step, "config": config.to_json(),
        "model_config": dataclasses.asdict(model.config), "elapsed": elapsed_s})

  def evaluate(state, at_step):
    return {f"{name}_{key}": float(value) for name, batch in sets.items()
            for key, value in evaluate_fn(state.params, batch).items()}

  loop_config = loop.LoopConfig(options.steps, options.timelimit, options.report_interval,
                                options.eval_every, options.checkpoint_every)
  result = loop.run(step_fn=train_step, state=ts, next_batch=next_batch, start_step=step,
                    config=loop_config, items_per_step=config.batch_size, log=log, save=save,
                    evaluate=evaluate, elapsed=elapsed, unit="seq", bpc_scale=1.0,
                    metric="loss", extra=("bit_errors",), print_fn=out)
  ckpts.close()
  loop.raise_if_diverged(result, ckpts.latest_step(), ckpts.directory)
  summary = summarize(log.read(), result, options.target)
  loop.write_json(workdir / "results.json", summary)
  records, title = log.read(), f"{config.model} on {config.task.name}"
  for metric, ylabel in (("loss", "nats per sequence"), ("bit_errors", "bit errors per sequence")):
    plots.plot_metrics(records, workdir / f"{metric}.png", title, ylabel=ylabel,
                       keys=(f"train_{metric}", *(f"{name}_{metric}" for name in sets)))
  out(f"stopped by {result.reason} at iter {result.step}: " + ", ".join(
      f"{k} {v:.4f}" for k, v in summary.items() if k.endswith("bit_errors")))
  loop.raise_if_interrupted(result)
  return summary


def summarize(records: list[dict], result: loop.LoopResult, target: float) -> dict:
  """The last training and evaluation metrics, and when eval bit errors fell below target."""
  summary = {"step": result.step, "elapsed_s": result.elapsed, "stopped_by": result.reason}
  for key in ("train_loss", "train_bit_errors"):
    rows = [r for r in records if key in r]
    if rows:
      summary[key] = rows[-1][key]
  evals = [r for r in records if "eval_bit_errors" in r]
  if evals:
    summary.update({k: v for k, v in evals[-1].items() if k.startswith("eval")})
    reached = [r for r in evals if r["eval_bit_errors"] < target]
    if reached:
      summary[f"time_to_{target}_bit_errors_s"] = reached[0]["time"]
      summary[f"iter_to_{target}_bit_errors"] = reached[0]["step"]
  return summary


def restore(workdir: str | pathlib.Path):
  """(model, params, config, step) from the latest checkpoint of a task run."""
  ckpts = checkpoint.Checkpoints(pathlib.Path(workdir) / "checkpoints", create=False)
  built = {}

  def template(meta):
    built["config"] = config = RunConfig.from_json(meta["config"])
    if config.fp64:
      jax.config.update("jax_enable_x64", True)
    built["model"], optimizer = config.make()
    return {"train": train.init_train_state(built["model"], optimizer, jax.random.key(0),
                                            config.batch_size)}

  step, _, restored = ckpts.restore_latest(
      template, is_ours, KIND, say=lambda line: print(line, file=sys.stderr))
  ckpts.close()
  return built["model"], restored["train"].params, built["config"], step


def error_types() -> tuple[type[BaseException], ...]:
  return (checkpoint.CheckpointError, TrainingError)


class ReportError(ValueError):
  """A folder is not a task run with the requested evaluations: one-line message."""


def run_report(workdir: str | pathlib.Path, length: int | None = None, since: int = 0,
               target: float = 0.05) -> dict:
  """How one run's bit errors at an evaluation `length` went: at the end, and over the
  evaluations from iteration `since` on (mean, median, how many below `target`, the mean
  share of perfect sequences). `length` None: the run's longest evaluation length (or its
  training-length set if it had none). Reads config.json and metrics.jsonl only."""
  workdir = pathlib.Path(workdir)
  try:
    config = RunConfig.from_json(json.loads((workdir / "config.json").read_text()))
  except (OSError, ValueError, TypeError, KeyError) as e:
    raise ReportError(f"{workdir} holds no task run's config.json ({e})") from None
  evals = [r for r in loop.read_metrics(workdir / "metrics.jsonl") if "eval_loss" in r]
  if length is None:
    lengths = [int(k[len("eval_len"):-len("_bit_errors")]) for k in (evals[-1] if evals else {})
               if k.startswith("eval_len") and k.endswith("_bit_errors")]
    length = max(lengths, default=None)
  prefix = "eval" if length is None else f"eval_len{length}"
  rows = [r for r in evals if f"{prefix}_bit_errors" in r]
  if not rows:
    raise ReportError(f"{workdir}: no evaluation at length {length} in metrics.jsonl")
  late = [r for r in rows if r["step"] >= since]
  if not late:
    raise ReportError(f"{workdir}: no evaluation at iteration {since} or later "
                      f"(last: {rows[-1]['step']})")
  errors = np.array([r[f"{prefix}_bit_errors"] for r in late])
  return {"run": workdir.name, "config": config, "length": length, "iters": rows[-1]["step"],
          "end": rows[-1][f"{prefix}_bit_errors"], "mean": float(errors.mean()),
          "median": float(np.median(errors)), "below": int((errors < target).sum()),
          "evaluations": len(late),
          "perfect": float(np.mean([r[f"{prefix}_perfect"] for r in late]))}


def options_label(config: RunConfig, defaults: RunConfig) -> str:
  """The task and what a run changed from `defaults`, all but the seed (e.g. 'copy
  hidden=128 link_sharpness')."""
  parts = []
  for field in dataclasses.fields(TaskConfig):  # the task: its name, then changed sizes
    value = getattr(config.task, field.name)
    if field.name == "name" or value != getattr(defaults.task, field.name):
      parts.append(f"{field.name}={value}" if field.name != "name" else value)
  field_defaults = {f.name: f.default for f in dataclasses.fields(models.config_class(config.model))}
  for name, value in sorted(dict(config.hyper).items()):
    if dict(defaults.hyper).get(name, field_defaults.get(name)) != value:
      parts.append(name if value is True else f"{name}={value}")
  for field in dataclasses.fields(RunConfig):
    value = getattr(config, field.name)
    if field.name not in ("task", "hyper", "seed") and value != getattr(defaults, field.name):
      parts.append(f"{field.name}={value}")
  return " ".join(parts)
