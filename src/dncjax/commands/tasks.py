"""Train a model (default: the paper's DNC) on copy, repeat copy or associative recall.

  python experiments/tasks.py --task copy --timelimit 600 --eval_length 15 20
  python experiments/tasks.py --task repeat_copy --bits 4 --max_length 5 --max_repeats 3
  python experiments/tasks.py --task copy --workdir runs/copy --resume --steps 20000
  python experiments/tasks.py --task copy --max_length 20 --curriculum --eval_every 500
  python experiments/tasks.py --task copy --seeds 5 --workdir runs/copy5

(`dncjax-tasks` is the same command.) Prints the progress line (I: T s, iter N, X loss,
Y bit_errors, Z seq/s; loss in nats and bit errors per sequence, both on the training
batches), evaluates on fixed sequences never trained on (and at each --eval_length, to
test generalisation), and keeps checkpoints, metrics.jsonl, loss.png, bit_errors.png,
log.txt and results.json in --workdir. Ctrl-C saves and stops; --resume continues
exactly where the last checkpoint left off. With --curriculum the longest sequence
trained on (the level) starts at --curriculum_start and grows by --curriculum_increment
at each evaluation whose bit errors per sequence at the level's length are at most
--curriculum_threshold, up to --max_length. --seeds K trains seeds --seed .. --seed + K - 1
as one vmapped program, each member writing a run's files in WORKDIR/seed<N> (resume it
with --resume --seeds K). Compiled programs are cached in $DNCJAX_CACHE_DIR or
~/.cache/dncjax/jax (DNCJAX_COMPILE_CACHE=0: off).
"""

from __future__ import annotations

from dncjax import cli
from dncjax.tasks import config, curriculum
from dncjax.training.config import RunOptions, Schedule

RUN = RunOptions(None, schedule=Schedule(
    timelimit=600.0, report_interval=100, eval_every=1000, checkpoint_every=1000))


def parser() -> cli.ArgumentParser:
  """The program's flags, built from the config dataclasses (nothing heavy loads)."""
  p = cli.ArgumentParser(description=__doc__)
  cli.add_fp64_flag(cli.add_config_flags(
      p, config.RunConfig(), "run (a resumed run must agree with its checkpoint; task sizes "
      "left unset: the task's own defaults)", model_defaults=config.MODEL_DEFAULTS))
  cli.add_run_flags(p, RUN, "checkpoints, metrics, plots (default: runs/TASK)")
  cli.add_option_flags(p, config.Options(), "evaluation")
  cli.add_option_flags(p, config.Population(), "several seeds at once")
  return p


def main(argv=None) -> int:
  """Runs the program on `argv` (default: the command line); returns the exit status."""
  p = parser()
  args = p.parse_args(None if argv is None else [str(a) for a in argv])
  given = cli.given(args, p)
  options = cli.options(args, config.Options)
  population = cli.options(args, config.Population)
  args.workdir = args.workdir or f"runs/{given.value('task.name', 'copy')}"
  run_options = cli.run_options(args, RUN)
  if not run_options.resume:  # a fresh run's settings, checked before JAX loads
    settings = config.as_run_settings(given)
    run_config = settings.apply(config.defaults_for(settings), config.MODEL_DEFAULTS)
    curriculum.check_schedule(run_config.curriculum, run_options.schedule.eval_every)
    population.check(run_config.seed)
  if population.seeds > 1:
    from dncjax.tasks import population as seeds  # pylint: disable=import-outside-toplevel
    seeds.train_population(options, run_options, given, population.seeds)
    return 0
  from dncjax.tasks import job  # pylint: disable=import-outside-toplevel
  job.train_and_evaluate(options, run_options, given)
  return 0


def errors():
  """The job's errors that end the program with a one-line message (loads the job)."""
  from dncjax.tasks import job  # pylint: disable=import-outside-toplevel
  return job.error_types()


def console() -> None:
  """The console command: `main` with one-line errors and exit statuses."""
  cli.run(main, errors, command=True)
