"""Dynamic evaluation of a trained char-LM checkpoint, over a grid of settings.

  python experiments/dynamic_eval.py --workdir runs/alice --best --rule rms \\
      --lr 1e-4 3e-4 1e-3 --decay 0 0.01 --seq_length 16 32

Restores the run's latest (or --best) checkpoint and its corpus, scores the validation tail
statically once, then with dynamic evaluation (Krause et al., 2017; dncjax.training.dynamic) for
every combination of --rule, --seq_length, --lr and --decay, and prints one table row per
combination, best first, with its gain over static scoring in the same windows (a model
whose state is truncated at window ends scores differently in other windows). The
checkpoint is only read. --csv writes the rows to a file.
"""

from __future__ import annotations

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C while loading: no traceback

from dncjax import cli, configs  # noqa: E402
from dncjax.charlm import data, dynamic_grid, job, restore  # noqa: E402


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  dynamic_grid.add_flags(p)
  args = dynamic_grid.checked(p.parse_args(argv))
  config, model, ts, vocab, meta = restore.restore_trained(args.workdir, best=args.best)
  if args.data:
    config = configs.replace(config, "data.path", args.data)
  d = config.data
  corpus = data.load_corpus(d.path, d.val_fraction, d.seq_length)
  if corpus.vocab.to_list() != meta["vocab"]:
    raise data.DataError(f"the vocabulary of {corpus.path} is not the checkpoint's")
  combos = dynamic_grid.combinations(args.rule, args.seq_length, args.lr, args.decay)
  print(f"{args.workdir}: {config.model_name} {model.config}, iter {meta['step']}", flush=True)
  statics, rows = dynamic_grid.run_grid(config, model, ts, corpus, combos, args.eval_lanes,
                                        say=lambda line: print(line, flush=True))
  print(f"static validation {statics[d.seq_length]:.6f} BPC\n\n" + dynamic_grid.markdown(rows))
  if args.csv:
    dynamic_grid.write_csv(rows, args.csv)
  return 0


if __name__ == "__main__":
  cli.run(main, job.error_types())
