"""Dynamic evaluation of a trained char-LM checkpoint, over a grid of settings.

`python experiments/dynamic_eval.py --help` lists its flags; the program is
`dncjax.commands.dynamic_eval`, also installed as the console command `dncjax-dynamic-eval`.
"""

from dncjax.commands.dynamic_eval import main

__all__ = ["main"]  # tests and other scripts call main(argv)

if __name__ == "__main__":
  from dncjax.commands.dynamic_eval import console
  console()
