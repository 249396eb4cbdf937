"""Command-line plumbing shared by the scripts in experiments/ and benchmarks/.

Model hyperparameter flags are generated from the registered models' config dataclasses,
so a new model's fields become flags without touching any script. A flag left unset
takes the chosen model's own default; setting a flag the model does not take is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from typing import Callable

from dncjax import core

_SKIP = {"input_size", "output_size", "dtype"}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """Keeps the description's layout and appends each option's default (when it has one)."""

  def _get_help_string(self, action):
    text = action.help or ""
    if "default" in text or action.default in (None, argparse.SUPPRESS, False):
      return text
    return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
  """argparse with one-line errors: `error: ... (see --help)`, exit status 2."""

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("formatter_class", HelpFormatter)
    super().__init__(*args, **kwargs)

  def error(self, message):
    self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class UsageError(ValueError):
  """Bad command-line input: printed as one line, exit status 2."""


def _field_type(field: dataclasses.Field, cls: type):
  hint = typing.get_type_hints(cls)[field.name]
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
    hint = args[0]
  return hint


def add_model_flags(parser: argparse.ArgumentParser, overrides: dict | None = None) -> None:
  """Adds --model and one flag per model hyperparameter (union over registered models).

  `overrides` maps a field name to the default this script uses instead of the model's.
  """
  overrides = overrides or {}
  group = parser.add_argument_group("model hyperparameters (unset: the model's default)")
  fields: dict[str, tuple[type, dict[str, object]]] = {}
  for name in core.model_names():
    cls = core.config_class(name)
    for field in dataclasses.fields(cls):
      if field.name in _SKIP:
        continue
      ftype, defaults = fields.setdefault(field.name, (_field_type(field, cls), {}))
      defaults[name] = field.default
  for fname, (ftype, defaults) in sorted(fields.items()):
    shown = ", ".join(f"{m}={d}" for m, d in defaults.items())
    if fname in overrides:
      shown = f"{overrides[fname]} here; models: {shown}"
    kwargs = dict(default=overrides.get(fname), help=f"default: {shown}")
    if ftype is bool:
      group.add_argument(f"--{fname}", action=argparse.BooleanOptionalAction, **kwargs)
    else:
      group.add_argument(f"--{fname}", type=ftype, metavar=ftype.__name__.upper(), **kwargs)


def model_hyperparameters(args: argparse.Namespace, model: str) -> dict:
  """The hyperparameters set on the command line that model `model` takes."""
  cls = core.config_class(model)
  known = {f.name for f in dataclasses.fields(cls)} - _SKIP
  chosen = {}
  for fname in _all_fields() - _SKIP:
    value = getattr(args, fname, None)
    if value is None:
      continue
    if fname not in known:
      raise UsageError(f"--{fname} does not apply to model {model!r} "
                       f"(it takes: {', '.join(sorted(known))})")
    chosen[fname] = value
  return chosen


def _all_fields() -> set[str]:
  return {f.name for n in core.model_names() for f in dataclasses.fields(core.config_class(n))}


def run(main: Callable[[], int | None], errors: tuple[type[BaseException], ...] = ()) -> None:
  """Runs `main`; known errors become one line on stderr and a non-zero exit."""
  try:
    sys.exit(main() or 0)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
  except (ValueError, OSError) + tuple(errors) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
