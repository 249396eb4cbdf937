"""Config trees: the JSON round trip of config.json and checkpoints, and the settings a
command line gives, put on a job's defaults or checked against a checkpoint's config."""

import json

import pytest

from dncjax import configs
from dncjax.charlm import config as charlm_config
from dncjax.models.dnc import DNCConfig
from dncjax.models.lstm import LSTMConfig
from dncjax.tasks import config as task_config
from dncjax.tasks.generators import TaskConfig
from dncjax.training.optim import OptimizerConfig


def given(**settings):
  return configs.Given(tuple(configs.Setting(path.replace("__", "."), f"--{path}", value)
                             for path, value in settings.items()))


@pytest.mark.parametrize("config", [
    charlm_config.RunConfig(),
    charlm_config.RunConfig(model=DNCConfig(hidden=8, link_sharpness=True, dtype="float64"),
                            optim=OptimizerConfig("rmsprop", 1e-3, momentum=0.5,
                                                  clip_norm=2.0)),
    task_config.RunConfig(task=TaskConfig("associative_recall", 6, 2, 4, item_length=2)),
])
def test_json_round_trip(config):
  text = json.dumps(config.to_json())
  assert type(config).from_json(json.loads(text)) == config


def test_json_of_another_version_is_refused():
  data = charlm_config.RunConfig().to_json()
  with pytest.raises(ValueError, match="not settings of a RunConfig: hyper"):
    charlm_config.RunConfig.from_json({**data, "hyper": {"hidden": 8}})
  with pytest.raises(ValueError, match="written as a dict with its name"):
    charlm_config.RunConfig.from_json({**data, "model": "lstm"})
  with pytest.raises(ValueError, match="not settings of model 'lstm': bogus"):
    charlm_config.RunConfig.from_json({**data, "model": {**data["model"], "bogus": 1}})


def test_a_new_model_takes_the_jobs_model_defaults_then_the_flags():
  config = given(model="lstm", model__forget_bias=0.5).apply(
      charlm_config.RunConfig(), charlm_config.MODEL_DEFAULTS)
  assert config.model == LSTMConfig(hidden=128, forget_bias=0.5)
  assert config.optim == charlm_config.RunConfig().optim


def test_settings_of_one_config_are_checked_together():
  # min_length 12 alone would exceed max_length 10: applied together they fit
  config = given(task__min_length=12, task__max_length=20).apply(task_config.RunConfig())
  assert (config.task.min_length, config.task.max_length) == (12, 20)
  with pytest.raises(ValueError, match="min_length 12 > max_length 11"):
    given(task__min_length=12, task__max_length=11).apply(task_config.RunConfig())


def test_a_flag_the_model_lacks_is_a_usage_error():
  with pytest.raises(configs.UsageError, match="--model__memory_size does not apply to model "
                                               "'lstm'"):
    given(model="lstm", model__memory_size=4).apply(charlm_config.RunConfig())


def test_disagreements_name_the_flags():
  saved = charlm_config.RunConfig()
  assert given(model__hidden=128, optim__learning_rate=0.124).disagreements(saved) == []
  assert given(model__hidden=64, seed=3).disagreements(saved) == [
      ("--model__hidden", 64, 128), ("--seed", 3, 0)]
  assert given(model__link_sharpness=True).disagreements(saved) == [
      ("--model__link_sharpness", True, "not a setting of model 'lstm'")]


def test_get_and_replace_follow_paths():
  config = charlm_config.RunConfig()
  assert configs.get(config, "model") == "lstm"
  assert configs.get(config, "data.seq_length") == 32
  assert configs.replace(config, "data.seq_length", 8).data.seq_length == 8
  with pytest.raises(ValueError, match="--seqlength must be positive"):
    configs.replace(config, "data.seq_length", 0)
