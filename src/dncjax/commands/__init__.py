"""The command-line programs: `experiments/*.py` and the console commands `dncjax-*`.

Each module builds its parser from the config dataclasses and checks what the user typed
before JAX, orbax or optuna load (so `--help` and a bad flag answer at once), then loads
its job and runs it: `alice` (dncjax-train), `tasks` (dncjax-tasks), `sweep`
(dncjax-sweep), `sample` (dncjax-sample), `dynamic_eval` (dncjax-dynamic-eval),
`gradcheck` (dncjax-gradcheck), `tasks_report` (dncjax-tasks-report). `main(argv)` runs
one; `console()` is the entry point, with one-line errors and exit statuses.
"""
