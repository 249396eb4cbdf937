"""Command lines generated from the config dataclasses, and one-line errors.

`add_config_flags` turns every field of a run config (nested configs included) into a
flag: `--<field>` (and `--<field-with-dashes>`), or the field's `metadata["flag"]`, plus the
seed's spellings in `ALIASES`. A `model` field becomes `--model` and one flag per
hyperparameter of any registered model (a new model's fields become flags without
touching a script). Those flags stay unset unless given: `given(args)` returns exactly
what the user typed as a `configs.Given`, which a fresh run puts on the job's defaults
and a resumed run checks against its checkpoint. `add_option_flags` does the same for
dataclasses of options that take their defaults (how to run, what to print).
"""

from __future__ import annotations

import _thread
import argparse
import dataclasses
import signal
import sys
import typing
from typing import Any, Callable

from dncjax import checks, configs, models
from dncjax.cli import allocation
from dncjax.training.config import RunOptions, Schedule
from dncjax.training.console import one_line

UsageError = configs.UsageError  # bad command-line input: one line, exit status 2

# More spellings of a field's flag, besides its main one (`metadata["flag"]`, e.g. the
# seed's --lr, --batchsize, --seqlength; else --<field>) and the forms with dashes.
ALIASES = {"learning_rate": ("--learning_rate",), "batch_size": ("--batch_size",),
           "seq_length": ("--seq_length",), "eval_lengths": ("--eval_lengths",)}
_NOT_FLAGS = set(models.NOT_HYPERPARAMETERS)  # set by the data and --fp64


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """Keeps the description's layout and appends each option's default (when it has one)."""

  def _get_help_string(self, action):
    text = action.help or ""
    if "default" in text or action.default is False or action.default in (None, argparse.SUPPRESS):
      return text
    if isinstance(action.default, (tuple, list)):  # several values, as they are typed
      return f"{text} (default: {' '.join(repr_default(v) for v in action.default)})"
    return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
  """argparse with one-line errors: `error: ... (see --help)`, exit status 2. It keeps the
  arguments it parsed (`typed`), so errors can name a flag as the user spelled it."""

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("formatter_class", HelpFormatter)
    super().__init__(*args, **kwargs)
    self.typed: list[str] = []

  def parse_known_args(self, args=None, namespace=None):
    """argparse's, keeping the arguments in `typed`."""
    self.typed = list(sys.argv[1:] if args is None else args)
    return super().parse_known_args(args, namespace)

  def error(self, message):
    """One line on stderr, `(see PROG --help)`, exit status 2."""
    self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def flag_names(field: dataclasses.Field) -> list[str]:
  """Every spelling of a field's flag, the main one first."""
  names = [field.metadata.get("flag", f"--{field.name}"), *ALIASES.get(field.name, ())]
  return list(dict.fromkeys(names + ["--" + n[2:].replace("_", "-") for n in names]))


def _type(cls: type, field: dataclasses.Field):
  """(argparse type, nargs) of a field; bool fields are switches; a field that may be None
  takes 'none'."""
  full = typing.get_type_hints(cls)[field.name]
  hint = configs._plain(full)  # pylint: disable=protected-access
  if typing.get_origin(hint) is tuple:  # several values; 'none' where an entry may be None
    entry = typing.get_args(hint)[0]
    plain = configs._plain(entry)  # pylint: disable=protected-access
    return (_or_none(plain) if plain is not entry else entry), "+"
  if hint is not full and hint in (int, float, str):
    return _or_none(hint), None
  return hint, None


def _or_none(kind: type):
  def parse(text: str):
    return None if text.lower() == "none" else kind(text)
  parse.__name__ = kind.__name__  # argparse's messages and the metavar name the type
  return parse


def _add(group, cls, field, dest: str, default: Any, shown: str | None) -> None:
  kind, nargs = _type(cls, field)
  text = field.metadata.get("help", field.name.replace("_", " "))
  if shown is not None and "default" not in text:
    text = f"{text} (default: {shown})"
  names = flag_names(field)
  if kind is bool:
    group.add_argument(*names, dest=dest, default=default, help=text,
                       action=argparse.BooleanOptionalAction)
  else:
    choices = field.metadata.get("choices")
    metavar = field.metadata.get("metavar",
                                 None if choices else getattr(kind, "__name__", "VALUE").upper())
    group.add_argument(*names, dest=dest, type=kind, default=default, help=text,
                       nargs=nargs, choices=choices, metavar=metavar)


def add_config_flags(parser: argparse.ArgumentParser, defaults, title: str,
                     prefix: str = "", skip: tuple[str, ...] = (),
                     model_defaults: dict[str, Any] | None = None):
  """A flag for every field of the config `defaults` (nested: their fields), unset unless
  given; --help shows `defaults`' values (and, for each model, the job's
  `model_defaults` where it takes them). Returns the flags' group."""
  group = parser.add_argument_group(title) if not prefix else parser
  for field in dataclasses.fields(defaults):
    if field.name in skip:
      continue
    value, dest = getattr(defaults, field.name), prefix + field.name
    if field.name == configs.MODEL:
      _add_model_flags(parser, group, value, dest, model_defaults or {})
    elif dataclasses.is_dataclass(value):
      add_config_flags(group, value, title, prefix=dest + ".")
    else:
      _add(group, type(defaults), field, dest, argparse.SUPPRESS, repr_default(value))
  return group


def _add_model_flags(parser, group, default_config, dest: str, model_defaults: dict) -> None:
  group.add_argument("--model", dest=dest, default=argparse.SUPPRESS,
                     choices=models.model_names(),
                     help=f"the model (default: {models.name_of(default_config)})")
  hyper = parser.add_argument_group(
      "model hyperparameters (unset: the chosen model's default shown)")
  seen: dict[str, tuple[type, dataclasses.Field, dict]] = {}
  for name in models.model_names():
    cls = models.config_class(name)
    for field in dataclasses.fields(cls):
      if field.name not in _NOT_FLAGS:
        default = model_defaults.get(field.name, field.default)
        seen.setdefault(field.name, (cls, field, {}))[2][name] = default
  for fname, (cls, field, per_model) in sorted(seen.items()):
    if hasattr(default_config, fname):
      per_model = {**per_model, models.name_of(default_config): getattr(default_config, fname)}
    shown = ", ".join(f"{m} {repr_default(d)}" for m, d in per_model.items())
    _add(hyper, cls, field, f"{dest}.{fname}", argparse.SUPPRESS, shown)


def add_fp64_flag(group) -> None:
  """--fp64: the model's dtype float64 (which switches on jax_enable_x64)."""
  group.add_argument("--fp64", dest=f"{configs.MODEL}.dtype", action="store_const",
                     const="float64", default=argparse.SUPPRESS,
                     help="train in float64 (default: float32)")


def repr_default(value) -> str:
  """How --help shows a default ('none' for None)."""
  return "none" if value is None else str(value)


def add_option_flags(parser: argparse.ArgumentParser, defaults, title: str,
                     skip: tuple[str, ...] = ()) -> argparse._ArgumentGroup:
  """A flag for every field of the options dataclass `defaults` (an instance, or a class
  whose fields have defaults), set to its default."""
  group = parser.add_argument_group(title)
  cls = defaults if isinstance(defaults, type) else type(defaults)
  for field in dataclasses.fields(defaults):
    if field.name not in skip:
      value = field.default if defaults is cls else getattr(defaults, field.name)
      _add(group, cls, field, field.name, value, None)
  return group


def add_run_flags(parser: argparse.ArgumentParser, defaults: RunOptions,
                  workdir_help: str) -> argparse._ArgumentGroup:
  """--workdir, --resume, the schedule's flags and --keep; returns their group."""
  group = parser.add_argument_group("schedule and outputs")
  group.add_argument("--workdir", default=defaults.workdir, help=workdir_help)
  group.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
  schedule = defaults.schedule
  for field in dataclasses.fields(schedule):
    if field.name == "timelimit":  # unset: the job's limit, or none with --steps
      _add(group, type(schedule), field, field.name, None,
           f"{schedule.timelimit:.0f}, or none when --steps is given")
    else:
      _add(group, type(schedule), field, field.name, getattr(schedule, field.name), None)
  group.add_argument("--keep", type=int, metavar="INT", default=defaults.keep,
                     help="latest checkpoints kept")
  return group


def run_options(args: argparse.Namespace, defaults: RunOptions, **more) -> RunOptions:
  """The run options of the parsed `add_run_flags` (a time limit only without --steps)."""
  timelimit = args.timelimit if args.timelimit is not None else (
      None if args.steps is not None else defaults.schedule.timelimit)
  schedule = Schedule(args.steps, timelimit, args.report_interval, args.eval_every,
                           args.checkpoint_every)
  return RunOptions(args.workdir, args.resume, schedule, args.keep, **more)


def add_device_flags(parser: argparse.ArgumentParser) -> None:
  """--devices and the multi-host flags (--coordinator, --num_processes, --process_id)."""
  par = parser.add_argument_group("devices and hosts (may change between a run and its "
                                  "resumption)")
  par.add_argument("--devices", default=None, metavar="N|all",
                   help="split the batch's lanes over N devices (a divisor of the batch size) "
                        "or all of them (default: 1; all with --coordinator; on CPU, "
                        "XLA_FLAGS=--xla_force_host_platform_device_count=N gives N)")
  par.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="multi-host run: address of process 0's coordinator service")
  par.add_argument("--num_processes", "--num-processes", type=int, metavar="N", default=None,
                   help="multi-host run: number of processes")
  par.add_argument("--process_id", "--process-id", type=int, metavar="I", default=None,
                   help="multi-host run: this process's index, 0 .. N - 1")


def devices(args: argparse.Namespace) -> int | str:
  """The devices the flags ask for; starts the multi-host service first when asked to (it
  must come before anything touches a device)."""
  count = args.devices
  if count not in (None, "all"):
    try:
      count = int(count)
    except ValueError:
      raise UsageError(f"--devices must be a positive integer or 'all', "
                       f"got {count!r}") from None
  from dncjax.training import parallel  # pylint: disable=import-outside-toplevel
  multi_host = parallel.initialize_distributed(args.coordinator, args.num_processes,
                                               args.process_id)
  return count if count is not None else ("all" if multi_host else 1)


def given(args: argparse.Namespace, parser: argparse.ArgumentParser) -> configs.Given:
  """The config flags the user gave, each under the spelling they typed (errors name it)."""
  actions = [a for a in parser._actions  # pylint: disable=protected-access
             if a.option_strings and a.default is argparse.SUPPRESS and a.dest != "help"]
  typed = [t.split("=", 1)[0] for t in getattr(parser, "typed", [])]
  values, settings = vars(args), []
  for action in actions:
    if action.dest in values:
      spelled = [t for t in typed if t in action.option_strings]
      flag = spelled[-1] if spelled else action.option_strings[0]
      settings.append(configs.Setting(action.dest, flag, values[action.dest],
                                      tuple(action.option_strings)))
  return configs.Given(tuple(settings))


def options(args: argparse.Namespace, cls: type, **more):
  """An options dataclass from the parsed flags of its fields (and `more`)."""
  values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items()}
  return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)
                if f.name in values and f.name not in more}, **more)


Errors = tuple[type[BaseException], ...]


def _interrupt_again(unraisable) -> None:
  """sys.unraisablehook: a Ctrl-C that lands where Python cannot raise it (a garbage
  collector callback, a __del__) is delivered again, to stop the command with its one
  line, instead of being printed as ignored; anything else goes to Python's own hook. It is
  delivered from another thread, which runs once this one lets go of the interpreter lock,
  after the hook has returned (raised in the hook, Python would ignore it again)."""
  if isinstance(unraisable.exc_value, KeyboardInterrupt):
    _thread.start_new_thread(_thread.interrupt_main, (signal.SIGINT,))
    return
  sys.__unraisablehook__(unraisable)


def run(main: Callable[[], int | None], errors: Errors | Callable[[], Errors] = (),
        command: bool = False) -> None:
  """Runs `main`; known errors become one line on stderr and a non-zero exit. `errors`
  may be a function returning them (so a job's modules load only when something fails).
  `command=True` (a console entry point: `main` is what this process is for) first runs
  the process again with mimalloc and huge pages where they help (`allocation.use`)."""
  signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C while loading: one line
  sys.unraisablehook = _interrupt_again
  try:
    checks.link_kernel()  # the environment's choices, checked before anything loads
    allocation.variables()
    if command:
      allocation.use()
    sys.exit(main() or 0)
  except KeyboardInterrupt as e:  # signals.Interrupted carries 128 + the signal (SIGTERM: 143)
    code = getattr(e, "exit_code", 130)
    print("terminated" if code == 143 else "interrupted", file=sys.stderr)
    sys.exit(code)
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, (ValueError, OSError)) or isinstance(
        e, tuple(errors() if callable(errors) else errors)):
      print(f"error: {one_line(e)}", file=sys.stderr)
      sys.exit(2)
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    print(f"error: out of memory ({one_line(e)}): try a smaller model or batch",
          file=sys.stderr)
    sys.exit(2)
