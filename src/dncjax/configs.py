"""Frozen config dataclasses: their JSON form, and the settings a user gave.

A run's config is a tree of frozen dataclasses (e.g. `charlm.config.RunConfig` holds the
model's own config, an `OptimizerConfig` and a `DataConfig`), each validated in its
`__post_init__`. `to_json` / `from_json` write and read it for config.json and checkpoint
metadata; a model config is written with its registry name (`{"name": "dnc", ...}`).

`Given` is what the command line set, as (path, flag, value) settings: `apply` puts them
on top of a job's defaults for a fresh run; `disagreements` lists those a resumed run's
checkpoint does not share (a resume may not change what defines the run).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from dncjax import models

MODEL = "model"  # the field of a run config that holds the model's own config


def _hints(cls: type) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def _plain(hint):
  """`X` for `X | None`, else `hint`."""
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
    return args[0]
  return hint


def to_json(config) -> dict:
  """The config tree as JSON-ready dicts (tuples as lists)."""
  out = {}
  if models.is_model_config(config):
    out["name"] = models.name_of(config)
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if dataclasses.is_dataclass(value):
      value = to_json(value)
    elif isinstance(value, tuple):
      value = list(value)
    out[field.name] = value
  return out


def from_json(cls: type, data: dict):
  """`cls` from `to_json`'s dict; fields it lacks take their defaults. A model field is
  built as the config class its `name` names."""
  hints, kwargs = _hints(cls), {}
  unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)} - {"name"})
  if unknown:
    raise ValueError(f"not settings of a {cls.__name__}: {', '.join(unknown)} (a config "
                     f"written by another version of dncjax?)")
  for field in dataclasses.fields(cls):
    if field.name not in data:
      continue
    value, hint = data[field.name], _plain(hints[field.name])
    if field.name == MODEL:
      if not isinstance(value, dict) or "name" not in value:
        raise ValueError(f"the model of a {cls.__name__} is written as a dict with its name, "
                         f"got {value!r} (a config written by another version of dncjax?)")
      value = model_from_json(value)
    elif dataclasses.is_dataclass(hint) and isinstance(value, dict):
      value = from_json(hint, value)
    elif typing.get_origin(hint) is tuple and isinstance(value, list):
      value = tuple(value)
    kwargs[field.name] = value
  return cls(**kwargs)


def model_from_json(data: dict):
  """The model config a `to_json` dict describes (its 'name' picks the class);
  ValueError naming any key that is not a field of that class."""
  cls = models.config_class(data["name"])
  unknown = sorted(set(data) - {"name"} - {f.name for f in dataclasses.fields(cls)})
  if unknown:
    raise ValueError(f"not settings of model {data['name']!r}: {', '.join(unknown)} (a "
                     f"config written by another version of dncjax?)")
  return cls(**{k: v for k, v in data.items() if k != "name"})


def get(config, path: str):
  """The value at a dotted path ('optim.learning_rate'); 'model' is the model's name."""
  head, _, rest = path.partition(".")
  value = getattr(config, head)
  if not rest:
    return models.name_of(value) if head == MODEL else value
  return get(value, rest) if "." in rest else getattr(value, rest)


def replace(config, path: str, value):
  """`config` with the value at `path` replaced (nested configs rebuilt, so checked)."""
  head, _, rest = path.partition(".")
  if not rest:
    return dataclasses.replace(config, **{head: value})
  return dataclasses.replace(config, **{head: replace(getattr(config, head), rest, value)})


def model_config(name: str, defaults: dict[str, Any]):
  """Model `name`'s config with those of `defaults` it takes (a job's model defaults: a
  script's hidden size applies to every model, memory sizes only to some)."""
  cls = models.config_class(name)
  return cls(**{k: v for k, v in defaults.items() if k in models.takes(name)})


def _rebuilt(config, changes: dict[str, Any]):
  """`config` with `changes` ({field: value, or {field: ...} for a nested config})."""
  kwargs = {k: _rebuilt(getattr(config, k), v) if isinstance(v, dict) else v
            for k, v in changes.items()}
  return dataclasses.replace(config, **kwargs) if kwargs else config


class RunConfigBase:
  """What every job's run config (a frozen dataclass with a `model` field) offers."""

  @property
  def model_name(self) -> str:
    """The registry name of the run's model ('lstm', 'dnc', ...)."""
    return get(self, MODEL)

  def to_json(self) -> dict:
    """This config as JSON-ready dicts (`configs.to_json`)."""
    return to_json(self)

  @classmethod
  def from_json(cls, data: dict):
    """The config of this class a `to_json` dict describes
    (`configs.from_json`)."""
    return from_json(cls, data)


class UsageError(ValueError):
  """Settings that do not fit together (e.g. a flag of another model): one line, exit 2."""


@dataclasses.dataclass(frozen=True)
class Setting:
  """One setting given on the command line: path, where it goes in the config;
  flag, as the user typed it; value; spellings, every spelling of its flag."""
  path: str   # where it goes in the config: 'optim.learning_rate', 'model.hidden', 'model'
  flag: str   # how the user spelled it: '--lr'
  value: Any
  spellings: tuple[str, ...] = ()  # every spelling of its flag ('--lr', '--learning_rate')

  def names(self) -> set[str]:
    """What an error about this setting may call it: its field's name or any spelling."""
    leaf = self.path.rsplit(".", 1)[-1]
    return {leaf, f"--{leaf}", self.flag, *self.spellings}


@dataclasses.dataclass(frozen=True)
class Given:
  """The settings given on the command line (those left unset are not here)."""
  settings: tuple[Setting, ...] = ()

  def __contains__(self, path: str) -> bool:
    return any(s.path == path for s in self.settings)

  def value(self, path: str, default=None):
    """The value given for `path`, or `default` when it was not given."""
    return next((s.value for s in self.settings if s.path == path), default)

  def with_value(self, path: str, value) -> "Given":
    """The same settings, the one at `path` (if given) holding `value`."""
    return Given(tuple(dataclasses.replace(s, value=value) if s.path == path else s
                       for s in self.settings))

  def without(self, *paths: str) -> "Given":
    """The same settings less those at `paths`."""
    return Given(tuple(s for s in self.settings if s.path not in paths))

  def apply(self, config, model_defaults: dict[str, Any] | None = None):
    """`config` with every setting put on it: the model first (a new model takes
    `model_defaults`), then each nested config rebuilt once with all its settings (so it
    is checked as a whole); a field the chosen model lacks is an error."""
    if MODEL in self and self.value(MODEL) != get(config, MODEL):
      config = replace(config, MODEL, model_config(self.value(MODEL), model_defaults or {}))
    changes: dict[str, Any] = {}
    for s in self.settings:
      if s.path == MODEL:
        continue
      if s.path.startswith(MODEL + "."):
        name = get(config, MODEL)
        if s.path[len(MODEL) + 1:] not in models.takes(name):
          takes = sorted(models.takes(name) - set(models.NOT_HYPERPARAMETERS))
          raise UsageError(f"{s.flag} does not apply to model {name!r} (its flags: "
                           f"{', '.join('--' + t for t in takes)})")
      *parents, leaf = s.path.split(".")
      node = changes
      for part in parents:
        node = node.setdefault(part, {})
      node[leaf] = s.value
    try:
      return _rebuilt(config, changes)
    except ValueError as e:
      raise UsageError(self.as_typed(str(e))) from None

  def as_typed(self, message: str) -> str:
    """`message` (a config's check, which names a field or its main flag) naming the
    flag as the user typed it, when it is about one of these settings."""
    head, space, rest = message.partition(" ")
    for s in self.settings:
      if space and head in s.names():
        return f"{s.flag} {rest}"
    return message

  def disagreements(self, saved) -> list[tuple[str, Any, Any]]:
    """(flag, given value, saved value) for each setting `saved` does not share."""
    out = []
    for s in self.settings:
      try:
        theirs = get(saved, s.path)
      except AttributeError:
        theirs = f"not a setting of model {get(saved, MODEL)!r}"
      if theirs != s.value:
        out.append((s.flag, s.value, theirs))
    return out
