"""Train a model (default: the paper's DNC) on copy, repeat copy or associative recall.

`python experiments/tasks.py --help` lists its flags; the program is
`dncjax.commands.tasks`, also installed as the console command `dncjax-tasks`.
"""

from dncjax.commands.tasks import main

__all__ = ["main"]  # tests and other scripts call main(argv)

if __name__ == "__main__":
  from dncjax.commands.tasks import console
  console()
