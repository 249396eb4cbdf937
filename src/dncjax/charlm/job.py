"""Character-level language modelling (the seed's job on alice29.txt), end to end.

`train_and_evaluate(config, options, run_options)` runs the `CharLM` job on the run
skeleton (`dncjax.training.run`): it loads the text and splits it (training |
development | tail, `data.py`), builds the model and optimiser, trains on lanes of
windows of the training split, evaluates on the development split (dev BPC), samples
text, keeps the latest checkpoints and the best one on the development split, and at the
end scores the chosen state once on the tail (static BPC, and dynamic evaluation: Krause
et al. 2017; `scoring.py`); it writes metrics.jsonl, samples.txt, metrics.png and
results.json. experiments/alice.py is its command line.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from dncjax import configs, models
from dncjax.charlm import batches, data, evaluate, sampling, scoring
from dncjax.charlm.config import MODEL_DEFAULTS, Options, RunConfig
from dncjax.training import checkpoint, loop, optim, parallel, plots, run, train

KIND = "char-LM"


def build_model(config: RunConfig, vocab_size: int):
  """(model, optimizer) of `config` for a vocabulary of `vocab_size` characters."""
  models.enable_x64_for(config.model)
  model = models.build(dataclasses.replace(config.model, input_size=vocab_size,
                                           output_size=vocab_size))
  train.check_dropout(model, config.dropout, config.weight_drop)
  train.check_fits(model, copies=5 if config.average else 4)
  return model, optim.with_average(optim.make(config.optim), config.average)


def evaluated(state):
  """`state` with the parameters a run evaluates: their average with --average."""
  return state._replace(params=optim.evaluated(state.params, state.opt_state))


def initial_run_state(model, optimizer, batcher: batches.LaneBatcher, config: RunConfig):
  """(TrainState, lane state, raw sampling key) of a fresh run: all drawn from config.seed."""
  key = jax.random.key(config.seed)
  ts = train.init_train_state(model, optimizer, jax.random.fold_in(key, 0),
                              config.data.batch_size)
  return (ts, batcher.init(config.seed), checkpoint.key_to_array(jax.random.fold_in(key, 1)))


def fresh_best() -> dict:
  """The record of the best development BPC before any evaluation."""
  return {"dev_bpc": math.inf, "step": None}


def meta_extra(vocab: data.Vocab, lanes: batches.LaneState, best: dict) -> dict:
  """The char-LM part of a checkpoint's metadata."""
  return {"vocab": vocab.to_list(), "data": lanes.to_dict(), "best": best}


class CharLM(run.Job):
  """The char-LM job: lanes of windows of one text, BPC, samples, dynamic evaluation.

  With `devices` > 1 the lanes are split over a device mesh (dncjax.training.parallel);
  in a multi-host run only process 0 prints and writes files, all of them checkpoint."""
  kind, config_cls, model_defaults, other_folders = KIND, RunConfig, MODEL_DEFAULTS, ("best",)

  def __init__(self, options: Options = Options(), devices: int | str = 1, out=print):
    self.primary = parallel.is_primary()
    super().__init__(out if self.primary else (lambda *a, **k: None))
    self.options, self.devices = options, devices
    self.best = fresh_best()
    self.best_state = None  # the TrainState best on the development split, if any
    self.best_ckpts = None

  def agreement(self, saved: RunConfig, given: configs.Given):
    """As `Job.agreement`, but --data.path may differ from the checkpoint's (the text may move)."""
    return given.without("data.path").disagreements(saved)  # the text may move

  def on_resume(self, saved: RunConfig, given: configs.Given) -> RunConfig:
    """The checkpoint's config, with --data.path if given (`build` checks its vocabulary)."""
    if given.value("data.path"):  # its vocabulary is checked once it is read
      return configs.replace(saved, "data.path", given.value("data.path"))
    return saved

  def build(self, config: RunConfig, meta: dict | None) -> None:
    """Builds the device mesh, corpus, vocabulary, model, optimiser, lane batcher and train
    step; checks the options against the text and, on a resume, its vocabulary."""
    if models.enable_x64_for(config.model):
      self.out(models.X64_NOTICE)
    self.mesh = parallel.make_mesh(self.devices, config.data.batch_size)
    if jax.process_count() > 1 and (self.run_options.schedule.steps is None
                                    or self.run_options.schedule.timelimit is not None):
      raise ValueError("a multi-host run needs --steps and no --timelimit (each process "
                       "would stop at its own clock)")
    d = config.data
    self.corpus = data.load(d)
    self.vocab = vocab = self.corpus.vocab
    self.model, self.optimizer = build_model(config, vocab.size)
    self.batcher = batches.lane_batcher(self.corpus.train_ids, d.batch_size, d.seq_length,
                                        d.overlap)
    if meta is not None and meta["vocab"] != vocab.to_list():
      raise checkpoint.CheckpointError(
          f"--resume: the vocabulary of {self.corpus.path} ({vocab.size} characters) is not "
          f"the checkpoint's ({len(meta['vocab'])} characters)")
    self.has_dev = len(self.corpus.dev_ids) > 0
    self._check_options()
    self.items_per_step = d.batch_size * d.seq_length
    self.train_step = train.make_train_step(self.model, self.optimizer, dropout=config.dropout,
                                            weight_drop=config.weight_drop)

  def _check_options(self) -> None:
    """Options that only the text can refute: checked now, not after training."""
    o, vocab = self.options, self.vocab
    self.prime_ids = vocab.encode(o.prime) if o.prime else vocab.encode(vocab.decode([0]))
    scoring.check_options(o, self.corpus)
    settings = scoring.settings_of(o, self.config) if o.dynamic_eval else []
    if len(settings) > 1 and not self.has_dev:
      self.out(f"no development split to choose dynamic evaluation's setting on: the first of "
               f"{len(settings)} is used ({settings[0].describe()})")

  def fresh(self) -> dict:
    """The TrainState (sharded on a mesh) and sampling key of a fresh run; sets the lanes."""
    ts, self.lanes, self.rng = initial_run_state(self.model, self.optimizer, self.batcher,
                                                 self.config)
    if self.mesh is not None:
      ts = parallel.shard_train_state(ts, self.mesh)
    return {"train": ts, "rng": self.rng}

  def restored(self, items: dict, meta: dict) -> dict:
    """Takes up the sampling key, lane positions and best record of the checkpoint (a run
    without a development split keeps none)."""
    self.rng = np.asarray(items["rng"])
    self.lanes = batches.LaneState.from_dict(meta["data"])
    self.best = meta["best"] if self.has_dev else fresh_best()
    return {**items, "rng": self.rng}

  def begin(self, items: dict, step: int, resume: bool) -> None:
    """Opens best/ (its record wins on a resume), clears a fresh run's samples.txt, prints
    the data and model, prepares the evaluation and runs --gradcheck if asked."""
    folder, config, corpus, ts = self.workdir, self.config, self.corpus, items["train"]
    if self.has_dev:
      self.best_ckpts = checkpoint.Checkpoints(folder / "best", keep=1)
      if resume and self.best_ckpts.latest_step() is not None:
        try:  # the record follows what best/ holds
          self.best = self.best_ckpts.restore_meta()[1]["best"]
        except checkpoint.CheckpointError as e:
          self.out(f"warning: {e}; the best record of the checkpoint is kept")
    if self.primary and not resume and (folder / "samples.txt").exists():
      (folder / "samples.txt").unlink()
    self.out(f"data {corpus.path}: {len(corpus.train_ids)} training / {len(corpus.dev_ids)} "
             f"development / {corpus.tail_length} tail characters, {self.vocab.size} distinct")
    if not self.has_dev:
      self.out("no development split (--dev_fraction 0): evaluations only sample, no best "
               "checkpoint is kept, and the last state is scored")
    self.out(f"model {config.model_name} {self.model.config}; "
             f"{sum(p.size for p in jax.tree.leaves(ts.params)):,} parameters; workdir {folder}")
    if self.mesh is not None:
      self.out(f"data parallel: {config.data.batch_size // self.mesh.size} lanes on each of "
               f"{self.mesh.size} devices ({jax.process_count()} process(es))")
    self.dev_windows = evaluate.stack_validation(corpus.dev_ids, config.data.seq_length,
                                                 self.options.eval_lanes)
    self.static_eval = evaluate.make_static_eval(self.model)
    if self.options.gradcheck:
      host = ts if self.mesh is None else parallel.to_host(ts)
      evaluate.run_gradcheck(self.model, host, self.batcher.next(self.lanes)[1], self.out)

  def meta(self, step: int) -> dict:
    """The char-LM metadata of a checkpoint: vocabulary, lane positions, best record."""
    return meta_extra(self.vocab, self.lanes, self.best)

  def next_batch(self):
    """The next window of every lane (sharded on a mesh); advances the lanes."""
    self.lanes, batch = self.batcher.next(self.lanes)
    return batch if self.mesh is None else parallel.shard_batch(batch, self.mesh)

  def evaluate(self, state, step: int) -> dict:
    """Dev BPC, on the development split (a new best is saved in best/), and, if asked, a
    sample printed."""
    metrics = {}
    state = evaluated(state)  # best/ holds the parameters evaluated
    params = state.params if self.mesh is None else parallel.to_host(state.params)
    if self.dev_windows is not None:
      metrics["dev_bpc"] = parallel.from_primary(  # on one device, the same on every process
          lambda: evaluate.static_bpc(self.static_eval, params, self.dev_windows))
      if metrics["dev_bpc"] < self.best["dev_bpc"]:
        self.best = {"dev_bpc": metrics["dev_bpc"], "step": step}
        self.best_state = state
        self.best_ckpts.save(step, {"train": state, "rng": self.rng}, run.checkpoint_meta(
            self.kind, self.config, self.model.config, step, 0.0, **self.meta(step)))
    if self.options.sample_length and self.primary:
      self.out("----\n" + self.sample_text(params, step) + "\n----")
    return metrics

  def sample_text(self, params, step: int) -> str:
    """The prime and `sample_length` characters sampled after it (the key: the run's, folded
    with `step`), also appended to samples.txt."""
    o = self.options
    key = jax.random.fold_in(checkpoint.array_to_key(self.rng), step)
    ids, _ = sampling.sample(self.model, params, self.model.initial_state(),
                             jnp.asarray(self.prime_ids), key, o.sample_length, o.temperature)
    text = o.prime + self.vocab.decode(np.asarray(ids))
    with (self.workdir / "samples.txt").open("a") as f:
      f.write(f"---- iter {step}\n{text}\n")
    return text

  def summarise(self, result: loop.LoopResult, logged: list[dict]) -> dict:
    """results.json: the stop, the best dev BPC and its iter, the last train BPC, when it
    reached the target BPC and, after a run that ended on its budget, the final scores."""
    if self.best_ckpts is not None:
      self.best_ckpts.wait()
    best = self.best if self.has_dev else {"dev_bpc": None, "step": None}
    summary = {"step": result.step, "elapsed_s": result.elapsed, "stopped_by": result.reason,
               "best_dev_bpc": best["dev_bpc"], "best_step": best["step"]}
    train_records = [r for r in logged if "train_bpc" in r]
    if train_records:
      target = self.options.target_bpc
      summary["train_bpc"] = train_records[-1]["train_bpc"]
      reached = [r for r in train_records if r["train_bpc"] <= target]
      if reached:  # the seed's headline: 1.2808 BPC after 4163 s
        summary[f"time_to_{target}_bpc_s"] = reached[0]["time"]
        summary[f"iter_to_{target}_bpc"] = reached[0]["step"]
    if result.reason in ("steps", "timelimit"):
      summary.update(self.final_scores(result))
    return summary

  def scored_state(self, result: loop.LoopResult):
    """(TrainState, checkpoint folder, step) of the state the run is scored by: the best
    on the development split, else (no development split) the last."""
    if not self.has_dev or self.best["step"] is None:
      return evaluated(result.state), "checkpoints/", result.step
    if self.best_state is None:  # found before a resume
      template = {"train": result.state, "rng": self.rng}
      self.best_state = self.best_ckpts.restore_state(self.best["step"], template)["train"]
    return self.best_state, "best/", self.best["step"]

  def final_scores(self, result: loop.LoopResult) -> dict:
    """The chosen state scored on the development split and once on the tail (static and,
    with --dynamic_eval, dynamic BPC: `scoring.score_run`)."""
    state, folder, step = self.scored_state(result)
    if self.mesh is not None:
      state = parallel.to_host(state._replace(model_state=None))
    start = time.monotonic()
    scorer = scoring.Scorer(self.model, self.config, self.corpus.train_ids, state.params,
                            state.opt_state, self.options.eval_lanes, self.static_eval)
    out = {"scored_step": step, "scored_checkpoint": folder,
           **scoring.score_run(scorer, self.corpus, self.options, self.config,
                               parallel.from_primary, self.out)}
    self.out(f"scored the state of iter {step} ({folder}) in {time.monotonic() - start:.1f} s")
    return out

  def finish(self, result: loop.LoopResult, summary: dict, logged: list[dict]) -> None:
    """Closes best/, plots metrics.png and prints the closing line; a TrainingError if
    dynamic evaluation diverged."""
    if self.best_ckpts is not None:
      self.best_ckpts.close()
    if self.primary:
      plots.plot_metrics(logged, self.workdir / "metrics.png", title=f"{self.config.model_name}"
                         f" on {pathlib.Path(self.corpus.path).name}")
    if scoring.diverged(summary):
      where = (f"with each of the {len(summary['dynamic_grid'])} settings tried"
               if "dynamic_grid" in summary else f"at --dynamic_lr {summary['dynamic']['lr']}")
      raise loop.TrainingError(f"dynamic evaluation diverged (NaN/Inf BPC) {where}: try a "
                               f"lower rate with dynamic_eval.py")
    best = (f"best dev {self.best['dev_bpc']:.4f} BPC at iter {self.best['step']}; "
            if self.has_dev and self.best["step"] is not None else "")
    tail = (f"tail {summary['tail_bpc']:.4f} BPC" + (
        f" (dynamic {summary['dynamic_tail_bpc']:.4f})" if "dynamic_tail_bpc" in summary
        else "") + "; ") if "tail_bpc" in summary else ""
    self.out(f"stopped ({result.reason}) at iter {result.step}; {best}{tail}outputs in "
             f"{self.workdir}")

  def close(self) -> None:
    """Closes best/'s checkpoints, if open."""
    if self.best_ckpts is not None:
      self.best_ckpts.close()


def train_and_evaluate(config: RunConfig, options: Options, run_options: run.RunOptions,
                       given: configs.Given = configs.Given(), devices: int | str = 1,
                       out=print, on_eval=None) -> dict:
  """Runs (or resumes) a char-LM run; returns the summary written to results.json.

  `config` holds the defaults the `given` settings go on (on a resume the checkpoint's
  config, which they must agree with). `on_eval(step, metrics)` is called after each
  evaluation; a string it returns stops the run with that reason (see `loop.run`), which
  results.json records as `stopped_by`. Process 0 holds the workdir's lock
  (dncjax.training.workdir): a second run in the same folder is refused before it reads
  or writes anything there."""
  job = CharLM(options, devices, out)
  return run.run(job, config, given, run_options, on_eval)


def error_types() -> tuple[type[BaseException], ...]:
  """The errors of a char-LM run that end the program with a one-line message."""
  return (data.DataError, checkpoint.CheckpointError, loop.TrainingError)

