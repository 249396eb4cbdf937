"""The command-line programs: --help and bad flags answer before JAX (or orbax, optuna,
matplotlib) loads; the console commands are installed; the package imports as installed
even from a folder holding a clone of it; the license file is the one pyproject names."""

import importlib.metadata
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
HEAVY = {"jax", "jaxlib", "optax", "orbax", "optuna", "matplotlib", "flax", "tqdm"}
SCRIPTS = ["alice", "tasks", "sweep", "sample", "dynamic_eval", "gradcheck", "tasks_report",
           "ensemble"]
CONSOLE = {"dncjax-train": "alice", "dncjax-tasks": "tasks", "dncjax-sweep": "sweep",
           "dncjax-sample": "sample", "dncjax-dynamic-eval": "dynamic_eval",
           "dncjax-gradcheck": "gradcheck", "dncjax-tasks-report": "tasks_report",
           "dncjax-memory-use": "memory_use", "dncjax-ensemble": "ensemble"}


def _imported(argv, cwd=REPO):
  """(exit status, stdout, stderr without import lines, top-level modules imported)."""
  proc = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=cwd,
                        capture_output=True, text=True, timeout=300)
  lines = proc.stderr.splitlines()
  names = {m.group(1).strip().split(".")[0] for l in lines
           if (m := re.match(r"import time:\s+\d+ \|\s+\d+ \|(.*)$", l))}
  rest = "\n".join(l for l in lines if not l.startswith("import time:"))
  return proc.returncode, proc.stdout, rest, names


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_answers_without_loading_jax(script):
  code, out, _, names = _imported([f"experiments/{script}.py", "--help"])
  assert code == 0 and "usage:" in out
  assert "dncjax" in names and not names & HEAVY, sorted(names & HEAVY)
  listed = [f for l in out.splitlines() if l.startswith("  -")
            for f in re.findall(r"(--?[\w-]+)", l.split("  ")[1])]
  assert len(listed) == len(set(listed)), "a flag is listed twice"


@pytest.mark.parametrize("argv, message", [
    (["experiments/alice.py", "--hidden", "-1"], "error: --hidden must be a positive integer"),
    (["experiments/alice.py", "--learning-rate", "0"], "error: --learning-rate must be positive"),
    (["experiments/alice.py", "--model", "lstm", "--memory_size", "4"],
     "error: --memory_size does not apply to model 'lstm' (its flags: --forget_bias"),
    (["experiments/alice.py", "--addressing", "sideways"], "invalid choice: 'sideways'"),
    (["experiments/alice.py", "--dropout", "1.5"], "error: --dropout must be in [0, 1)"),
    (["experiments/tasks.py", "--min_length", "12", "--max_length", "5"], "error: "),
    (["experiments/tasks.py", "--curriculum", "--curriculum-start", "12"],
     "error: --curriculum-start must be in --min_length..--max_length (1..10), got 12"),
    (["experiments/tasks.py", "--curriculum", "--eval_every", "0"],
     "error: --curriculum needs evaluations on the way: give --eval_every > 0"),
    (["experiments/sweep.py", "--param", "nonsense=1:2", "--steps", "5"], "error: "),
    (["experiments/sample.py", "--workdir", "x", "--temperature", "0"],
     "error: --temperature must be positive"),
    (["experiments/ensemble.py", "a", "b", "--ngram_order", "4", "40"],
     "error: --ngram_order must be between 0 and 32, got 40"),
    (["experiments/ensemble.py", "a", "b", "--ngram_order", "4", "--ngram-discount", "1"],
     "error: --ngram_discount must be in (0, 1), got 1.0"),
    (["experiments/ensemble.py", "a", "b", "--ngram_discount", "0.5"],
     "error: --ngram_discount applies to the count model: give --ngram_order"),
])
def test_a_bad_flag_is_one_line_before_jax_loads(argv, message, tmp_path):
  code, out, err, names = _imported([str(REPO / argv[0]), *argv[1:], "--workdir",
                                     str(tmp_path / "run")] if argv[0].endswith(("alice.py",
                                     "tasks.py")) else [str(REPO / argv[0]), *argv[1:]],
                                    cwd=tmp_path)
  assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
  assert not names & HEAVY, sorted(names & HEAVY)
  assert not (tmp_path / "run").exists()


def test_help_describes_model_flags_with_their_choices():
  _, out, _, _ = _imported(["experiments/alice.py", "--help"])
  flat = " ".join(out.split())
  assert "--addressing {location,content}" in flat and "--variant {seed,textbook}" in flat
  assert "how the heads find slots" in flat and "recompute each step" in flat
  assert "--keep INT latest checkpoints kept" in flat and "--preset {lstm,seed}" in flat


def test_preset_seed_is_the_original_headline_run():
  _, out, _, _ = _imported(["experiments/alice.py", "--preset", "seed", "--help"])
  flat = " ".join(out.split())
  assert "the model (default: seed_dnc)" in flat and "learning rate (default: 0.2)" in flat
  _, out, _, _ = _imported(["experiments/alice.py", "--help"])
  assert "the model (default: lstm)" in " ".join(out.split())


def test_console_commands_are_installed_and_answer():
  scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")
             if e.name.startswith("dncjax-")}
  assert scripts == {name: f"dncjax.commands.{mod}:console" for name, mod in CONSOLE.items()}
  exe = pathlib.Path(sys.executable).parent / "dncjax-train"
  if not exe.exists():
    pytest.skip(f"{exe} is not installed in this environment")
  proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0 and proc.stdout.startswith("usage: dncjax-train")


def test_a_clone_folder_on_the_path_does_not_hide_the_package(tmp_path):
  (tmp_path / "dncjax" / "src").mkdir(parents=True)  # what `git clone ... dncjax` leaves
  proc = subprocess.run([sys.executable, "-c", "import dncjax; print(dncjax.make_model)"],
                        cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0 and "function make_model" in proc.stdout, proc.stderr


def test_the_license_file_is_the_one_pyproject_names():
  license_text = (REPO / "LICENSE").read_text()
  assert 'license = { text = "MIT" }' in (REPO / "pyproject.toml").read_text()
  assert license_text.startswith("MIT License")
  assert "Permission is hereby granted, free of charge" in license_text


def test_help_of_every_config_lists_what_each_field_means():
  import dataclasses  # pylint: disable=import-outside-toplevel
  from dncjax.charlm import config as charlm_config  # pylint: disable=import-outside-toplevel
  from dncjax.models import hparams  # pylint: disable=import-outside-toplevel
  from dncjax.training import config as training_config  # pylint: disable=import-outside-toplevel
  classes = [*hparams.CONFIGS.values(), training_config.OptimizerConfig,
             training_config.Schedule, charlm_config.DataConfig, charlm_config.Options]
  for cls in classes:
    for f in dataclasses.fields(cls):
      assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
      assert f"  {f.name}: {f.metadata['help']}" in cls.__doc__
