"""Score an ensemble of trained char-LM runs: the mixture of their predictions.

`python experiments/ensemble.py --help` lists its flags; the program is
`dncjax.commands.ensemble`, also installed as the console command `dncjax-ensemble`.
"""

from dncjax.commands.ensemble import main

__all__ = ["main"]  # tests and other scripts call main(argv)

if __name__ == "__main__":
  from dncjax.commands.ensemble import console
  console()
