"""Compare task runs (e.g. seeds of several settings) by their bit errors at one length.

`python experiments/tasks_report.py --help` lists its flags; the program is
`dncjax.commands.tasks_report`, also installed as the console command `dncjax-tasks-report`.
"""

from dncjax.commands.tasks_report import main

__all__ = ["main"]  # tests and other scripts call main(argv)

if __name__ == "__main__":
  from dncjax.commands.tasks_report import console
  console()
