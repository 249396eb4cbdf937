"""Dataclass fields that carry their command-line form: help text, choices, flag spelling.

`field(default, "what it is", flag="--lr", choices=(...))` is a `dataclasses.field` whose
metadata `cli.add_config_flags` reads to build the flag. Nothing here imports JAX, so a
script can build its parser (and answer `--help`) before loading it.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def field(default: Any = dataclasses.MISSING, help: str = "", *,  # pylint: disable=redefined-builtin
          factory=None, **metadata):
  """A field with `help` (and `flag`, `choices`, `metavar`) in its metadata."""
  if factory is not None:
    return dataclasses.field(default_factory=factory, metadata={"help": help, **metadata})
  return dataclasses.field(default=default, metadata={"help": help, **metadata})
