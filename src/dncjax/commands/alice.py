"""Train a character-level model on alice29.txt (or any UTF-8 text).

  python experiments/alice.py                       # the best measured setting, 10 minutes
  python experiments/alice.py --preset seed         # the original project's headline run, 1 hour
  python experiments/alice.py --model dnc --hidden 128 --timelimit 300
  python experiments/alice.py --workdir runs/alice --resume
  python experiments/alice.py --devices all         # the lanes split over every device

(`dncjax-train` is the same command.) Prints the progress line (I: T s, iter N, X BPC,
Y char/s), evaluates on the development split (--dev_fraction of the text, just before
the tail) and keeps the best checkpoint there, samples text, and at the end scores that
checkpoint once on the held-out tail (--val_fraction, the end of the text: static and
dynamic BPC). It keeps checkpoints, metrics.jsonl, samples.txt, metrics.png, log.txt and
results.json in --workdir. Ctrl-C saves and stops; --resume continues exactly where the
last checkpoint left off. --preset picks the defaults every other flag then changes.
Compiled programs are cached in $DNCJAX_CACHE_DIR or ~/.cache/dncjax/jax
(DNCJAX_COMPILE_CACHE=0: off).
"""

from __future__ import annotations

import sys

from dncjax import cli
from dncjax.charlm import config
from dncjax.training.config import RunOptions

DEFAULT_PRESET = "lstm"


def _preset(argv: list[str]) -> config.Preset:
  pre = cli.ArgumentParser(add_help=False)
  pre.add_argument("--preset", choices=sorted(config.PRESETS), default=DEFAULT_PRESET)
  return config.PRESETS[pre.parse_known_args(argv)[0].preset]


def parser(preset: config.Preset) -> cli.ArgumentParser:
  """The program's flags, built from the config dataclasses (nothing heavy loads)."""
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--preset", choices=sorted(config.PRESETS), default=DEFAULT_PRESET,
                 help="the defaults to start from: " + "; ".join(
                     f"{name}: {each.about}" for name, each in sorted(config.PRESETS.items())))
  cli.add_fp64_flag(cli.add_config_flags(
      p, preset.config, "run (a resumed run must agree with its checkpoint)",
      model_defaults=config.MODEL_DEFAULTS))
  cli.add_run_flags(p, RunOptions("runs/alice", schedule=preset.schedule),
                    "checkpoints, metrics, samples, plots")
  cli.add_option_flags(p, preset.options, "evaluation and samples")
  cli.add_device_flags(p)
  return p


def parse(argv: list[str]):
  """(parser, parsed flags, preset) of `argv`: the preset's defaults under the flags."""
  preset = _preset(argv)
  p = parser(preset)
  return p, p.parse_args(argv), preset


def main(argv=None) -> int:
  """Runs the program on `argv` (default: the command line); returns the exit status."""
  argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
  p, args, preset = parse(argv)
  options = cli.options(args, config.Options)  # checked here, before anything loads
  run_options = cli.run_options(args, RunOptions("runs/alice", schedule=preset.schedule))
  given = cli.given(args, p)
  if not run_options.resume:  # a fresh run's settings, checked before JAX loads
    given.apply(preset.config, config.MODEL_DEFAULTS)
  devices = cli.devices(args)
  from dncjax.charlm import job  # pylint: disable=import-outside-toplevel
  job.train_and_evaluate(preset.config, options, run_options, given, devices=devices)
  return 0


def errors():
  """The job's errors that end the program with a one-line message (loads the job)."""
  from dncjax.charlm import job  # pylint: disable=import-outside-toplevel
  return job.error_types()


def console() -> None:
  """The console command: `main` with one-line errors and exit statuses."""
  cli.run(main, errors, command=True)
