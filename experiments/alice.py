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

from dncjax import cli  # noqa: E402
from dncjax.charlm import config, job  # noqa: E402
from dncjax.training import loop, run  # noqa: E402

RUN = run.RunOptions("runs/alice", schedule=loop.Schedule(
    timelimit=3600.0, report_interval=20, eval_every=500, checkpoint_every=500))


def parse_args(argv=None):
  p = cli.ArgumentParser(description=__doc__)
  cli.add_fp64_flag(cli.add_config_flags(
      p, config.RunConfig(), "run (a resumed run must agree with its checkpoint)",
      model_defaults=config.MODEL_DEFAULTS))
  cli.add_run_flags(p, RUN, "checkpoints, metrics, samples, plots")
  cli.add_option_flags(p, config.Options(), "evaluation and samples")
  cli.add_device_flags(p)
  return p, p.parse_args(argv)


def main(argv=None) -> int:
  parser, args = parse_args(argv)
  options = cli.options(args, config.Options)  # checked here, before anything loads
  run_options = cli.run_options(args, RUN)
  job.train_and_evaluate(config.RunConfig(), options, run_options, cli.given(args, parser),
                         devices=cli.devices(args))
  return 0


if __name__ == "__main__":
  cli.run(main, job.error_types())
