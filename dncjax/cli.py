"""Command-line plumbing shared by the scripts in experiments/ and benchmarks/.

Model hyperparameter flags are generated from the registered models' config dataclasses,
so a new model's fields become flags without touching any script. A flag left unset
takes the chosen model's own default; setting a flag the model does not take is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import types
import typing
from typing import Callable

from dncjax import models


_SKIP = {"input_size", "output_size", "dtype"}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """Keeps the description's layout and appends each option's default (when it has one)."""

  def _get_help_string(self, action):
    text = action.help or ""
    if "default" in text or action.default is False or action.default in (None, argparse.SUPPRESS):
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


def add_model_flags(parser: argparse.ArgumentParser, overrides: dict | None = None,
                    set_defaults: bool = True) -> None:
  """Adds one flag per model hyperparameter (union over registered models).

  `overrides` maps a field name to the default this script uses instead of the model's.
  With `set_defaults=False` they are only shown in --help and the flags stay None unless
  given (a script that resumes runs must tell given flags from defaults).
  """
  overrides = overrides or {}
  group = parser.add_argument_group("model hyperparameters (unset: the model's default)")
  fields: dict[str, tuple[type, dict[str, object]]] = {}
  for name in models.model_names():
    cls = models.config_class(name)
    for field in dataclasses.fields(cls):
      if field.name in _SKIP:
        continue
      ftype, defaults = fields.setdefault(field.name, (_field_type(field, cls), {}))
      defaults[name] = field.default
  for fname, (ftype, defaults) in sorted(fields.items()):
    shown = ", ".join(f"{m}={d}" for m, d in defaults.items())
    if fname in overrides:
      shown = f"{overrides[fname]} here; models: {shown}"
    kwargs = dict(default=overrides.get(fname) if set_defaults else None,
                  help=f"default: {shown}")
    if ftype is bool:
      group.add_argument(f"--{fname}", action=argparse.BooleanOptionalAction, **kwargs)
    else:
      group.add_argument(f"--{fname}", type=ftype, metavar=ftype.__name__.upper(), **kwargs)


def given_model_flags(args: argparse.Namespace) -> dict:
  """Every model hyperparameter flag that has a value (given, or a set default)."""
  fields = set().union(*(models.takes(n) for n in models.model_names()))
  return {f: getattr(args, f) for f in sorted(fields - _SKIP) if getattr(args, f, None) is not None}


def model_hyperparameters(args: argparse.Namespace, model: str) -> dict:
  """The model flags with a value, checked against what model `model` takes."""
  known = models.takes(model) - _SKIP
  chosen = given_model_flags(args)
  for fname in chosen:
    if fname not in known:
      raise UsageError(f"--{fname} does not apply to model {model!r} "
                       f"(it takes: {', '.join(sorted(known))})")
  return chosen


def run(main: Callable[[], int | None], errors: tuple[type[BaseException], ...] = ()) -> None:
  """Runs `main`; known errors become one line on stderr and a non-zero exit."""
  signal.signal(signal.SIGINT, signal.default_int_handler)  # scripts quiet it while loading
  try:
    sys.exit(main() or 0)
  except KeyboardInterrupt as e:  # loop.Interrupted carries 128 + the signal (SIGTERM: 143)
    code = getattr(e, "exit_code", 130)
    print("terminated" if code == 143 else "interrupted", file=sys.stderr)
    sys.exit(code)
  except (ValueError, OSError) + tuple(errors) as e:
    print(f"error: {one_line(e)}", file=sys.stderr)
    sys.exit(2)
  except Exception as e:  # pylint: disable=broad-except
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    print(f"error: out of memory ({one_line(e)}): try a smaller model or batch",
          file=sys.stderr)
    sys.exit(2)


def one_line(e: BaseException, limit: int = 300) -> str:
  """The first line of an exception's message (at most `limit` characters)."""
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  text = lines[0] if lines else type(e).__name__
  return text if len(text) <= limit else text[:limit - 3] + "..."


SCHEDULE = ("report_interval", "eval_every", "checkpoint_every", "keep")


def add_schedule_flags(parser: argparse.ArgumentParser, options, workdir_default: str | None,
                       workdir_help: str) -> argparse._ArgumentGroup:
  """The flags every training script shares: --workdir, --resume, --steps, --timelimit and
  the reporting / evaluation / checkpoint schedule, defaults from the `options` dataclass.
  Returns the group, for the script's own output options."""
  group = parser.add_argument_group("schedule and outputs")
  group.add_argument("--workdir", default=workdir_default, help=workdir_help)
  group.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
  group.add_argument("--steps", type=int, default=None, help="stop after this many iterations")
  group.add_argument("--timelimit", type=float, default=None,
                     help=f"stop after this many seconds (default: {options.timelimit:.0f}, "
                          "or none when --steps is given)")
  helps = {"report_interval": "iterations between progress lines",
           "eval_every": "iterations between evaluations (0: at the end only)",
           "checkpoint_every": "iterations between checkpoints (0: at the end only)",
           "keep": "latest checkpoints kept"}
  for field in SCHEDULE:
    names = dict.fromkeys([f"--{field}", f"--{field.replace('_', '-')}"])  # once for --keep
    group.add_argument(*names, dest=field, type=int, default=getattr(options, field),
                       help=helps[field])
  return group


def schedule_options(args: argparse.Namespace, default_timelimit: float) -> dict:
  """The shared schedule flags as Options fields, checked (UsageError on nonsense)."""
  if args.steps is not None and args.steps <= 0:
    raise UsageError(f"--steps must be positive, got {args.steps}")
  if args.timelimit is not None and not args.timelimit > 0:
    raise UsageError(f"--timelimit must be positive, got {args.timelimit}")
  for field in ("report_interval", "keep"):
    if getattr(args, field) <= 0:
      raise UsageError(f"--{field} must be positive, got {getattr(args, field)}")
  for field in ("eval_every", "checkpoint_every"):
    if getattr(args, field) < 0:
      raise UsageError(f"--{field} must be >= 0, got {getattr(args, field)}")
  timelimit = args.timelimit if args.timelimit is not None else (
      None if args.steps is not None else default_timelimit)
  return dict(resume=args.resume, steps=args.steps, timelimit=timelimit,
              **{field: getattr(args, field) for field in SCHEDULE})
