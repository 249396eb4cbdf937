"""What defines a char-LM run (`RunConfig`), how to evaluate and report it (`Options`),
and the named starting points of experiments/alice.py (`PRESETS`).

The defaults are the best setting measured on Alice: an LSTM with H = 128, Adagrad at
lr 0.124 and eps 1e-8, dropout 0.23 on the readout and weight drop 0.3 on W_hh, 32 lanes of
32 characters, dynamic evaluation with the RMS rule (its rate and decay chosen on the
development split). `PRESETS["seed"]` is the original project's headline run (its
simplified DNC, lr 0.2, eps 1e-6, one hour). A resumed run must agree with its checkpoint
on all of `RunConfig`; `Options` may change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dncjax import checks, configs
from dncjax.fields import documented, field as _field
from dncjax.training.config import DYNAMIC_RULES, OptimizerConfig, Schedule

MODEL = "lstm"
MODEL_DEFAULTS = {"hidden": 128}  # for whichever model is chosen


@documented
@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The text, its held-out tail and the lanes' windows."""
  path: str | None = _field(None, "UTF-8 text file (default: alice29.txt from "
                            "$DNCJAX_DATA_DIR, the user cache, or downloaded once from the "
                            "Canterbury corpus)", flag="--data", metavar="PATH")
  val_fraction: float = _field(0.1, "the held-out tail: this fraction of the text, at its "
                               "end, read only by the final scoring (0: none)")
  dev_fraction: float = _field(0.1, "the development split: this fraction of the text, just "
                               "before the tail; evaluations, the best checkpoint and every "
                               "choice are made on it (0: none, so no evaluation during "
                               "training and no best checkpoint: the last state is scored)")
  batch_size: int = _field(32, "lanes B", flag="--batchsize")
  seq_length: int = _field(32, "window S, characters per update", flag="--seqlength")
  overlap: float = _field(0.0, "window overlap; lanes advance by S*(1-overlap)")

  def __post_init__(self):
    for name, flag in (("batch_size", "--batchsize"), ("seq_length", "--seqlength")):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{flag} must be positive (an integer), got {value!r}")
    checks.check_number("--val_fraction", self.val_fraction, 0, 1, high_open=True)
    checks.check_number("--dev_fraction", self.dev_fraction, 0, 1, high_open=True)
    check_fractions(self.dev_fraction, self.val_fraction)
    checks.check_number("--overlap", self.overlap, 0, 1, high_open=True)


def check_fractions(dev_fraction: float, val_fraction: float) -> None:
  """ValueError naming both flags when the development split and the tail leave no
  training text."""
  if dev_fraction + val_fraction >= 1.0:
    raise ValueError(f"--dev_fraction {dev_fraction} and --val_fraction {val_fraction} leave "
                     f"no training text: their sum must be below 1")


def default_model():
  """The char-LM's default model config: an LSTM with H = 128 (its sizes set
  later from the vocabulary)."""
  return configs.model_config(MODEL, MODEL_DEFAULTS)


@documented
@dataclasses.dataclass(frozen=True)
class RunConfig(configs.RunConfigBase):
  """The model (its own config; sizes set from the vocabulary), optimiser, data, the
  regularisation and the seed."""
  model: Any = dataclasses.field(default_factory=default_model)
  optim: OptimizerConfig = OptimizerConfig(learning_rate=0.124, eps=1e-8)
  data: DataConfig = DataConfig()
  dropout: float = _field(0.23, "dropout on the controller output (and read vectors) "
                          "before the readout")
  weight_drop: float = _field(0.3, "DropConnect on the recurrent matrices W_hh, one mask "
                              "per window (AWD-LSTM)")
  average: float = _field(0.0, "evaluate, choose (best/) and score the parameters' moving "
                          "average with this decay, e.g. 0.9995 (0: the parameters "
                          "themselves; dncjax.training.optim.averaged_parameters)")
  seed: int = _field(0, "seed for parameters, lanes and sampling")

  def __post_init__(self):
    checks.check_seed(self.seed)
    for name in ("dropout", "weight_drop", "average"):
      checks.check_number(f"--{name}", getattr(self, name), 0, 1, high_open=True)

  @classmethod
  def from_json(cls, data: dict):
    """The config a `to_json` dict describes; a run saved without `data.dev_fraction`
    (before the development split existed) trained on everything but the tail, so it
    reads as dev_fraction 0."""
    saved = dict(data.get("data", {}))
    saved.setdefault("dev_fraction", 0.0)
    return super().from_json({**data, "data": saved})


@documented
@dataclasses.dataclass(frozen=True)
class Options:
  """What a run evaluates, samples and reports (may change between a run and its resumption)."""
  sample_length: int = _field(500, "characters sampled at each evaluation (0: none)")
  prime: str = _field("Alice", "text the samples start from")
  temperature: float = _field(1.0, "sampling temperature")
  eval_lanes: int = _field(1, "lanes the development split and the tail are each split "
                           "into when scored (1: one pass, longest context)")
  score_tail: bool = _field(True, "score the held-out tail once at the end of a run that "
                            "ends on its budget, from the state chosen on the development "
                            "split (static, and dynamic with --dynamic_eval)")
  dynamic_eval: bool = _field(True, "dynamic evaluation at the end, of the development "
                              "split and of the tail; with several values of the --dynamic_* "
                              "flags every combination is scored on the development split and "
                              "the best one scores the tail")
  dynamic_rule: tuple[str, ...] = _field(("rms",), "dynamic evaluation update: the training "
                                         "optimiser continued, or Krause et al.'s RMS rule "
                                         "(dncjax.training.dynamic)", choices=DYNAMIC_RULES)
  dynamic_lr: tuple[float | None, ...] = _field((1e-3, 3e-3), "learning rates of dynamic "
                                                "evaluation (none: the training rate)")
  dynamic_eps: tuple[float, ...] = _field((2e-3,), "dynamic evaluation, rms rule: epsilon "
                                          "added to sqrt(MS_g), which bounds the step of "
                                          "parameters whose gradients on the training text "
                                          "are near zero (the output row of a character rare "
                                          "there)")
  dynamic_decay: tuple[float, ...] = _field((1e-3, 3e-3), "dynamic evaluation, rms rule: "
                                            "decays towards the trained parameters")
  dynamic_seq_length: tuple[int | None, ...] = _field((10,), "dynamic evaluation windows "
                                                      "(none: --seqlength)")
  gradcheck: bool = _field(False, "check jax.grad against finite differences before training")
  target_bpc: float = _field(1.28, "results.json records the time the training BPC first "
                             "reaches this")

  def __post_init__(self):
    for name in DYNAMIC_FLAGS:  # one value or several, kept as a tuple
      value = getattr(self, name)
      value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
      if not value:
        raise ValueError(f"--{name} needs at least one value")
      object.__setattr__(self, name, value)
    for name in ("eval_lanes", "sample_length"):
      _check_count(name, getattr(self, name), 0 if name == "sample_length" else 1)
    for S in self.dynamic_seq_length:
      if S is not None:
        _check_count("dynamic_seq_length", S, 1)
    checks.check_number("--temperature", self.temperature, 0, low_open=True)
    for lr in self.dynamic_lr:
      checks.check_number("--dynamic_lr", lr, 0, low_open=True, optional=True)
    for decay in self.dynamic_decay:
      checks.check_number("--dynamic_decay", decay, 0)
    for eps in self.dynamic_eps:
      checks.check_number("--dynamic_eps", eps, 0, low_open=True)
    checks.check_number("--target_bpc", self.target_bpc, 0)
    for rule in self.dynamic_rule:
      checks.check_choice("--dynamic_rule", rule, DYNAMIC_RULES)


DYNAMIC_FLAGS = ("dynamic_rule", "dynamic_lr", "dynamic_eps", "dynamic_decay",
                 "dynamic_seq_length")


def _check_count(name: str, value, least: int) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < least:
    raise ValueError(f"--{name} must be an integer >= {least}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Preset:
  """A starting point of experiments/alice.py: the run, its options and its schedule
  (flags given on top of it win; a resumed run takes its checkpoint's `config`)."""
  about: str
  config: RunConfig
  options: Options
  schedule: Schedule


PRESETS = {
    "lstm": Preset(
        "the best measured setting: the defaults of every flag (an LSTM with dropout and "
        "weight drop, 10 minutes, dynamic evaluation with the RMS rule)",
        RunConfig(), Options(),
        Schedule(timelimit=600.0, report_interval=20, eval_every=200, checkpoint_every=500)),
    "seed": Preset(
        "the original project's headline run: its simplified DNC (content addressing, "
        "H=128, N=12, W=12), Adagrad lr 0.2 eps 1e-6, no regularisation, one hour",
        RunConfig(model=configs.model_config("seed_dnc", MODEL_DEFAULTS),
                  optim=OptimizerConfig(learning_rate=0.2, eps=1e-6), dropout=0.0,
                  weight_drop=0.0),
        Options(dynamic_rule=("adagrad",), dynamic_lr=(None,), dynamic_decay=(0.0,),
                dynamic_seq_length=(None,)),
        Schedule(timelimit=3600.0, report_interval=20, eval_every=500, checkpoint_every=500)),
}
