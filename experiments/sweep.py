"""Sweep alice.py's hyperparameters with Optuna: grid, random or TPE, pruned, resumable.

`python experiments/sweep.py --help` lists its flags; the program is
`dncjax.commands.sweep`, also installed as the console command `dncjax-sweep`.
"""

from dncjax.commands.sweep import main

__all__ = ["main"]  # tests and other scripts call main(argv)

if __name__ == "__main__":
  from dncjax.commands.sweep import console
  console()
