"""Where a trained char-LM memory core uses its memory: ablations and a trace.

`python experiments/memory_use.py --help` lists its flags; the program is
`dncjax.commands.memory_use`, also installed as the console command `dncjax-memory-use`.
"""

from dncjax.commands.memory_use import main

__all__ = ["main"]  # tests and other scripts call main(argv)

if __name__ == "__main__":
  from dncjax.commands.memory_use import console
  console()
