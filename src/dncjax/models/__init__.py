"""The recurrent cores and their registry.

Every model is a module with a frozen config dataclass and `make(config) -> core.Model`;
`REGISTRY` names them. `make_model('dnc', input_size, output_size, hidden=128)` builds one
by name, `build(config)` from a config (e.g. one restored from a checkpoint).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from dncjax.models import dnc, lstm, rnn, seed_dnc
from dncjax.models.core import Model

REGISTRY: dict[str, tuple[type, Callable[[Any], Model]]] = {
    "rnn": (rnn.RNNConfig, rnn.make),
    "lstm": (lstm.LSTMConfig, lstm.make),
    "seed_dnc": (seed_dnc.SeedDNCConfig, seed_dnc.make),
    "dnc": (dnc.DNCConfig, dnc.make),
}


def model_names() -> list[str]:
  return sorted(REGISTRY)


def config_class(name: str) -> type:
  if name not in REGISTRY:
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
  return REGISTRY[name][0]


def name_of(config) -> str:
  """The registry name of a model config (ValueError for a config of no registered model)."""
  for name, (cls, _) in REGISTRY.items():
    if type(config) is cls:
      return name
  raise ValueError(f"no model is registered for config type {type(config).__name__}")


def takes(name: str) -> set[str]:
  """The hyperparameter names model `name`'s config has."""
  return {f.name for f in dataclasses.fields(config_class(name))}


def make_config(name: str, input_size: int, output_size: int, **hyperparameters):
  """The frozen config of model `name`; unknown or nonsense values raise ValueError."""
  cls = config_class(name)
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(hyperparameters) - known)
  if unknown:
    raise ValueError(
        f"model {name!r} has no hyperparameter(s) {', '.join(unknown)}; "
        f"it takes: {', '.join(sorted(known - {'input_size', 'output_size'}))}")
  return cls(input_size=input_size, output_size=output_size, **hyperparameters)


def build(config) -> Model:
  """The Model for an existing config (e.g. one restored from a checkpoint)."""
  name = name_of(config)
  if config.input_size is None or config.output_size is None:
    raise ValueError(f"model {name!r} needs its input_size and output_size set (a job sets "
                     f"them from its data)")
  return REGISTRY[name][1](config)


def make_model(name: str, input_size: int, output_size: int, **hyperparameters) -> Model:
  """Builds model `name` ('rnn', 'lstm', 'seed_dnc', 'dnc', ...) for one example."""
  return build(make_config(name, input_size, output_size, **hyperparameters))
