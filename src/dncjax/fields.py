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


def documented(cls: type) -> type:
  """Appends each field's help (and default) to the dataclass's docstring, so `help(cls)`
  and the API reference list what every setting means."""
  lines = []
  for f in dataclasses.fields(cls):
    text = f.metadata.get("help")
    if text:
      default = "" if f.default is dataclasses.MISSING else f" (default: {f.default!r})"
      lines.append(f"  {f.name}: {text}{default}")
  if lines:
    cls.__doc__ = (cls.__doc__ or cls.__name__).rstrip() + "\n\nFields:\n" + "\n".join(lines)
  return cls
