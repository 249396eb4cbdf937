"""Train a character-level model on alice29.txt (or any UTF-8 text), as the seed did.

  python experiments/alice.py                       # the seed's headline run, 1 hour
  python experiments/alice.py --model lstm --hidden 128 --timelimit 300
  python experiments/alice.py --workdir runs/alice --resume
  python experiments/alice.py --devices all         # the lanes split over every device

Prints the seed's progress line (I: T s, iter N, X BPC, Y char/s), evaluates on the
held-out tail of the text, samples text, and keeps checkpoints, metrics.jsonl,
samples.txt, metrics.png and results.json in --workdir. Ctrl-C saves and stops;
--resume continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C while loading: no traceback

import argparse
import dataclasses

import dncjax
from dncjax.charlm import job as charlm
from dncjax import cli
from dncjax.training import dynamic
from dncjax.training import parallel

RUN_DEFAULTS = charlm.RunConfig(hyper=(("hidden", 128),))
OPTIONS = charlm.Options()


def parse_args(argv=None) -> argparse.Namespace:
  p = cli.ArgumentParser(description=__doc__)
  d, o = RUN_DEFAULTS, OPTIONS

  def flag(*names, default, help, **kw):
    p.add_argument(*names, default=None, help=f"{help} (default: {default})", **kw)

  run = p.add_argument_group("run (a resumed run must agree with its checkpoint)")
  run.add_argument("--model", default=None, choices=dncjax.model_names(),
                   help=f"model (default: {d.model})")
  run.add_argument("--data", default=None, metavar="PATH",
                   help="UTF-8 text file (default: alice29.txt from $DNCJAX_DATA_DIR, the "
                        "user cache, or downloaded once from the Canterbury corpus)")
  for names, field, typ, text in [
      (("--batchsize", "--batch-size", "--batch_size"), "batch_size", int, "lanes B"),
      (("--seqlength", "--seq-length", "--seq_length"), "seq_length", int,
       "window S, characters per update"),
      (("--overlap",), "overlap", float, "window overlap; lanes advance by S*(1-overlap)"),
      (("--val_fraction", "--val-fraction"), "val_fraction", float, "held-out tail"),
      (("--lr", "--learning_rate", "--learning-rate"), "learning_rate", float, "Adagrad rate"),
      (("--eps",), "eps", float, "Adagrad epsilon (inside the square root)"),
      (("--clip_norm", "--clip-norm"), "clip_norm", float, "clip gradients by global norm"),
      (("--clip_value", "--clip-value"), "clip_value", float, "clip each gradient entry"),
      (("--weight_decay", "--weight-decay"), "weight_decay", float,
       "L2 weight decay added to the gradient"),
      (("--dropout",), "dropout", float,
       "dropout on the controller output (and read vectors) before the readout"),
      (("--weight_drop", "--weight-drop"), "weight_drop", float,
       "DropConnect on the recurrent matrices W_hh, one mask per window (AWD-LSTM)"),
      (("--seed",), "seed", int, "seed for parameters, lanes and sampling")]:
    run.add_argument(*names, dest=field, type=typ, default=None,
                     help=f"{text} (default: {getattr(d, field)})")
  run.add_argument("--fp64", action="store_true", default=None,
                   help="train in float64 (default: float32)")

  opt = cli.add_schedule_flags(p, o, o.workdir, "checkpoints, metrics, samples, plots")
  for names, field, typ, text in [
      (("--sample_length", "--sample-length"), "sample_length", int,
       "characters sampled at each evaluation (0: none)"),
      (("--prime",), "prime", str, "text the samples start from"),
      (("--temperature",), "temperature", float, "sampling temperature"),
      (("--eval_lanes", "--eval-lanes"), "eval_lanes", int,
       "lanes the validation tail is split into (1: one pass, longest context)"),
      (("--target_bpc", "--target-bpc"), "target_bpc", float,
       "results.json records the time the training BPC first reaches this"),
      (("--dynamic_lr", "--dynamic-lr"), "dynamic_lr", float,
       "learning rate of dynamic evaluation (default: the training rate)"),
      (("--dynamic_decay", "--dynamic-decay"), "dynamic_decay", float,
       "dynamic evaluation, rms rule: decay towards the trained parameters"),
      (("--dynamic_seq_length", "--dynamic-seq-length"), "dynamic_seq_length", int,
       "dynamic evaluation window (default: --seqlength)")]:
    opt.add_argument(*names, dest=field, type=typ, default=getattr(o, field),
                     help=text)
  opt.add_argument("--dynamic_rule", "--dynamic-rule", choices=dynamic.RULES,
                   default=o.dynamic_rule, help="dynamic evaluation update: the training "
                   "optimiser continued, or Krause et al.'s RMS rule (dncjax/dynamic.py)")
  opt.add_argument("--dynamic_eval", "--dynamic-eval", action=argparse.BooleanOptionalAction,
                   default=o.dynamic_eval, help="dynamic evaluation at the end")
  opt.add_argument("--gradcheck", action="store_true",
                   help="check jax.grad against finite differences before training")
  par = p.add_argument_group("devices and hosts (may change between a run and its resumption)")
  par.add_argument("--devices", default=None, metavar="N|all",
                   help="split the batch's lanes over N devices (a divisor of the batch size) "
                        f"or all of them (default: {o.devices}; all with --coordinator; on "
                        "CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N gives N)")
  par.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="multi-host run: address of process 0's coordinator service")
  par.add_argument("--num_processes", "--num-processes", dest="num_processes", type=int,
                   metavar="N", default=None, help="multi-host run: number of processes")
  par.add_argument("--process_id", "--process-id", dest="process_id", type=int, metavar="I",
                   default=None, help="multi-host run: this process's index, 0 .. N - 1")
  cli.add_model_flags(p, dict(RUN_DEFAULTS.hyper), set_defaults=False)
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  run_fields = {f.name for f in dataclasses.fields(charlm.RunConfig)} - {"hyper"}
  given = {k: getattr(args, k) for k in run_fields if getattr(args, k, None) is not None}
  given["hyper"] = cli.given_model_flags(args)  # checked against the model when it is built
  options = charlm.Options(
      workdir=args.workdir, **cli.schedule_options(args, OPTIONS.timelimit),
      sample_length=args.sample_length, prime=args.prime, temperature=args.temperature,
      eval_lanes=args.eval_lanes, dynamic_eval=args.dynamic_eval, dynamic_lr=args.dynamic_lr,
      dynamic_rule=args.dynamic_rule, dynamic_decay=args.dynamic_decay,
      dynamic_seq_length=args.dynamic_seq_length,
      gradcheck=args.gradcheck, target_bpc=args.target_bpc)  # checked here
  devices = args.devices if args.devices in (None, "all") else _count(args.devices)
  # before anything touches a device: jax.distributed.initialize must come first
  multi_host = parallel.initialize_distributed(args.coordinator, args.num_processes,
                                               args.process_id)
  if devices is None:
    devices = "all" if multi_host else OPTIONS.devices
  options = dataclasses.replace(options, devices=devices)
  charlm.train_and_evaluate(RUN_DEFAULTS, options, given)
  return 0


def _count(devices) -> int:
  try:
    return int(devices)
  except ValueError:
    raise cli.UsageError(f"--devices must be a positive integer or 'all', "
                         f"got {devices!r}") from None


if __name__ == "__main__":
  cli.run(main, charlm.error_types())
