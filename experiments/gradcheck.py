"""Checks jax.grad of a model against central finite differences; prints the seed's table.

`python experiments/gradcheck.py --help` lists its flags; the program is
`dncjax.commands.gradcheck`, also installed as the console command `dncjax-gradcheck`.
"""

from dncjax.commands.gradcheck import main

__all__ = ["main"]  # tests and other scripts call main(argv)

if __name__ == "__main__":
  from dncjax.commands.gradcheck import console
  console()
