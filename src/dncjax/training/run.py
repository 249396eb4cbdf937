"""The run skeleton shared by the jobs (the char-LM job, the tasks job).

`run(job, defaults, given, options)` does, for any job, what every training run does:
lock the workdir (one run per folder), resolve the config (the flags `given` on the job's
defaults for a fresh run, which refuses a folder holding checkpoints; the checkpoint's
config for `--resume`, which the flags must agree with), build, restore everything the
uninterrupted run would hold, write config.json, keep metrics.jsonl, train on the
schedule (`loop.run`: reports, evaluations, checkpoints, time limit, Ctrl-C, NaN stop),
and write results.json. A job supplies only what is its own (see `Job`): how to build
from a config, the next batch, how to evaluate, and how to summarise.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import sys
from typing import Any, Callable

from dncjax import configs
from dncjax.training import checkpoint, compile_cache, console, loop, records, workdir
from dncjax.training.config import RunOptions  # noqa: F401  (the options' home)

FORMAT = 2  # checkpoint layout: bump when it changes (1: before the one optimiser chain)


def is_kind(meta: dict, kind: str) -> bool:
  """Whether checkpoint metadata is of a `kind` job's run, in this version's format."""
  return meta.get("format") == FORMAT and meta.get("kind") == kind


def describe_kind(kind: str) -> str:
  """The name of a `kind` job's checkpoints in messages: '<kind> checkpoint of format N'."""
  return f"{kind} checkpoint of format {FORMAT}"


class Job:
  """What a job adds to the skeleton. `run` calls, in order: `build(config, meta)` (meta:
  the checkpoint's, on a resume), `fresh()` (the checkpointed items of a fresh run:
  {'train': TrainState, ...}), `restored(items, meta)` on a resume, `begin(items,
  step, resume)` (print what runs, prepare outputs), then `next_batch()` and `evaluate(state,
  step)` while training (`meta(step)` adds the job's checkpoint metadata), and at the end
  `summarise(result, records)` (results.json) and `finish(result, summary, records)`;
  `close()` whatever happened."""
  kind = "job"             # names the checkpoints: 'char-LM', 'task'
  config_cls: type = object
  model_defaults: dict[str, Any] = {}
  other_folders: tuple[str, ...] = ()  # checkpoint folders besides checkpoints/ (best/)
  primary = True           # this process writes files (multi-host: process 0 only)
  unit, metric, extra, scale = "char", "BPC", (), None  # the progress line (loop.run)

  def __init__(self, out: Callable[[str], None] = print):
    self.out = out
    self.config = self.workdir = self.run_options = self.model = None
    self.train_step = None
    self.items_per_step = 1

  @property
  def what(self) -> str:
    """The name of this job's checkpoints in messages (see `describe_kind`)."""
    return describe_kind(self.kind)

  def is_ours(self, meta: dict) -> bool:
    """Whether checkpoint metadata `meta` is of this job's kind, in this version's format."""
    return is_kind(meta, self.kind)

  def agreement(self, saved, given: configs.Given) -> list[tuple[str, Any, Any]]:
    """(flag, given, saved) of the settings a resume gave that its checkpoint lacks."""
    return given.disagreements(saved)

  def on_resume(self, saved, given: configs.Given):
    """The config a resumed run goes on with (the checkpoint's)."""
    return saved

  def build(self, config, meta: dict | None) -> None:
    """Builds what the run needs from `config`: model, optimiser, data, `train_step`,
    `items_per_step`; `meta` (the checkpoint's, on a resume; else None) to check against."""
  def fresh(self) -> dict:
    """The checkpointed items of a fresh run ({'train': TrainState, ...}), seeded from the
    config; the job sets its own starting state (e.g. the data position) too."""
  def restored(self, items: dict, meta: dict) -> dict:
    """On a resume: takes up the restored `items` and their checkpoint's `meta` (e.g. the data
    position); returns the items to train on (by default, as restored)."""
    return items
  def begin(self, items: dict, step: int, resume: bool) -> None:
    """Before training from `step`: prints what runs and prepares outputs and evaluation."""
  def meta(self, step: int) -> dict:
    """The job's own metadata for a checkpoint at `step` (by default, none)."""
    return {}
  def next_batch(self):
    """The next training batch; the job keeps the data position (`meta` can save it)."""
  def evaluate(self, state, step: int) -> dict:
    """Metrics of `state` at `step` to log and print (e.g. val_bpc); by default, none."""
    return {}
  def summarise(self, result: loop.LoopResult, logged: list[dict]) -> dict:
    """The summary for results.json, from where the run stopped and the records logged."""
  def finish(self, result: loop.LoopResult, summary: dict, logged: list[dict]) -> None:
    """After results.json is written: the job's last outputs (e.g. plots) and lines."""
  def close(self) -> None:
    """Releases what the job holds (e.g. checkpoint managers), however the run ended."""


def resolve(job: Job, defaults, given: configs.Given, folder: pathlib.Path, resume: bool):
  """(config, checkpoints or None, meta or None): `given` on `defaults` for a fresh run,
  the latest checkpoint's config (which `given` must agree with) for a resumed one."""
  ckpt_dir = folder / "checkpoints"
  if not resume:
    config = given.apply(defaults, job.model_defaults)
    checkpoint.refuse_existing(ckpt_dir, *(folder / f for f in job.other_folders))
    return config, None, None
  ckpts, _, meta = checkpoint.open_latest(ckpt_dir, job.is_ours, job.what)
  try:
    saved = job.config_cls.from_json(meta["config"])
    checkpoint.check_agrees(ckpt_dir, job.agreement(saved, given))
  except BaseException:
    ckpts.close()
    raise
  return job.on_resume(saved, given), ckpts, meta


def run(job: Job, defaults, given: configs.Given, options: RunOptions,
        on_eval: Callable[[int, dict], str | None] | None = None) -> dict:
  """Runs (or resumes) `job` in `options.workdir`; returns the summary in results.json."""
  folder = pathlib.Path(options.workdir)
  held = workdir.lock(folder) if job.primary else contextlib.nullcontext()
  # the console also goes to log.txt (from open_log on), unless the job's lines go elsewhere
  with held, console.kept(folder / "log.txt", enabled=job.primary and job.out is print):
    try:
      return _run(job, defaults, given, options, on_eval, folder)
    finally:
      job.close()


def _run(job: Job, defaults, given, options: RunOptions, on_eval, folder) -> dict:
  out = job.out
  compile_cache.enable(out)  # before anything compiles
  config, ckpts, meta = resolve(job, defaults, given, folder, options.resume)
  job.config, job.workdir, job.run_options = config, folder, options
  job.build(config, meta)
  items, step, elapsed = job.fresh(), 0, 0.0
  if ckpts is not None:  # restore everything the uninterrupted run would hold now
    step, meta, items = ckpts.restore_latest(items, job.is_ours, job.what, say=out,
                                             set_aside=True)
    items, elapsed = job.restored(items, meta), meta["elapsed"]
    out(f"resumed {folder} at iter {step} ({elapsed:.1f} s trained)")
  else:
    ckpts = checkpoint.Checkpoints(folder / "checkpoints", keep=options.keep)
  log = open_log(job, folder, step, options.resume)
  job.begin(items, step, options.resume)

  def save(at_step, state, elapsed_s):
    ckpts.save(at_step, {**items, "train": state}, checkpoint_meta(
        job.kind, job.config, job.model.config, at_step, elapsed_s, **job.meta(at_step)))

  result = loop.run(step_fn=job.train_step, state=items["train"], next_batch=job.next_batch,
                    start_step=step, config=options.schedule,
                    items_per_step=job.items_per_step, log=log, save=save,
                    evaluate=job.evaluate, elapsed=elapsed, unit=job.unit,
                    bpc_scale=job.scale, metric=job.metric, extra=job.extra, print_fn=out,
                    on_eval=on_eval, progress_bar=options.progress_bar and job.primary)
  ckpts.close()
  loop.raise_if_diverged(result, ckpts.latest_step(), ckpts.directory)
  logged = log.read()
  summary = job.summarise(result, logged)
  if job.primary:
    records.write_json(folder / "results.json", summary)
  job.finish(result, summary, logged)
  if result.reason == "interrupted":
    out(f"checkpoint saved at iter {result.last_saved}: continue with --resume")
  loop.raise_if_interrupted(result)
  return summary


def restore_latest(folder: pathlib.Path, kind: str, template_of: Callable[[dict], dict]):
  """(step, meta, items) of the newest readable checkpoint of a `kind` run in `folder`,
  `template_of(meta)` giving the items' shapes; nothing in `folder` is modified."""
  ckpts = checkpoint.Checkpoints(folder, create=False)
  try:
    return ckpts.restore_latest(template_of, lambda meta: is_kind(meta, kind),
                                describe_kind(kind),
                                say=lambda line: print(line, file=sys.stderr))
  finally:
    ckpts.close()


def checkpoint_meta(kind: str, config, model_config, step: int, elapsed: float,
                    **extra) -> dict:
  """The `meta` item of a checkpoint: all a resume or a sampler needs besides arrays."""
  return {"format": FORMAT, "kind": kind, "step": step, "config": config.to_json(),
          "model_config": configs.to_json(model_config), "elapsed": elapsed, **extra}


def open_log(job: Job, folder: pathlib.Path, step: int, resume: bool):
  """metrics.jsonl (kept up to `step` on a resume; new otherwise), config.json and, from
  here, log.txt (see `console`); a process other than the primary one writes none."""
  if not job.primary:
    return records.NullLog()
  if resume and not (folder / "metrics.jsonl").exists():
    job.out(f"warning: {folder / 'metrics.jsonl'} is missing: the records before iter {step} "
            f"are lost; new ones are appended from here")
  log = records.MetricsLog(folder / "metrics.jsonl", resume_step=step if resume else None)
  (folder / "config.json").write_text(json.dumps(job.config.to_json(), indent=2) + "\n")
  console.commit()  # the run writes its folder: log.txt too, from the start of the run
  return log
