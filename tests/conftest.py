"""Shared test set-up.

float64 is switched on for the whole session (gradient and oracle checks need it; the
float32 models keep their explicit dtype). The corpus is found through DNCJAX_DATA_DIR,
as CI sets it; when unset, the shared folder beside the checkout is used if present.
"""

import os
import pathlib

import jax

jax.config.update("jax_enable_x64", True)

REPO = pathlib.Path(__file__).resolve().parents[1]
_shared = REPO.parent / "shared" / "data"
if "DNCJAX_DATA_DIR" in os.environ:  # CI gives it relative to the repository root
  os.environ["DNCJAX_DATA_DIR"] = os.path.abspath(os.environ["DNCJAX_DATA_DIR"])
elif (_shared / "alice29.txt").exists():
  os.environ["DNCJAX_DATA_DIR"] = str(_shared)
