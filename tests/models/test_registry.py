"""The registry (dncjax.models): configs without JAX, models built on demand, float64 only
when the process asked for 64-bit JAX (the jobs ask, and say so)."""

import subprocess
import sys

import pytest

from dncjax import models
from dncjax.models import hparams


def _python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300)


def test_every_registered_model_builds_from_its_config():
  assert models.model_names() == sorted(hparams.CONFIGS)
  for name in models.model_names():
    model = models.make_model(name, 5, 7, hidden=4)
    assert models.name_of(model.config) == name and model.config.output_size == 7


def test_a_config_is_checked_without_loading_jax():
  proc = _python("import sys\nfrom dncjax import models\n"
                 "try:\n  models.make_config('dnc', 3, 3, memory_size=0)\n"
                 "except ValueError as e:\n  print(e)\n"
                 "print('jax' in sys.modules)")
  assert proc.stdout.splitlines() == ["memory_size must be a positive integer, got 0", "False"]


def test_float64_needs_x64_asked_for():
  proc = _python("import jax\nfrom dncjax import models\n"
                 "c = models.make_config('lstm', 3, 3, dtype='float64')\n"
                 "try:\n  models.build(c)\nexcept ValueError as e:\n  print('refused:', e)\n"
                 "print(jax.config.jax_enable_x64)\n"
                 "print(models.enable_x64_for(c), models.enable_x64_for(c))\n"
                 "print(jax.config.jax_enable_x64, models.build(c).init(jax.random.key(0))"
                 "['Why'].dtype)")
  out = proc.stdout.splitlines()
  assert out[0].startswith("refused: a float64 model needs 64-bit JAX") and out[1] == "False"
  assert out[2] == "True False" and out[3] == "True float64"  # switched once, said once


def test_unknown_names_are_one_line_errors():
  with pytest.raises(ValueError, match="unknown model 'ntm'; choose one of: dnc, lstm"):
    models.config_class("ntm")
  with pytest.raises(ValueError, match="has no hyperparameter"):
    models.make_config("rnn", 3, 3, memory_size=4)
