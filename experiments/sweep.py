"""Sweep alice.py's hyperparameters with Optuna: grid, random or TPE, pruned, resumable.

  python experiments/sweep.py --workdir runs/sweep --param lr=0.01:1:log --param hidden=64,128 \\
      --set model=lstm --steps 1000 --trials 16 --workers 2
  python experiments/sweep.py --workdir runs/sweep ... (the same command again: resumes)
  python experiments/sweep.py --workdir runs/sweep --report   # tables and plots, as it stands

--param NAME=SPEC sweeps a setting: a list `a,b,c`, a range `low:high` or `low:high:log`
(int or float as the setting is; `none` in a list leaves an optional one off). --set
NAME=VALUE fixes one for every trial. NAME is any run setting or model hyperparameter of
alice.py (lr, eps, clip_norm, clip_value, weight_decay, dropout, weight_drop, init_scale,
hidden, memory_size/N, word_size/W, read_heads/R, seq_length, batch_size, overlap, model,
seed...).

Each trial is an alice.py run in <workdir>/trials/NNNN (its log.txt, metrics.jsonl,
checkpoints), trained for --steps iterations or --seconds, evaluated every --eval_every
iterations (reported to the pruner) and scored by its best validation BPC. The study is
kept in <workdir>/study.db (SQLite) or in --storage URL, which workers on other machines
can join by running the same command with the same --storage and --study. Ctrl-C or a
killed worker loses no finished trial; running the command again retries the unfinished
ones from their checkpoints. At the end: results.csv / results.md (ranked), params.png,
curves.png and best_trial (a link to the best trial's folder; sample from it with
experiments/sample.py --workdir <workdir>/best_trial, or continue it with alice.py
--workdir <workdir>/best_trial --resume). Every setting and both ends of every range are
checked before the first trial; a sweep whose trials all failed ends in a one-line error.

--population K trains K trials at once as one vmapped program; it needs every swept
setting to be one that keeps array shapes (lr, eps, clip_norm, clip_value,
weight_decay, init_scale, seed).
"""

from __future__ import annotations

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C while loading: no traceback

from dncjax import cli  # noqa: E402
from dncjax.sweeps import command, errors, runs  # noqa: E402


def main(argv=None) -> int:
  parser = cli.ArgumentParser(description=__doc__)
  command.add_flags(parser)
  return command.main(parser.parse_args(argv))


if __name__ == "__main__":
  cli.run(main, runs.trial_errors() + (errors.SweepError,))
