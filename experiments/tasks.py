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

from dncjax import cli  # noqa: E402
from dncjax.tasks import config, job  # noqa: E402
from dncjax.training import loop, run  # noqa: E402

RUN = run.RunOptions(None, schedule=loop.Schedule(
    timelimit=600.0, report_interval=100, eval_every=1000, checkpoint_every=1000))


def parse_args(argv=None):
  p = cli.ArgumentParser(description=__doc__)
  cli.add_fp64_flag(cli.add_config_flags(
      p, config.RunConfig(), "run (a resumed run must agree with its checkpoint; task sizes "
      "left unset: the task's own defaults)", model_defaults=config.MODEL_DEFAULTS))
  cli.add_run_flags(p, RUN, "checkpoints, metrics, plots (default: runs/TASK)")
  cli.add_option_flags(p, config.Options(), "evaluation")
  return p, p.parse_args(argv)


def main(argv=None) -> int:
  parser, args = parse_args(argv)
  given = cli.given(args, parser)
  options = cli.options(args, config.Options)
  args.workdir = args.workdir or f"runs/{given.value('task.name', 'copy')}"
  job.train_and_evaluate(options, cli.run_options(args, RUN), given)
  return 0


if __name__ == "__main__":
  cli.run(main, job.error_types())
