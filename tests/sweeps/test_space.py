"""Sweep search spaces: --param ranges, lists and aliases, one-line errors, the space's
rules, and the hyperparameters a trial draws (conditional on its model)."""

import optuna
import pytest

from dncjax.models.lstm import LSTMConfig
from dncjax.models.seed_dnc import SeedDNCConfig
from dncjax.sweeps import space


def test_params_parse_ranges_lists_and_aliases():
  lr = space.Param.parse("lr=1e-3:1:log")
  assert (lr.name, lr.low, lr.high, lr.log, lr.choices) == ("learning_rate", 1e-3, 1.0, True, None)
  hidden = space.Param.parse("hidden=32:256")
  assert isinstance(hidden.low, int) and hidden.high == 256 and not hidden.log
  assert space.Param.parse("N=8,16").choices == (8, 16)
  assert space.Param.parse("N=8,16").name == "memory_size"
  assert space.Param.parse("clip_norm=none,1,5").choices == (None, 1.0, 5.0)
  assert space.Param.parse("model=lstm,seed_dnc").choices == ("lstm", "seed_dnc")
  assert space.parse_fixed("batchsize=16") == ("batch_size", 16)
  for p in (lr, hidden, space.Param.parse("clip_norm=none,1,5")):
    assert space.Param.parse(p.text()) == p  # a study's record reads back


@pytest.mark.parametrize("text, message", [
    ("foo=1,2", "unknown hyperparameter 'foo'"),
    ("lr=1:0.1", "empty or inverted range"),
    ("lr=0.1:0.1", "empty or inverted range"),
    ("lr=0:1:log", "log range needs low > 0"),
    ("lr=", "no values given"),
    ("lr=0.1,,0.2", "empty item"),
    ("hidden=1.5:8", "is not an int"),
    ("model=lstm:rnn", "give a list"),
    ("lr", "write name=a,b,c"),
    ("seed=none,1", "cannot be none"),
])
def test_bad_params_are_one_line_errors(text, message):
  with pytest.raises(space.SpaceError, match=message) as e:
    space.Param.parse(text)
  assert "\n" not in str(e.value)


def test_space_rules_and_trial_configs():
  with pytest.raises(space.SpaceError, match="memory_size is not a hyperparameter of lstm"):
    space.Space((space.Param.parse("N=4,8"),), (("model", "lstm"),))
  with pytest.raises(space.SpaceError, match="set more than once"):
    space.Space((space.Param.parse("lr=0.1,0.2"),), (("learning_rate", 0.1),))
  with pytest.raises(space.SpaceError, match="nothing to sweep"):
    space.Space((), ())
  mixed = space.Space((space.Param.parse("model=lstm,seed_dnc"), space.Param.parse("N=4,8")),
                      (("learning_rate", 0.05),))
  with pytest.raises(space.SpaceError, match="grid sampler needs every model"):
    mixed.grid()
  with pytest.raises(space.SpaceError, match="needs lists, not ranges"):
    space.Space((space.Param.parse("lr=0.01:0.1"),), ()).grid()
  # model hyperparameters are conditional on the trial's model
  study = optuna.create_study(sampler=optuna.samplers.GridSampler(
      {"model": ["lstm", "seed_dnc"], "memory_size": [4]}))
  drawn = [mixed.suggest(study.ask()) for _ in range(2)]
  assert {d["model"] for d in drawn} == {"lstm", "seed_dnc"}
  assert all(("memory_size" in d) == (d["model"] == "seed_dnc") for d in drawn)
  lstm = mixed.config({"model": "lstm"})
  assert (lstm.model_name, lstm.optim.learning_rate, lstm.model) == (
      "lstm", 0.05, LSTMConfig(hidden=128))
  dnc = mixed.config({"model": "seed_dnc", "memory_size": 4})
  assert dnc.model == SeedDNCConfig(hidden=128, memory_size=4)
