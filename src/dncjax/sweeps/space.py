"""Search spaces of a sweep: which run settings vary, over what, and the run each trial gets.

A setting is any run setting of `charlm.config.RunConfig` by its own name (learning_rate,
eps, clip_norm, batch_size, seq_length, overlap, model, seed, ...: `RUN_PATHS`) or any
model hyperparameter (hidden, memory_size, word_size, read_heads, init_scale, ...), also
under the short names of alice.py's flags and the paper's symbols (lr, batchsize,
seqlength, N, W, R). On the command line:

  lr=0.01:1:log   a float range, log scale    hidden=32:256      an int range, uniform
  eps=1e-8,1e-6   a list (grid: lists only)   clip_norm=none,1,5 `none`: an optional one off

Model hyperparameters are conditional: a trial only draws those its model takes, so
`model=lstm,seed_dnc` may sweep `memory_size` for the seed DNC trials alone. """

from __future__ import annotations

import dataclasses
import itertools
import math
import types
import typing
from typing import Any

from dncjax import configs, models
from dncjax.charlm.config import MODEL_DEFAULTS, RunConfig
from dncjax.training.config import HYPERPARAMETERS

ALIASES = {"lr": "learning_rate", "batchsize": "batch_size", "batch": "batch_size",
           "seqlength": "seq_length", "N": "memory_size", "W": "word_size", "R": "read_heads"}
NOT_SWEPT = models.NOT_HYPERPARAMETERS  # set by the data and --set fp64
VMAPPABLE = {"seed": "seed", "init_scale": "model.init_scale",  # settings that keep shapes
             **{name: f"optim.{name}" for name in HYPERPARAMETERS}}
RUN_PATHS = {  # the run settings a sweep may vary, by name, and where they live in RunConfig
    "model": "model", "fp64": "model.dtype",
    **{name: f"data.{name}" for name in ("batch_size", "seq_length", "overlap", "val_fraction",
                                         "dev_fraction")},
    **{name: f"optim.{name}" for name in HYPERPARAMETERS},
    **{name: name for name in ("dropout", "weight_drop", "seed")}}


class SpaceError(ValueError):
  """A search space that cannot be swept: one-line message."""


def _hint_type(cls: type, name: str) -> tuple[type, bool]:
  """(base type, may be None) of dataclass field `name` of `cls`."""
  hint = typing.get_type_hints(cls)[name]
  args = typing.get_args(hint)
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    rest = [a for a in args if a is not type(None)]
    return rest[0], len(rest) < len(args)
  return hint, False


def _run_setting(name: str) -> tuple[type, bool]:
  if name in ("model", "fp64"):
    return (str if name == "model" else bool), False
  *parents, leaf = RUN_PATHS[name].split(".")
  node = RunConfig()
  for part in parents:
    node = getattr(node, part)
  return _hint_type(type(node), leaf)


def settings() -> dict[str, tuple[type, bool, bool]]:
  """Every sweepable name -> (type, optional, is a model hyperparameter)."""
  out = {name: (*_run_setting(name), False) for name in RUN_PATHS}
  for model in models.model_names():
    cls = models.config_class(model)
    for f in dataclasses.fields(cls):
      if f.name not in NOT_SWEPT and f.name not in out:
        out[f.name] = (*_hint_type(cls, f.name), True)
  return out


def canonical(name: str) -> str:
  """The sweepable name that `name` spells (dashes as underscores, aliases); else SpaceError."""
  known = settings()
  key = name.strip().replace("-", "_")
  key = ALIASES.get(key, ALIASES.get(key.lower(), key))
  if key not in known:
    raise SpaceError(f"unknown hyperparameter {name!r} (sweepable: "
                     f"{', '.join(sorted(known))}; aliases: "
                     f"{', '.join(f'{a}={c}' for a, c in ALIASES.items())})")
  return key


def parse_value(name: str, text: str) -> Any:
  """`text` read as setting `name`'s type ('none' for an optional one); else SpaceError."""
  typ, optional, _ = settings()[name]
  text = text.strip()
  if text.lower() == "none":
    if not optional:
      raise SpaceError(f"{name} cannot be none")
    return None
  try:
    if typ is bool:
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError
      return text.lower() in ("true", "1")
    if typ is int:
      value = float(text)
      if value != int(value):
        raise ValueError
      return int(value)
    value = typ(text)
  except (ValueError, OverflowError):
    article = "an" if typ is int else "a"
    raise SpaceError(f"{name}: {text!r} is not {article} {typ.__name__}") from None
  if typ is float and not math.isfinite(value):
    raise SpaceError(f"{name}: {text!r} is not a finite number")
  return value


@dataclasses.dataclass(frozen=True)
class Param:
  """One swept setting: a list of choices, or a range [low, high] (log-scaled or not)."""
  name: str
  choices: tuple | None = None
  low: float | int | None = None
  high: float | int | None = None
  log: bool = False

  @classmethod
  def parse(cls, text: str) -> "Param":
    """`name=a,b,c` | `name=low:high` | `name=low:high:log`."""
    if "=" not in text:
      raise SpaceError(f"--param {text!r}: write name=a,b,c or name=low:high[:log]")
    raw_name, spec = text.split("=", 1)
    name = canonical(raw_name)
    spec = spec.strip()
    if not spec:
      raise SpaceError(f"--param {raw_name}: no values given")
    if ":" in spec:
      parts = spec.split(":")
      log = len(parts) == 3 and parts[2].strip().lower() == "log"
      if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
        raise SpaceError(f"--param {raw_name}={spec}: a range is low:high or low:high:log")
      typ = settings()[name][0]
      if typ not in (int, float):
        raise SpaceError(f"--param {raw_name}: {name} is a {typ.__name__}; give a list a,b,c")
      low, high = (parse_value(name, p) for p in parts[:2])
      if low is None or high is None or not low < high:
        raise SpaceError(f"--param {raw_name}={spec}: empty or inverted range "
                         f"(need low < high)")
      if log and not low > 0:
        raise SpaceError(f"--param {raw_name}={spec}: a log range needs low > 0")
      return cls(name, low=low, high=high, log=log)
    items = [s for s in spec.split(",")]
    if any(not s.strip() for s in items):
      raise SpaceError(f"--param {raw_name}={spec}: an empty item in the list")
    choices = tuple(dict.fromkeys(parse_value(name, s) for s in items))
    return cls(name, choices=choices)

  def suggest(self, trial) -> Any:
    """This setting's value for an Optuna `trial`: a choice, an int or a float."""
    if self.choices is not None:
      return trial.suggest_categorical(self.name, list(self.choices))
    if isinstance(self.low, int):
      return trial.suggest_int(self.name, self.low, self.high, log=self.log)
    return trial.suggest_float(self.name, self.low, self.high, log=self.log)

  def text(self) -> str:
    """The setting as `parse` reads it: `name=a,b,c` or `name=low:high[:log]`."""
    if self.choices is not None:
      return f"{self.name}={','.join(str(c) for c in self.choices)}"
    return f"{self.name}={self.low}:{self.high}" + (":log" if self.log else "")


def parse_fixed(text: str) -> tuple[str, Any]:
  """`--set name=value`: a setting every trial shares."""
  if "=" not in text:
    raise SpaceError(f"--set {text!r}: write name=value")
  raw_name, value = text.split("=", 1)
  name = canonical(raw_name)
  if not value.strip():
    raise SpaceError(f"--set {raw_name}: no value given")
  return name, parse_value(name, value)


@dataclasses.dataclass(frozen=True)
class Space:
  """A search space: swept params, sorted (name, value) fixed settings, base config."""
  params: tuple[Param, ...]
  fixed: tuple[tuple[str, Any], ...]  # sorted (name, value)
  base: RunConfig = RunConfig()  # alice.py's defaults

  def __post_init__(self):
    names = [p.name for p in self.params]
    twice = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(dict(self.fixed))))
    if twice:
      raise SpaceError(f"set more than once: {', '.join(twice)}")
    if not self.params:
      raise SpaceError("nothing to sweep: give at least one --param")
    chosen = self.models()
    unknown = [m for m in chosen if m not in models.model_names()]
    if unknown:
      raise SpaceError(f"unknown model {unknown[0]!r} (models: {', '.join(models.model_names())})")
    kinds = settings()
    for name in names + list(dict(self.fixed)):
      if kinds[name][2] and not any(name in models.takes(m) for m in chosen):
        raise SpaceError(f"{name} is not a hyperparameter of {' or '.join(chosen)}")

  def models(self) -> list[str]:
    """The models trials may use: the swept choices, else the fixed or base one."""
    for p in self.params:
      if p.name == "model":
        return list(p.choices or ())
    return [dict(self.fixed).get("model", self.base.model_name)]

  def is_grid(self) -> bool:
    """Whether every swept setting is a list (none a range)."""
    return all(p.choices is not None for p in self.params)

  def grid(self) -> dict[str, list]:
    """The grid sampler's search space; every model must take every swept setting."""
    if not self.is_grid():
      ranges = [p.name for p in self.params if p.choices is None]
      raise SpaceError(f"the grid sampler needs lists, not ranges: {', '.join(ranges)}")
    for p in self.params:
      if settings()[p.name][2]:
        for m in self.models():
          if p.name not in models.takes(m):
            raise SpaceError(f"the grid sampler needs every model to take every swept "
                             f"setting; {m} has no {p.name}")
    return {p.name: list(p.choices) for p in self.params}

  def grid_size(self) -> int:
    """The number of grid points: the product of the lists' lengths."""
    return math.prod(len(p.choices) for p in self.params)

  def grid_points(self) -> list[dict[str, Any]]:
    """Every combination of the lists, in a fixed order (the last setting varies fastest)."""
    grid = self.grid()
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]

  def suggest(self, trial) -> dict[str, Any]:
    """Draws a trial's values (model first: the others may depend on it)."""
    values = {}
    params = sorted(self.params, key=lambda p: p.name != "model")
    for p in params:
      model = values.get("model", dict(self.fixed).get("model", self.base.model_name))
      if settings()[p.name][2] and p.name not in models.takes(model):
        continue
      values[p.name] = p.suggest(trial)
    return values

  def config(self, values: dict[str, Any]) -> RunConfig:
    """The run config of a trial: base, then the fixed settings, then the trial's values
    (a model hyperparameter only where the trial's model takes it)."""
    chosen = {**dict(self.fixed), **values}
    model = chosen.get("model", self.base.model_name)
    given = []
    for name, value in chosen.items():
      if name == "fp64":
        given.append(configs.Setting(RUN_PATHS[name], name, "float64" if value else "float32"))
      elif name in RUN_PATHS:
        given.append(configs.Setting(RUN_PATHS[name], name, value))
      elif name in models.takes(model):
        given.append(configs.Setting(f"{configs.MODEL}.{name}", name, value))
    return configs.Given(tuple(given)).apply(self.base, MODEL_DEFAULTS)

  def corners(self) -> list[dict[str, Any]]:
    """Trial values that reach every choice and both ends of every range, per model: the
    other swept settings at their first choice or low end."""
    out = []
    for model in self.models():
      first = {"model": model} if any(p.name == "model" for p in self.params) else {}
      taken = [p for p in self.params if p.name != "model"
               and (not settings()[p.name][2] or p.name in models.takes(model))]
      first.update({p.name: p.choices[0] if p.choices is not None else p.low for p in taken})
      out.append(first)
      for p in taken:
        ends = p.choices[1:] if p.choices is not None else (p.high,)
        out.extend({**first, p.name: v} for v in ends)
    return out

  def signature(self) -> dict:
    """What makes two sweeps the same search (stored with the study)."""
    return {"params": [p.text() for p in self.params],
            "fixed": [f"{k}={v}" for k, v in self.fixed]}

