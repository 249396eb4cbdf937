"""The flags of experiments/gradcheck.py and the model config they give."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from dncjax import cli, configs

MODEL_DEFAULTS = {"init_scale": 0.5}  # larger weights than training's: gradients resolve


@dataclasses.dataclass(frozen=True)
class Checked:
  """The model checked (seed_dnc unless --model says otherwise)."""
  model: Any = dataclasses.field(
      default_factory=lambda: configs.model_config("seed_dnc", MODEL_DEFAULTS))


def add_flags(parser: argparse.ArgumentParser) -> None:
  """Adds experiments/gradcheck.py's flags to `parser`: the model's, V, B, S, the
  number of checks, delta, tolerance, seed and --fp32."""
  cli.add_config_flags(parser, Checked(), "the model", model_defaults=MODEL_DEFAULTS)
  for flag, kind, default, text in [
      ("--vocab", int, 11, "vocabulary size V (random tokens)"), ("--batchsize", int, 4, "B"),
      ("--seqlength", int, 10, "S, the window (and the warm-up before it)"),
      ("--num_checks", int, 10, "entries checked per parameter (all of a smaller one)"),
      ("--delta", float, 1e-5, "finite-difference step"),
      ("--tolerance", float, 1e-4, "largest relative error"), ("--seed", int, 0, "seed")]:
    parser.add_argument(flag, type=kind, default=default, help=text)
  parser.add_argument("--fp32", action="store_true",
                      help="check in float32 (default float64; needs a larger --delta)")


def model_fields(args: argparse.Namespace, parser: argparse.ArgumentParser):
  """(model name, its hyperparameters) the flags ask for; UsageError on nonsense."""
  for name in ("vocab", "batchsize", "seqlength", "num_checks"):
    if getattr(args, name) <= 0:
      raise cli.UsageError(f"--{name} must be positive, got {getattr(args, name)}")
  config = dataclasses.replace(cli.given(args, parser).apply(Checked(), MODEL_DEFAULTS).model,
                               dtype="float32" if args.fp32 else "float64")
  fields = configs.to_json(config)
  name = fields.pop("name")
  return name, {k: v for k, v in fields.items() if k not in ("input_size", "output_size")}
