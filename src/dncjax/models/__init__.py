"""The recurrent cores and their registry.

Every model is a frozen config dataclass (`hparams.py`, no JAX needed) and a module with
`make(config) -> core.Model`; `REGISTRY` names them. `make_model('dnc', input_size,
output_size, hidden=128)` builds one by name, `build(config)` from a config (e.g. one
restored from a checkpoint). A model's module (and JAX) loads when it is first built.
"""

from __future__ import annotations

import dataclasses
import importlib

from dncjax.models import hparams

# name -> (config class, the module whose `make(config)` builds the core)
REGISTRY: dict[str, tuple[type, str]] = {
    name: (cls, f"dncjax.models.{name}") for name, cls in hparams.CONFIGS.items()}
NOT_HYPERPARAMETERS = ("input_size", "output_size", "dtype")  # set by the job and --fp64


def model_names() -> list[str]:
  """The registered model names, sorted."""
  return sorted(REGISTRY)


def config_class(name: str) -> type:
  """The config class of model `name`; ValueError for an unknown name."""
  if name not in REGISTRY:
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
  return REGISTRY[name][0]


def name_of(config) -> str:
  """The registry name of a model config (ValueError for a config of no registered model)."""
  for name, (cls, _) in REGISTRY.items():
    if type(config) is cls:
      return name
  raise ValueError(f"no model is registered for config type {type(config).__name__}")


def is_model_config(config) -> bool:
  """Whether `config` is (exactly) an instance of a registered model's config
  class."""
  return any(type(config) is cls for cls, _ in REGISTRY.values())


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


def build(config):
  """The `core.Model` for an existing config (e.g. one restored from a checkpoint). A
  float64 config needs `jax_enable_x64` on (the scripts' --fp64 switches it on)."""
  name = name_of(config)
  if config.input_size is None or config.output_size is None:
    raise ValueError(f"model {name!r} needs its input_size and output_size set (a job sets "
                     f"them from its data)")
  if config.dtype == "float64":
    import jax  # pylint: disable=import-outside-toplevel
    if not jax.config.jax_enable_x64:
      raise ValueError("a float64 model needs 64-bit JAX: call jax.config.update("
                       "'jax_enable_x64', True) first (the scripts' --fp64 does)")
  return importlib.import_module(REGISTRY[name][1]).make(config)


X64_NOTICE = "float64 model: jax_enable_x64 is switched on for this process"


def enable_x64_for(config) -> bool:
  """Switches on `jax_enable_x64` for this process when `config` is a float64 model (the
  jobs and scripts call this, and print `X64_NOTICE` when it returns True; a library
  caller asks for 64-bit JAX themselves). True when it switched it on."""
  import jax  # pylint: disable=import-outside-toplevel
  if config.dtype == "float64" and not jax.config.jax_enable_x64:
    jax.config.update("jax_enable_x64", True)
    return True
  return False


def make_model(name: str, input_size: int, output_size: int, **hyperparameters):
  """Builds model `name` ('rnn', 'lstm', 'seed_dnc', 'dnc', ...) for one example."""
  return build(make_config(name, input_size, output_size, **hyperparameters))
