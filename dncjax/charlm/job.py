"""Character-level language modelling (the seed's job on alice29.txt), end to end.

`train_and_evaluate(options)` loads the text, builds the model and Adagrad, restores or
starts a run in `options.workdir`, trains with `dncjax.loop`, evaluates on the held-out
tail (static BPC, and dynamic evaluation: Krause et al. 2017), samples text, keeps the
latest and the best-validation checkpoints and writes metrics.jsonl, samples.txt,
metrics.png and results.json. experiments/alice.py is its command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import sys
import time
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
from dncjax.charlm import data
from dncjax.training import dynamic
from dncjax.training import gradcheck
from dncjax.training import loop
from dncjax.training import parallel
from dncjax.training import plots
from dncjax.charlm import sampling
from dncjax.training import train
from dncjax.training import workdir as workdir_lock

FORMAT = 1  # bump when the checkpoint layout changes


TrainingError = loop.TrainingError  # re-exported: scripts and tests catch it here

# the command-line spelling of a config field, where it is not --<field>
FLAGS = {"learning_rate": "--lr", "batch_size": "--batchsize", "seq_length": "--seqlength"}


def flag(field: str) -> str:
  return FLAGS.get(field, f"--{field}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """What defines a run: a resumed run must agree with its checkpoint on all of it."""
  model: str = "seed_dnc"
  hyper: tuple[tuple[str, Any], ...] = ()  # model hyperparameters, sorted (name, value)
  data: str | None = None      # text file; None: alice29.txt (see dncjax.data)
  val_fraction: float = 0.1
  batch_size: int = 32         # B lanes
  seq_length: int = 32         # S characters per window
  overlap: float = 0.0         # dnc-debug.py: 2/3
  learning_rate: float = 0.2
  eps: float = 1e-6            # Adagrad epsilon inside the square root
  clip_norm: float | None = None
  clip_value: float | None = None
  weight_decay: float = 0.0
  dropout: float = 0.0         # on the readout's inputs (controller output, reads)
  weight_drop: float = 0.0     # DropConnect on the recurrent matrices W_hh (train.drop_connect)
  fp64: bool = False
  seed: int = 0

  def __post_init__(self):
    number = lambda field, *a, **k: checks.check_number(flag(field), getattr(self, field), *a, **k)
    for field in ("batch_size", "seq_length"):
      value = getattr(self, field)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{flag(field)} must be positive (an integer), got {value!r}")
    if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
      raise ValueError(f"--seed must be an integer in [0, 2**32), got {self.seed!r}")
    number("val_fraction", 0, 1, high_open=True)
    number("overlap", 0, 1, high_open=True)
    for field in ("learning_rate", "eps"):
      number(field, 0, low_open=True)
    for field in ("clip_norm", "clip_value"):
      number(field, 0, low_open=True, optional=True)
    number("weight_decay", 0)
    for field in ("dropout", "weight_drop"):
      number(field, 0, 1, high_open=True)

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d["hyper"] = dict(self.hyper)
    return d

  @classmethod
  def from_json(cls, d: dict) -> "RunConfig":
    d = {**dataclasses.asdict(cls()), **d}  # fields added since the checkpoint take defaults
    d["hyper"] = tuple(sorted(d.get("hyper", {}).items()))
    return cls(**d)

  def optimizer(self) -> train.OptimizerConfig:
    return train.OptimizerConfig(self.learning_rate, self.eps, self.clip_norm, self.clip_value,
                                 self.weight_decay)


@dataclasses.dataclass(frozen=True)
class Options:
  """How to run it (may change between a run and its resumption)."""
  workdir: str = "runs/alice"
  resume: bool = False
  steps: int | None = None
  timelimit: float | None = 3600.0
  report_interval: int = 20
  eval_every: int = 500
  checkpoint_every: int = 500
  keep: int = 3
  sample_length: int = 500
  prime: str = "Alice"
  temperature: float = 1.0
  eval_lanes: int = 1
  dynamic_eval: bool = True
  dynamic_rule: str = "adagrad"   # dncjax.dynamic.RULES
  dynamic_lr: float | None = None  # None: the training learning rate
  dynamic_decay: float = 0.0      # 'rms' rule: pull back towards the trained parameters
  dynamic_seq_length: int | None = None  # None: the training window
  gradcheck: bool = False
  target_bpc: float = 1.28  # results.json records when the training BPC first reaches it
  progress_bar: bool = True  # tqdm below the progress lines, on a terminal
  devices: int | str = 1  # the lanes split over this many devices ('all'); dncjax.parallel

  def __post_init__(self):
    for field in ("eval_lanes", "dynamic_seq_length", "sample_length"):
      value = getattr(self, field)
      least = 0 if field == "sample_length" else 1
      if value is None and field == "dynamic_seq_length":
        continue
      if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"--{field} must be an integer >= {least}, got {value!r}")
    checks.check_number("--temperature", self.temperature, 0, low_open=True)
    checks.check_number("--dynamic_lr", self.dynamic_lr, 0, low_open=True, optional=True)
    checks.check_number("--dynamic_decay", self.dynamic_decay, 0)
    checks.check_number("--target_bpc", self.target_bpc, 0)
    dynamic.check_rule(self.dynamic_rule)


KIND = f"char-LM checkpoint of format {FORMAT}"


def is_ours(meta: dict) -> bool:
  return meta.get("format") == FORMAT and "config" in meta


def resolve_config(given: dict, defaults: RunConfig, workdir: pathlib.Path,
                   resume: bool) -> tuple[RunConfig, checkpoint.Checkpoints | None, int | None,
                                          dict | None]:
  """The run's config: the flags given on top of `defaults`, or, with `resume`, on top of
  the latest checkpoint's config, where any given flag must agree with it."""
  ckpt_dir = workdir / "checkpoints"
  flags = {k: v for k, v in given.items() if k != "hyper"}
  if not resume:
    model = given.get("model", defaults.model)
    hyper = models.merge_hyper(model, defaults.hyper, given.get("hyper", {}))
    checkpoint.refuse_existing(ckpt_dir, workdir / "best")
    return dataclasses.replace(defaults, **flags, hyper=hyper), None, None, None
  ckpts, step, meta = checkpoint.open_latest(ckpt_dir, is_ours, KIND)
  saved = RunConfig.from_json(meta["config"])
  if given.get("data"):  # the text may move; its vocabulary is checked once it is read
    saved = dataclasses.replace(saved, data=given["data"])
  checkpoint.check_agrees(ckpt_dir, [(k, v, getattr(saved, k)) for k, v in given.items()
                                     if k not in ("hyper", "data")]
                          + models.hyper_pairs(saved.model, saved.hyper, given.get("hyper", {})))
  return saved, ckpts, step, meta


def stack_validation(val_ids: np.ndarray, seq_length: int, lanes: int):
  """All validation windows stacked: Batch with [K, b, S] leaves, mask inside targets."""
  windows = list(data.validation_windows(val_ids, seq_length, lanes))
  if not windows:
    return None
  inputs = np.stack([b.inputs for b, _ in windows])
  targets = np.stack([b.targets for b, _ in windows])
  masks = np.stack([m for _, m in windows])
  resets = np.stack([b.reset for b, _ in windows])
  return pytrees.Batch(jnp.asarray(inputs), (jnp.asarray(targets), jnp.asarray(masks)),
                     jnp.asarray(resets))


def make_static_eval(model: core.Model):
  """(params, windows) -> summed loss over all validation windows, state carried."""
  eval_step = train.make_eval_step(model, dynamic.masked_cross_entropy, jit=False)

  @jax.jit
  def evaluate(params, windows):
    states = core.batch_initial_state(model, windows.reset.shape[1])

    def body(states, window):
      loss, states = eval_step(params, states, window)
      return states, loss

    return jax.lax.scan(body, states, windows)[1].sum()

  return evaluate


def dynamic_bpc(model: core.Model, config: RunConfig, corpus: data.Corpus, params, opt_state,
                rule: str = "adagrad", lr: float | None = None, decay: float = 0.0,
                seq_length: int | None = None, lanes: int = 1, ms_state=None) -> float:
  """Dynamic-evaluation BPC of the validation tail (see dncjax.dynamic) from `params` (and,
  for the 'adagrad' rule, the training optimiser's `opt_state`), in windows of `seq_length`
  (default: the training window). The 'rms' rule measures MS_g on the whole training text
  in the same window shape unless `ms_state` (a `dynamic.rms_state` of the same window
  length and lanes) is given."""
  dynamic.check_rule(rule)
  seq_length = seq_length or config.seq_length
  lr = lr or config.learning_rate
  if seq_length <= 0 or lr <= 0 or decay < 0:
    raise ValueError(f"dynamic evaluation needs a positive window and learning rate and a "
                     f"decay >= 0, got {seq_length}, {lr}, {decay}")
  windows = stack_validation(corpus.val_ids, seq_length, lanes)
  if windows is None:
    raise data.DataError(f"the validation tail is shorter than one window of {seq_length}")
  if rule == "adagrad":
    optimizer = train.make_optimizer(dataclasses.replace(config.optimizer(), learning_rate=lr))
  else:
    optimizer = dynamic.rms_rule(lr, decay)
    if ms_state is None:
      ms_state = dynamic.rms_state(model, params, stack_validation(  # windows shaped as
          corpus.train_ids, seq_length, lanes))                      # the ones scored
    opt_state = ms_state
  total = dynamic.make_dynamic_eval(model, optimizer)(params, opt_state, windows)
  return float(total) / (math.log(2) * float(windows.targets[1].sum()))


class Setup(NamedTuple):
  """What a run's config builds: the text, the model, the optimiser and the lane batcher."""
  corpus: data.Corpus
  model: core.Model
  optimizer: optax.GradientTransformation
  batcher: data.LaneBatcher


def make_model(config: RunConfig, vocab_size: int) -> tuple[core.Model, optax.GradientTransformation]:
  if config.fp64:
    jax.config.update("jax_enable_x64", True)
  model = models.make_model(config.model, vocab_size, vocab_size, **dict(config.hyper),
                          dtype="float64" if config.fp64 else "float32")
  train.check_dropout(model, config.dropout, config.weight_drop)
  train.check_fits(model)
  return model, train.make_optimizer(config.optimizer())


def build(config: RunConfig) -> Setup:
  corpus = data.load_corpus(config.data, config.val_fraction, config.seq_length)
  model, optimizer = make_model(config, corpus.vocab.size)
  batcher = data.lane_batcher(corpus.train_ids, config.batch_size, config.seq_length,
                              config.overlap)
  return Setup(corpus, model, optimizer, batcher)


def initial_run_state(setup: Setup, config: RunConfig):
  """(TrainState, lane state, raw sampling key) of a fresh run: all drawn from config.seed."""
  key = jax.random.key(config.seed)
  ts = train.init_train_state(setup.model, setup.optimizer, jax.random.fold_in(key, 0),
                              config.batch_size)
  return (ts, setup.batcher.init(config.seed),
          checkpoint.key_to_array(jax.random.fold_in(key, 1)))


def checkpoint_meta(config: RunConfig, setup: Setup, step: int, lanes, best: dict,
                    elapsed: float) -> dict:
  """The `meta` item of a run's checkpoint: all a resume or a sampler needs besides arrays."""
  return {"format": FORMAT, "step": step, "config": config.to_json(),
          "model_config": dataclasses.asdict(setup.model.config),
          "vocab": setup.corpus.vocab.to_list(), "data": lanes.to_dict(), "best": best,
          "elapsed": elapsed}


def train_and_evaluate(config: RunConfig, options: Options, given: dict | None = None,
                       out=print, on_eval=None) -> dict:
  """Runs (or resumes) a char-LM run; returns the summary written to results.json.

  `on_eval(step, metrics)` is called after each evaluation; a string it returns stops the
  run with that reason (see `loop.run`), which results.json records as `stopped_by`.

  With `options.devices` > 1 the lanes are split over a device mesh (dncjax.parallel);
  in a multi-host run only process 0 prints and writes files, all of them checkpoint.
  Process 0 holds the workdir's lock (dncjax.workdir) while it runs: a second run in the
  same folder is refused before it reads or writes anything there."""
  workdir = pathlib.Path(options.workdir)
  given = given or {}
  dataclasses.replace(config, **{k: v for k, v in given.items() if k != "hyper"})  # checked
  held = workdir_lock.lock(workdir) if parallel.is_primary() else contextlib.nullcontext()
  with held:
    return _train_and_evaluate(config, options, given, out, on_eval)


def _train_and_evaluate(config: RunConfig, options: Options, given: dict, out, on_eval) -> dict:
  workdir = pathlib.Path(options.workdir)
  config, ckpts, step, meta = resolve_config(given, config, workdir, options.resume)
  mesh = parallel.make_mesh(options.devices, config.batch_size)
  primary = parallel.is_primary()
  if jax.process_count() > 1 and (options.steps is None or options.timelimit is not None):
    raise ValueError("a multi-host run needs --steps and no --timelimit (each process "
                     "would stop at its own clock)")
  if not primary:
    def out(*args, **kwargs):  # only process 0 prints
      pass
  setup = build(config)
  corpus, model, optimizer, batcher = setup
  vocab = corpus.vocab
  if meta is not None and meta["vocab"] != vocab.to_list():
    raise checkpoint.CheckpointError(
        f"--resume: the vocabulary of {corpus.path} ({vocab.size} characters) is not the "
        f"checkpoint's ({len(meta['vocab'])} characters)")
  prime_ids = vocab.encode(options.prime) if options.prime else vocab.encode(vocab.decode([0]))
  if options.eval_lanes > max(len(corpus.val_ids) - 1, 1):
    raise ValueError(f"--eval_lanes {options.eval_lanes} is more than the "
                     f"{max(len(corpus.val_ids) - 1, 0)} validation characters scored")
  if options.dynamic_eval and len(corpus.val_ids):  # fail now, not after training
    if options.dynamic_seq_length:
      stack_validation(corpus.val_ids, options.dynamic_seq_length, options.eval_lanes)
  ts, lanes, rng = initial_run_state(setup, config)
  if mesh is not None:
    ts = parallel.shard_train_state(ts, mesh)
  best = {"val_bpc": math.inf, "step": None}
  elapsed = 0.0
  if ckpts is not None:  # restore everything the uninterrupted run would hold now
    step, meta, restored = ckpts.restore_latest({"train": ts, "rng": rng}, is_ours, KIND,
                                                say=out, set_aside=True)
    ts, rng = restored["train"], np.asarray(restored["rng"])
    lanes = data.LaneState.from_dict(meta["data"])
    best, elapsed = meta["best"], meta["elapsed"]
    out(f"resumed {workdir} at iter {step} ({elapsed:.1f} s trained)")
  else:
    step = 0
    ckpts = checkpoint.Checkpoints(workdir / "checkpoints", keep=options.keep)
  best_ckpts = checkpoint.Checkpoints(workdir / "best", keep=1)
  if options.resume and best_ckpts.latest_step() is not None:
    try:  # the record follows what best/ holds
      best = best_ckpts.restore_meta()[1]["best"]
    except checkpoint.CheckpointError as e:
      out(f"warning: {e}; the best record of the checkpoint is kept")
  log = parallel.NullLog()
  if primary:
    if options.resume and not (workdir / "metrics.jsonl").exists():
      out(f"warning: {workdir / 'metrics.jsonl'} is missing: the records before iter {step} "
          f"are lost; new ones are appended from here")
    log = loop.MetricsLog(workdir / "metrics.jsonl", resume_step=step if options.resume else None)
    if not options.resume and (workdir / "samples.txt").exists():
      (workdir / "samples.txt").unlink()
    (workdir / "config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
  out(f"data {corpus.path}: {len(corpus.train_ids)} train / {len(corpus.val_ids)} validation "
      f"characters, {vocab.size} distinct")
  out(f"model {config.model} {model.config}; {sum(p.size for p in jax.tree.leaves(ts.params)):,}"
      f" parameters; workdir {workdir}")
  if mesh is not None:
    out(f"data parallel: {config.batch_size // mesh.size} lanes on each of {mesh.size} devices "
        f"({jax.process_count()} process(es))")

  train_step = train.make_train_step(model, optimizer, dropout=config.dropout,
                                     weight_drop=config.weight_drop)
  val_windows = stack_validation(corpus.val_ids, config.seq_length, options.eval_lanes)
  n_val = float(val_windows.targets[1].sum()) if val_windows is not None else 0.0
  static_eval = make_static_eval(model)
  position = {"lanes": lanes}
  best_state = {"train": None}  # the best-validation TrainState of this process, if any

  def next_batch():
    position["lanes"], batch = batcher.next(position["lanes"])
    return batch if mesh is None else parallel.shard_batch(batch, mesh)

  def meta_now(at_step, elapsed_s):
    return checkpoint_meta(config, setup, at_step, position["lanes"], best, elapsed_s)

  def save(at_step, state, elapsed_s):
    ckpts.save(at_step, {"train": state, "rng": rng}, meta_now(at_step, elapsed_s))

  def sample_text(params, at_step):
    sample_key = jax.random.fold_in(checkpoint.array_to_key(rng), at_step)
    ids, _ = sampling.sample(model, params, model.initial_state(), jnp.asarray(prime_ids),
                             sample_key, options.sample_length, options.temperature)
    text = options.prime + vocab.decode(np.asarray(ids))
    with (workdir / "samples.txt").open("a") as f:
      f.write(f"---- iter {at_step}\n{text}\n")
    return text

  def evaluate(state, at_step):
    metrics = {}
    params = state.params if mesh is None else parallel.to_host(state.params)
    if val_windows is not None:
      metrics["val_bpc"] = parallel.from_primary(  # on one device, the same on every process
          lambda: float(static_eval(params, val_windows)) / (math.log(2) * n_val))
      if metrics["val_bpc"] < best["val_bpc"]:
        best.update(val_bpc=metrics["val_bpc"], step=at_step)
        best_state["train"] = state
        best_ckpts.save(at_step, {"train": state, "rng": rng}, meta_now(at_step, 0.0))
    if options.sample_length and primary:
      out("----\n" + sample_text(params, at_step) + "\n----")
    return metrics

  if options.gradcheck:
    run_gradcheck(model, ts if mesh is None else parallel.to_host(ts), batcher, lanes, out)

  loop_config = loop.LoopConfig(options.steps, options.timelimit, options.report_interval,
                                options.eval_every, options.checkpoint_every)
  result = loop.run(step_fn=train_step, state=ts, next_batch=next_batch, start_step=step,
                    config=loop_config, items_per_step=config.batch_size * config.seq_length,
                    log=log, save=save, evaluate=evaluate, elapsed=elapsed, print_fn=out,
                    on_eval=on_eval, progress_bar=options.progress_bar and primary)
  ckpts.close()
  best_ckpts.wait()
  loop.raise_if_diverged(result, ckpts.latest_step(), ckpts.directory)
  summary = {"step": result.step, "elapsed_s": result.elapsed, "stopped_by": result.reason,
             "best_val_bpc": best["val_bpc"], "best_step": best["step"]}
  train_records = [r for r in log.read() if "train_bpc" in r]
  if train_records:
    summary["train_bpc"] = train_records[-1]["train_bpc"]
    reached = [r for r in train_records if r["train_bpc"] <= options.target_bpc]
    if reached:  # the seed's headline: 1.2808 BPC after 4163 s
      summary[f"time_to_{options.target_bpc}_bpc_s"] = reached[0]["time"]
      summary[f"iter_to_{options.target_bpc}_bpc"] = reached[0]["step"]
  if (options.dynamic_eval and val_windows is not None
      and result.reason in ("steps", "timelimit")):
    if best_state["train"] is None and best["step"] is not None:  # best found before a resume
      best_state["train"] = best_ckpts.restore_state(best["step"], {"train": ts, "rng": rng})["train"]
    start_from = best_state["train"] or result.state
    if mesh is not None:
      start_from = parallel.to_host(start_from._replace(model_state=None))
    start = time.monotonic()
    summary["dynamic_val_bpc"] = parallel.from_primary(lambda: dynamic_bpc(
        model, config, corpus, start_from.params, start_from.opt_state, options.dynamic_rule,
        options.dynamic_lr, options.dynamic_decay, options.dynamic_seq_length,
        options.eval_lanes))
    summary["dynamic_from_step"] = best["step"] if best_state["train"] is not None else result.step
    summary["dynamic"] = {"rule": options.dynamic_rule,
                          "lr": options.dynamic_lr or config.learning_rate,
                          "decay": options.dynamic_decay,
                          "seq_length": options.dynamic_seq_length or config.seq_length}
    out(f"dynamic evaluation ({', '.join(f'{k} {v}' for k, v in summary['dynamic'].items())}; "
        f"from iter {summary['dynamic_from_step']}): "
        f"{summary['dynamic_val_bpc']:.4f} BPC on the validation tail "
        f"({time.monotonic() - start:.1f} s)")
  best_ckpts.close()
  if primary:
    loop.write_json(workdir / "results.json", summary)
    plots.plot_metrics(log.read(), workdir / "metrics.png", title=f"{config.model} on "
                       f"{pathlib.Path(corpus.path).name}")
  if not math.isfinite(summary.get("dynamic_val_bpc", 0.0)):
    raise TrainingError(f"dynamic evaluation diverged (NaN/Inf BPC) at --dynamic_lr "
                        f"{summary['dynamic']['lr']}: try a lower rate with dynamic_eval.py")
  out(f"stopped ({result.reason}) at iter {result.step}; best validation "
      f"{best['val_bpc']:.4f} BPC at iter {best['step']}; outputs in {workdir}")
  if result.reason == "interrupted":
    out(f"checkpoint saved at iter {result.last_saved}: continue with --resume")
  loop.raise_if_interrupted(result)
  return summary


def run_gradcheck(model, ts, batcher, lanes, out) -> None:
  """The seed's --gradcheck: jax.grad vs finite differences on the first training batch."""
  _, batch = batcher.next(lanes)
  rows = gradcheck.check_model(model, params=ts.params, states=ts.model_state, batch=batch)
  out(gradcheck.format_table(rows))
  _, reason = gradcheck.verdict(rows, 1e-4)
  note = "" if model.config.dtype == "float64" else " (float32: pass --fp64 for a tight check)"
  out(f"gradient check: {reason}{note}")


def restore_trained(workdir: str | pathlib.Path, best: bool = False):
  """(config, model, TrainState, vocab, meta) from the latest (or best-validation) checkpoint
  of an alice.py run; nothing in `workdir` is modified."""
  folder = pathlib.Path(workdir) / ("best" if best else "checkpoints")
  if not checkpoint.holds_checkpoints(folder):
    where = f"in {folder}" if folder.is_dir() else f"folder at {folder}"
    raise checkpoint.CheckpointError(f"no checkpoint {where}: train a model there first "
                                     f"(python experiments/alice.py --workdir {workdir})")
  ckpts = checkpoint.Checkpoints(folder, create=False)
  built = {}

  def template(meta):
    built["config"] = RunConfig.from_json(meta["config"])
    built["vocab"] = data.Vocab.from_list(meta["vocab"])
    model, optimizer = make_model(built["config"], built["vocab"].size)
    built["model"] = model
    return {"train": train.init_train_state(model, optimizer, jax.random.key(0),
                                            built["config"].batch_size),
            "rng": checkpoint.key_to_array(jax.random.key(0))}

  step, meta, restored = ckpts.restore_latest(
      template, is_ours, KIND, say=lambda line: print(line, file=sys.stderr))
  ckpts.close()
  return built["config"], built["model"], restored["train"], built["vocab"], {**meta, "step": step}


def restore_for_sampling(workdir: str | pathlib.Path, best: bool = False):
  """(model, params, vocab, meta) from the latest (or best-validation) checkpoint."""
  _, model, ts, vocab, meta = restore_trained(workdir, best)
  return model, ts.params, vocab, meta


def error_types() -> tuple[type[BaseException], ...]:
  return (data.DataError, checkpoint.CheckpointError, TrainingError)

