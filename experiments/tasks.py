"""Train a model (default: the paper's DNC) on copy, repeat copy or associative recall.

  python experiments/tasks.py --task copy --timelimit 600 --eval_length 15 20
  python experiments/tasks.py --task repeat_copy --bits 4 --max_length 5 --max_repeats 3
  python experiments/tasks.py --task copy --workdir runs/copy --resume --steps 20000

Prints the progress line (I: T s, iter N, X loss, Y bit_errors, Z seq/s; loss in nats and
bit errors per sequence, both on the training batches), evaluates on fixed sequences
never trained on (and at each --eval_length, to test generalisation), and keeps checkpoints,
metrics.jsonl, loss.png, bit_errors.png and results.json in --workdir. Ctrl-C saves and
stops; --resume continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C while loading: no traceback

import argparse
import dataclasses

import dncjax
from dncjax import cli
from dncjax.tasks import job as tasks

RUN_DEFAULTS = tasks.DEFAULT_RUN  # the paper's DNC, H=64 N=32 W=16 R=1; RMSProp lr 3e-4
OPTIONS = tasks.Options()
TASK_DEFAULTS = {  # per task, for the task flags left unset
    "copy": tasks.TaskConfig("copy"),
    "repeat_copy": tasks.TaskConfig("repeat_copy", bits=4, max_length=5, max_repeats=3),
    "associative_recall": tasks.TaskConfig("associative_recall", bits=6, min_length=2,
                                           max_length=4, item_length=2),
}


def parse_args(argv=None) -> argparse.Namespace:
  p = cli.ArgumentParser(description=__doc__)
  d, o = RUN_DEFAULTS, OPTIONS

  task = p.add_argument_group("task (unset: the task's default shown in --help)")
  task.add_argument("--task", default=None, choices=tasks.TASKS,
                    help=f"the task (default: {d.task.name})")
  for name, text, applies in [
      ("bits", "bits per vector", tasks.TASKS),
      ("min_length", "shortest sequence (associative recall: items)", tasks.TASKS),
      ("max_length", "longest sequence (associative recall: items)", tasks.TASKS),
      ("min_repeats", "repeat copy: fewest repeats", ("repeat_copy",)),
      ("max_repeats", "repeat copy: most repeats", ("repeat_copy",)),
      ("item_length", "associative recall: vectors per item", ("associative_recall",))]:
    shown = ", ".join(f"{t} {getattr(TASK_DEFAULTS[t], name)}" for t in applies)
    names = dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}"))
    task.add_argument(*names, dest=name, type=int, default=None,
                      help=f"{text} (default: {shown})")

  run = p.add_argument_group("run (a resumed run must agree with its checkpoint)")
  run.add_argument("--model", default=None, choices=dncjax.model_names(),
                   help=f"model (default: {d.model})")
  run.add_argument("--optimizer", default=None, choices=tasks.OPTIMIZERS,
                   help=f"optimiser (default: {d.optimizer})")
  for names, field, typ, text in [
      (("--batchsize", "--batch-size", "--batch_size"), "batch_size", int, "sequences B"),
      (("--lr", "--learning_rate", "--learning-rate"), "learning_rate", float, "learning rate"),
      (("--momentum",), "momentum", float, "RMSProp momentum"),
      (("--eps",), "eps", float, "optimiser epsilon (default: rmsprop 1e-10, else 1e-8)"),
      (("--clip_norm", "--clip-norm"), "clip_norm", float,
       "clip gradients by global norm (0: no clipping)"),
      (("--seed",), "seed", int, "seed of the parameters and the sequences")]:
    shown = "" if "default" in text else f" (default: {getattr(d, field)})"
    run.add_argument(*names, dest=field, type=typ, default=None, help=text + shown)
  run.add_argument("--fp64", action="store_true", default=None,
                   help="train in float64 (default: float32)")

  opt = cli.add_schedule_flags(p, o, None, "checkpoints, metrics, plots (default: runs/TASK)")
  for names, field, typ, text in [
      (("--eval_sequences", "--eval-sequences"), "eval_sequences", int,
       "sequences per evaluation set"),
      (("--target",), "target", float,
       "results.json records when the eval bit errors per sequence first fall below this")]:
    opt.add_argument(*names, dest=field, type=typ, default=getattr(o, field), help=text)
  opt.add_argument("--eval_length", "--eval-length", "--eval_lengths", dest="eval_lengths",
                   type=int, nargs="+", default=[], metavar="L",
                   help="also evaluate on sequences of each length L (generalisation)")
  cli.add_model_flags(p, dict(RUN_DEFAULTS.hyper), set_defaults=False)
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  given = {k: getattr(args, k) for k in ("model", "optimizer", "batch_size", "learning_rate",
                                         "momentum", "eps", "clip_norm", "fp64", "seed")
           if getattr(args, k) is not None}
  if given.get("clip_norm") == 0:
    given["clip_norm"] = None
  task_fields = {f.name for f in dataclasses.fields(tasks.TaskConfig)} - {"name"}
  task = {k: getattr(args, k) for k in task_fields if getattr(args, k) is not None}
  if args.task is not None:
    task["name"] = args.task
  if not args.resume:  # the task's defaults under the flags given
    task = {**dataclasses.asdict(TASK_DEFAULTS[args.task or RUN_DEFAULTS.task.name]), **task}
  given["task"] = task
  given["hyper"] = cli.model_hyperparameters(args, given.get("model", RUN_DEFAULTS.model))
  options = tasks.Options(
      workdir=args.workdir or f"runs/{args.task or RUN_DEFAULTS.task.name}",
      **cli.schedule_options(args, OPTIONS.timelimit),
      eval_sequences=args.eval_sequences, eval_lengths=tuple(args.eval_lengths),
      target=args.target)
  tasks.train_and_evaluate(RUN_DEFAULTS, options, given)
  return 0


if __name__ == "__main__":
  cli.run(main, tasks.error_types())
