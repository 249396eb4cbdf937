"""Generate text from a trained char-LM checkpoint, without training.

`python experiments/sample.py --help` lists its flags; the program is
`dncjax.commands.sample`, also installed as the console command `dncjax-sample`.
"""

from dncjax.commands.sample import main

__all__ = ["main"]  # tests and other scripts call main(argv)

if __name__ == "__main__":
  from dncjax.commands.sample import console
  console()
