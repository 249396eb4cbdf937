"""Where a trained char-LM memory core uses its memory: ablations and a trace, without training.

  python experiments/memory_use.py --workdir runs/alice_dnc --best
  python experiments/memory_use.py --workdir runs/alice_dnc --chars 5000 --excerpt 150

(`dncjax-memory-use` is the same command.) Restores the run's latest (or --best) checkpoint
and its corpus, then prints the development split's BPC with the memory as trained and
with parts of it taken away: wiped at every window, wiped at every step (a read sees only
the current write), no reads at all (dncjax.charlm.memory_use). For the dense DNC it also
runs the first --chars characters of the development split one at a time and prints the
mean write and allocation gates, each head's read modes, the slots in use and the age of
the content each head reads; it draws the first --excerpt characters in
WORKDIR/memory_use.png. The figures also go to WORKDIR/memory_use.json; nothing else in
the workdir is modified.
"""

from __future__ import annotations

from dncjax import cli


def parser() -> cli.ArgumentParser:
  """The program's flags (nothing heavy loads)."""
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--workdir", required=True, help="the run's folder (as given to alice.py)")
  p.add_argument("--best", action="store_true",
                 help="use the best checkpoint on the development split, not the latest")
  p.add_argument("--chars", type=int, default=2000,
                 help="characters of the development split traced (dense DNC)")
  p.add_argument("--excerpt", type=int, default=120, help="characters drawn in the figure")
  return p


def main(argv=None) -> int:
  """Runs the program on `argv` (default: the command line); returns the exit status."""
  args = parser().parse_args(None if argv is None else [str(a) for a in argv])
  for flag, value in (("--chars", args.chars), ("--excerpt", args.excerpt)):
    if value <= 0:
      raise cli.UsageError(f"{flag} must be positive, got {value}")
  # pylint: disable=import-outside-toplevel
  import pathlib

  from dncjax.charlm import data, memory_use, restore
  from dncjax.training import records
  config, model, ts, _, meta = restore.restore_trained(args.workdir, best=args.best)
  if not hasattr(model.initial_state(), "access"):
    raise cli.UsageError(f"--workdir {args.workdir}: model {config.model_name} has no memory")
  corpus = data.load(config.data)
  if corpus.vocab.to_list() != meta["vocab"]:
    raise data.DataError(f"the vocabulary of {corpus.path} is not the checkpoint's")
  if not len(corpus.dev_ids):
    raise data.DataError(f"{corpus.path} has no development split in this run")
  print(f"{config.model_name} {model.config}, iter {meta['step']}: development split "
        f"({len(corpus.dev_ids)} characters), windows of {config.data.seq_length}")
  bpcs = memory_use.ablation_bpcs(model, ts.params, corpus.dev_ids, config.data.seq_length)
  for name, bpc in bpcs.items():
    print(f"  {name:9s} {bpc:.4f} BPC ({bpc - bpcs['trained']:+.4f})")
  found = {"step": meta["step"], "dev_bpc": bpcs}
  if hasattr(model.config, "link_sharpness"):
    ids = corpus.dev_ids[:args.chars]
    traced = memory_use.trace(model, ts.params, ids)
    found["trace"] = stats = memory_use.statistics(traced)
    _print_statistics(stats)
    excerpt = corpus.vocab.decode(ids[:args.excerpt])
    fig = memory_use.figure(traced, excerpt, f"{config.model_name} on the development split, "
                                             f"iter {meta['step']}")
    fig.savefig(pathlib.Path(args.workdir) / "memory_use.png", dpi=110)
    print(f"figure: {pathlib.Path(args.workdir) / 'memory_use.png'}")
  records.write_json(pathlib.Path(args.workdir) / "memory_use.json", found)
  return 0


def _print_statistics(stats: dict) -> None:
  print(f"trace of {stats['steps']} characters, {stats['slots']} slots: write gate "
        f"{stats['write_gate']:.3f}, allocation gate {stats['allocation_gate']:.3f}, "
        f"slots in use {stats['slots_in_use']:.2f}")
  for r, modes in enumerate(stats["read_modes"]):
    print(f"  head {r + 1}: read modes " + ", ".join(f"{k} {v:.3f}" for k, v in modes.items())
          + f"; age of what it reads {stats['read_age_median'][r]:.1f} steps (median), "
            f"{stats['read_age_mean'][r]:.1f} (mean)")


def errors():
  """The errors that end the program with a one-line message (loads the job)."""
  from dncjax.charlm import job  # pylint: disable=import-outside-toplevel
  return job.error_types()


def console() -> None:
  """The console command: `main` with one-line errors and exit statuses."""
  cli.run(main, errors, command=True)
