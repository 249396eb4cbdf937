"""Train a character-level model on alice29.txt (or any UTF-8 text), as the seed did.

`python experiments/alice.py --help` lists its flags; the program is
`dncjax.commands.alice`, also installed as the console command `dncjax-train`.
"""

from dncjax.commands.alice import main

__all__ = ["main"]  # tests and other scripts call main(argv)

if __name__ == "__main__":
  from dncjax.commands.alice import console
  console()
