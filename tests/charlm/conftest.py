"""Fixtures of the char-LM tests."""

import os
from pathlib import Path

import pytest

from dncjax.charlm import data


@pytest.fixture
def alice_file() -> Path:
  data_dir = os.environ.get("DNCJAX_DATA_DIR")
  if not data_dir or not (Path(data_dir) / data.ALICE).is_file():
    pytest.skip("alice29.txt not found: set DNCJAX_DATA_DIR to the folder holding it")
  return Path(data_dir) / data.ALICE
