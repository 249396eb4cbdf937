"""Tests for dncjax.cli: one-line argument errors, model flags generated from the registered
models (what they give is a `configs.Given`, put on a job's defaults), the shared run and
schedule flags, and how `cli.run` turns errors into exit statuses."""

import dataclasses
import signal
import sys
import time
from typing import Any

import pytest

from dncjax import configs, models
import dncjax
from dncjax import cli
from dncjax.training import loop, run, signals

SKIPPED = {"input_size", "output_size", "dtype"}


def all_fields() -> dict:
  """{field: {model: default}} over the registered models' configs, as the flags see them."""
  fields = {}
  for name in dncjax.model_names():
    for field in dataclasses.fields(models.config_class(name)):
      if field.name not in SKIPPED:
        fields.setdefault(field.name, {})[name] = field.default
  return fields


@dataclasses.dataclass(frozen=True)
class Job:
  """A run config that holds only a model (as the jobs' run configs hold theirs)."""
  model: Any = dataclasses.field(default_factory=lambda: configs.model_config("lstm", {}))


def model_parser(defaults: Job = Job()) -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="prog")
  cli.add_config_flags(p, defaults, "run")
  return p


def given(*argv, defaults: Job = Job()) -> configs.Given:
  p = model_parser(defaults)
  return cli.given(p.parse_args(list(argv)), p)


def exit_of(capsys, fn, *args) -> tuple[int, str]:
  with pytest.raises(SystemExit) as info:
    fn(*args)
  return info.value.code, capsys.readouterr().err


# ---------------------------------------------------------------------------- parser errors


def test_an_argument_error_is_one_line_with_exit_status_2(capsys):
  p = cli.ArgumentParser(prog="prog")
  p.add_argument("--n", type=int)
  code, err = exit_of(capsys, p.parse_args, ["--bogus"])
  assert code == 2 and err == "error: unrecognized arguments: --bogus (see prog --help)\n"
  code, err = exit_of(capsys, p.parse_args, ["--n", "x"])
  assert code == 2 and err.count("\n") == 1
  assert err.startswith("error: argument --n: invalid int value: 'x'")
  assert err.endswith(" (see prog --help)\n")


def test_a_bad_link_kernel_variable_is_one_line_before_the_program_runs(capsys, monkeypatch):
  ran = []
  monkeypatch.setenv("DNCJAX_LINK_KERNEL", "fast")
  code, err = exit_of(capsys, cli.run, lambda: ran.append(1))
  assert code == 2 and not ran
  assert err == "error: DNCJAX_LINK_KERNEL must be one of auto, native, xla, got 'fast'\n"
  monkeypatch.setenv("DNCJAX_LINK_KERNEL", " XLA ")
  code, _ = exit_of(capsys, cli.run, lambda: ran.append(1))
  assert code == 0 and ran == [1]


def test_the_help_shows_a_default_unless_it_is_none_or_a_false_switch(monkeypatch):
  monkeypatch.setenv("COLUMNS", "400")
  p = cli.ArgumentParser(prog="prog")
  p.add_argument("--lr", type=float, default=0.5, help="rate")
  p.add_argument("--seed", type=int, default=None, help="seed")
  p.add_argument("--fast", action="store_true", help="go fast")
  p.add_argument("--width", type=int, default=3, help="width (default: three)")
  text = p.format_help()
  assert "rate (default: 0.5)" in text and "width (default: three)\n" in text
  assert "seed\n" in text and "go fast\n" in text


def test_the_help_shows_a_zero_default(monkeypatch):
  monkeypatch.setenv("COLUMNS", "400")
  p = cli.ArgumentParser(prog="prog")
  p.add_argument("--decay", type=float, default=0.0, help="decay")
  assert "decay (default: 0.0)" in p.format_help()


# ---------------------------------------------------------------------------- model flags


def test_there_is_one_flag_per_model_hyperparameter():
  p = model_parser()
  fields = all_fields()
  actions = p._actions  # pylint: disable=protected-access
  dests = {a.dest for a in actions if a.dest.startswith("model.")}
  assert dests == {f"model.{name}" for name in fields}  # one per field
  assert vars(p.parse_args([])) == {}  # each unset unless given
  assert {"hidden", "memory_size", "remat"} <= set(fields)
  assert not {f"model.{name}" for name in SKIPPED} & dests


def test_flags_parse_to_the_field_types():
  args = vars(model_parser().parse_args(
      ["--hidden", "7", "--init_scale", "0.25", "--variant", "textbook",
       "--controller_clip", "2.5", "--remat", "--no-reset_memory"]))
  assert (args["model.hidden"], args["model.init_scale"], args["model.variant"]) == (
      7, 0.25, "textbook")
  assert type(args["model.hidden"]) is int and type(args["model.init_scale"]) is float
  assert args["model.controller_clip"] == 2.5  # `float | None` in the config: a float flag
  assert args["model.remat"] is True and args["model.reset_memory"] is False
  assert "model.deallocate" not in args  # unset


def test_a_badly_typed_model_flag_is_a_usage_error(capsys):
  code, err = exit_of(capsys, model_parser().parse_args, ["--hidden", "many"])
  assert code == 2 and "--hidden" in err and err.count("\n") == 1


def shown(defaults: dict) -> str:
  return "(default: " + ", ".join(f"{m} {cli.repr_default(d)}" for m, d in defaults.items()) + ")"


def test_the_help_lists_each_models_default(monkeypatch):
  monkeypatch.setenv("COLUMNS", "400")  # one help text per line
  text = model_parser().format_help()
  for field, defaults in all_fields().items():
    assert shown(defaults) in text, field
  assert "lstm 32" in text and "dnc 64" in text
  assert "--remat, --no-remat" in text


def test_a_jobs_default_is_shown_and_is_what_an_unset_flag_takes(monkeypatch):
  monkeypatch.setenv("COLUMNS", "400")
  defaults = Job(configs.model_config("seed_dnc", {"hidden": 128}))
  p = model_parser(defaults)
  assert shown({**all_fields()["hidden"], "seed_dnc": 128}) in p.format_help()
  assert "dnc 64" in p.format_help()
  unset = cli.given(p.parse_args([]), p)
  assert unset == configs.Given() and unset.apply(defaults).model.hidden == 128
  other = given("--model", "dnc", defaults=defaults)  # another model: the job's defaults
  assert other.apply(defaults, {"hidden": 128}).model == configs.model_config(
      "dnc", {"hidden": 128})
  assert other.apply(defaults).model.hidden == 64  # or, without them, the model's own


def test_given_holds_only_flags_with_a_value():
  assert given() == configs.Given()
  assert given("--hidden", "8", "--no-remat") == configs.Given((  # flags as typed
      configs.Setting("model.hidden", "--hidden", 8, ("--hidden",)),
      configs.Setting("model.remat", "--no-remat", False, ("--remat", "--no-remat"))))
  defaults = Job(configs.model_config("lstm", {"hidden": 16}))  # a job's default is no
  assert given(defaults=defaults) == configs.Given()             # setting, but reaches
  assert given(defaults=defaults).apply(defaults).model.hidden == 16  # the model


def test_model_hyperparameters_are_checked_against_the_model():
  assert given("--hidden", "8").apply(Job()).model == configs.model_config("lstm", {"hidden": 8})
  assert given("--model", "dnc", "--hidden", "8", "--memory_size", "4").apply(Job()).model == (
      configs.model_config("dnc", {"hidden": 8, "memory_size": 4}))
  with pytest.raises(cli.UsageError) as info:
    given("--hidden", "8", "--memory_size", "4").apply(Job())  # the default model: lstm
  takes = ", ".join(sorted(models.takes("lstm") - SKIPPED))
  flags = ", ".join("--" + t for t in sorted(models.takes("lstm") - SKIPPED))
  assert str(info.value) == f"--memory_size does not apply to model 'lstm' (its flags: {flags})"
  assert "memory_size" not in takes and "dtype" not in takes and "hidden" in takes
  assert isinstance(info.value, ValueError)  # so cli.run makes it one line
  assert cli.UsageError is configs.UsageError


# ---------------------------------------------------------------------------- run flags


DEFAULTS = run.RunOptions("runs/x", schedule=loop.Schedule(
    timelimit=7200.0, report_interval=20, eval_every=500, checkpoint_every=1000), keep=3)


def run_parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="prog")
  cli.add_run_flags(p, DEFAULTS, "where outputs go")
  return p


def schedule(*argv) -> run.RunOptions:
  return cli.run_options(run_parser().parse_args(list(argv)), DEFAULTS)


def options(resume=False, steps=None, timelimit=7200.0, report_interval=20, eval_every=500,
            checkpoint_every=1000, keep=3, workdir="runs/x") -> run.RunOptions:
  return run.RunOptions(workdir, resume, loop.Schedule(
      steps, timelimit, report_interval, eval_every, checkpoint_every), keep)


def test_run_flags_default_to_the_options():
  assert schedule() == options() == DEFAULTS


def test_a_time_limit_is_only_a_default_without_steps():
  assert schedule("--steps", "50").schedule.timelimit is None
  assert schedule("--steps", "50", "--timelimit", "10").schedule.timelimit == 10.0
  assert schedule("--timelimit", "10").schedule.timelimit == 10.0


def test_run_flags_take_both_spellings():
  got = schedule("--resume", "--report-interval", "5", "--eval_every", "0",
                 "--checkpoint-every", "7", "--keep", "1", "--workdir", "runs/y")
  assert got == options(resume=True, report_interval=5, eval_every=0, checkpoint_every=7,
                        keep=1, workdir="runs/y")


@pytest.mark.parametrize("argv, flag", [
    (["--steps", "0"], "--steps"), (["--steps", "-3"], "--steps"),
    (["--timelimit", "0"], "--timelimit"), (["--timelimit", "-1"], "--timelimit"),
    (["--timelimit", "nan"], "--timelimit"),
    (["--report_interval", "0"], "--report_interval"), (["--keep", "0"], "--keep"),
    (["--eval_every", "-1"], "--eval_every"), (["--checkpoint_every", "-1"], "--checkpoint_every")])
def test_schedule_nonsense_is_refused_naming_the_flag(capsys, sigint_handler, argv, flag):
  with pytest.raises(ValueError, match=f"^{flag} must be"):
    schedule(*argv)
  code, err = exit_of(capsys, cli.run, lambda: schedule(*argv))  # a usage error: one line
  assert code == 2 and err.startswith(f"error: {flag} must be") and err.count("\n") == 1


# ---------------------------------------------------------------------------- cli.run


@pytest.fixture
def sigint_handler():
  """The SIGINT handler (and sys.unraisablehook) before the test, put back after it (cli.run
  replaces them)."""
  old, old_hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
  yield old
  signal.signal(signal.SIGINT, old)
  sys.unraisablehook = old_hook


def raising(error):
  def main():
    raise error
  return main


def test_run_exits_with_what_main_returns(sigint_handler):
  for returned, code in ((None, 0), (0, 0), (3, 3)):
    with pytest.raises(SystemExit) as info:
      cli.run(lambda: returned)
    assert info.value.code == code


def test_run_installs_the_default_sigint_handler(sigint_handler):
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script quiets Ctrl-C while loading
  seen = []
  with pytest.raises(SystemExit):
    cli.run(lambda: seen.append(signal.getsignal(signal.SIGINT)))
  assert seen == [signal.default_int_handler]


class StoreError(Exception):
  pass


@pytest.mark.parametrize("error, errors, line", [
    (ValueError("bad --lr"), (), "error: bad --lr"),
    (cli.UsageError("--steps must be positive, got 0"), (),
     "error: --steps must be positive, got 0"),
    (FileNotFoundError(2, "No such file or directory", "x.txt"), (),
     "error: [Errno 2] No such file or directory: 'x.txt'"),
    (StoreError("the store is busy"), (StoreError,), "error: the store is busy"),
    (ValueError("first line\n  second line\nthird"), (), "error: first line"),
    (ValueError("\n\n  indented first\nsecond"), (), "error: indented first")])
def test_known_errors_are_one_line_with_exit_status_2(capsys, sigint_handler, error, errors, line):
  code, err = exit_of(capsys, cli.run, raising(error), errors)
  assert (code, err) == (2, line + "\n")


def test_ctrl_c_exits_130(capsys, sigint_handler):
  assert exit_of(capsys, cli.run, raising(KeyboardInterrupt())) == (130, "interrupted\n")
  assert exit_of(capsys, cli.run, raising(signals.Interrupted(signal.SIGINT))) == (
      130, "interrupted\n")


def test_ctrl_c_where_python_cannot_raise_it_is_delivered_again(capsys, sigint_handler):
  def main():
    class Finalised:
      def __del__(self):  # as a Ctrl-C landing in a finaliser or a gc callback
        raise KeyboardInterrupt

    Finalised()  # Python cannot raise it there: "Exception ignored", unless delivered again
    for _ in range(60_000):  # until it is (sleeping lets the delivering thread run)
      time.sleep(0.001)
    return 0

  assert exit_of(capsys, cli.run, main) == (130, "interrupted\n")


def test_sigterm_exits_143(capsys, sigint_handler):
  assert exit_of(capsys, cli.run, raising(signals.Interrupted(signal.SIGTERM))) == (
      143, "terminated\n")


def test_out_of_memory_is_one_line(capsys, sigint_handler):
  error = RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.00GiB.\n"
                       "BufferAssignment OOM Debugging.\n...")
  code, err = exit_of(capsys, cli.run, raising(error))
  assert code == 2 and err.count("\n") == 1 and "out of memory" in err
  assert "allocate 9.00GiB" in err and "BufferAssignment" not in err


def test_other_exceptions_propagate(capsys, sigint_handler):
  with pytest.raises(RuntimeError, match="a bug"):
    cli.run(raising(RuntimeError("a bug")))
  with pytest.raises(ZeroDivisionError):
    cli.run(lambda: 1 / 0, (StoreError,))
  assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------- one_line


def test_one_line_keeps_the_first_line_within_the_limit():
  assert cli.one_line(ValueError("  a\nb")) == "a"
  assert cli.one_line(ValueError("")) == "ValueError"
  assert cli.one_line(KeyError()) == "KeyError"
  assert cli.one_line(ValueError("x" * 300)) == "x" * 300
  long = cli.one_line(ValueError("x" * 301))
  assert len(long) == 300 and long == "x" * 297 + "..."
  assert cli.one_line(ValueError("abcdefghij"), limit=8) == "abcde..."
