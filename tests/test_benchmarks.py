"""benchmarks/flops_ceiling.py: the FLOP count by hand, and a run at tiny sizes."""

import bz2
import importlib.util
import pathlib
import shutil
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

spec = importlib.util.spec_from_file_location("flops_ceiling",
                                              REPO / "benchmarks" / "flops_ceiling.py")
flops_ceiling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(flops_ceiling)


def test_flops_per_char_by_hand():
  # H=128, W=12, V=73: gates 4*128*140 = 71,680, readout 73*140 = 10,220, interface
  # 4*12*128 = 6,144 multiply-adds forward; x2 FLOP each, x3 with the backward pass
  assert flops_ceiling.flops_per_char(128, 12, 73) == 6 * (71_680 + 10_220 + 6_144)


def test_prints_rates_and_the_10x_need(capsys):
  assert flops_ceiling.main(["--batch", "2", "--hidden", "4", "--word_size", "2", "--vocab", "3",
                             "--oracle_char_s", "100"]) == 0
  out = capsys.readouterr().out
  assert out.count("GFLOP/s") >= 2 and "needs 1,000 char/s" in out


spec = importlib.util.spec_from_file_location("compressors", REPO / "benchmarks" / "compressors.py")
compressors = importlib.util.module_from_spec(spec)
sys.modules["compressors"] = compressors  # its dataclasses look their module up
spec.loader.exec_module(compressors)

TEXT = "".join(f"line {i}: the rabbit ran {i * i % 97} times round the tree\n" for i in range(400))


def test_a_bad_split_is_one_line_naming_the_flags(capsys, tmp_path):
  (tmp_path / "t.txt").write_text(TEXT)
  with pytest.raises(SystemExit) as info:
    compressors.main(["--data", str(tmp_path / "t.txt"), "--val_fraction", "0.6",
                      "--dev_fraction", "0.5"])
  assert "--dev_fraction" in str(info.value) and "\n" not in str(info.value)


def test_bzip2_conditional_bits_match_libbz2():
  # the bzip2 program and Python's bz2 module are the same library at level 9
  given, coded = TEXT[:15000], TEXT[15000:]
  expected = 8 * (len(bz2.compress((given + coded).encode(), 9))
                  - len(bz2.compress(given.encode(), 9))) / len(coded)
  bzip2 = next(c for c in compressors.COMPRESSORS if c.program == "bzip2")
  assert compressors.conditional_bpc(bzip2, given, coded) == pytest.approx(expected, abs=1e-12)


def test_a_missing_program_is_skipped_with_its_package(monkeypatch):
  real = shutil.which
  monkeypatch.setattr(shutil, "which", lambda p: None if p == "zpaq" else real(p))
  lines = []
  rows = compressors.measure(TEXT, only=("zpaq", "gzip"), out=lines.append)
  assert rows[0]["compressor"] == "gzip -9" and rows[0]["tail_bpc"] > 0
  assert rows[1] == {"compressor": "zpaq -m5",
                     "skipped": "zpaq is not installed (apt install zpaq)"}
  assert "skipped: zpaq is not installed" in compressors.markdown(rows, (1, 2, 3))


spec = importlib.util.spec_from_file_location("bandwidth", REPO / "benchmarks" / "bandwidth.py")
bandwidth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bandwidth)


def test_bandwidth_kernels_compute_stream_and_report_rates(capsys):
  a, b, c = (np.full(4, v, np.float32) for v in (1.0, 2.0, 0.5))
  expected = {"copy": a, "scale": 3 * a, "add": a + b, "triad": b + 3 * c}
  for name, (kernel, arrays) in bandwidth.KERNELS.items():
    np.testing.assert_array_equal(np.asarray(kernel(a, b, c)), expected[name])
    assert arrays == (2 if name in ("copy", "scale") else 3)
  assert bandwidth.main(["--size", "12", "--repeats", "2"]) == 0
  out = capsys.readouterr().out
  assert out.count("GB/s") == 5 and "4,096 float32 per array" in out
  with pytest.raises(SystemExit, match="--size must be in"):
    bandwidth.main(["--size", "40"])


sys.path.insert(0, str(REPO / "benchmarks"))  # dnc_speed imports peer_compare beside it
spec = importlib.util.spec_from_file_location("dnc_speed", REPO / "benchmarks" / "dnc_speed.py")
dnc_speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dnc_speed)
TINY = ["--batch", "1", "--time", "2", "--input", "2", "--hidden", "4", "--word", "2",
        "--reads", "1", "--memory-sizes", "4", "--steps", "1", "--warmup", "0", "--rounds", "2"]


def test_without_the_peer_it_says_how_to_install_it(capsys, tmp_path):
  assert dnc_speed.main(["--peer", str(tmp_path / "no-python"), *TINY]) == 1
  out = capsys.readouterr().out
  assert "the PyTorch DNC is not timed" in out and "pip install torch==2.13.0 dnc==1.1.0" in out


@pytest.mark.parametrize("measured", ["training step", "forward pass only"])
def test_the_peer_is_timed_interleaved_and_the_faster_threads_kept(capsys, tmp_path, measured):
  # a stand-in peer interpreter: answers the import check, then one JSON row per call,
  # slower with 1 thread than with the default, and logs each call
  calls = tmp_path / "calls"
  fake = tmp_path / "python"
  fake.write_text(f"""#!/bin/sh
[ "$1" = "-c" ] && exit 0
echo "$@" >> {calls}
case "$*" in *"--threads 1"*) ms=900;; *) ms=300;; esac
echo "Falling back to FLANN"
echo '{{"model": "dnc", "N": 4, "threads": 2, "measured": "{measured}", "step_ms": '$ms'}}'
""")
  fake.chmod(0o755)
  assert dnc_speed.main(["--peer", str(fake), *TINY]) == 0
  out = capsys.readouterr().out
  row = next(line for line in out.splitlines() if line.startswith("| 4 |"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[3:6] == ["300.0", "2", measured]
  train_ms = float(cells[1])
  ratio, ratio_training = (float(c.rstrip("x")) for c in cells[6:8])
  assert_ratio(ratio_training, 300.0, train_ms, ratio_half=0.05)  # printed to 1 decimal
  if measured == "training step":  # like for like: training steps; no forward pass timed
    assert cells[2] == "-" and ratio == ratio_training
  else:  # like for like: forward passes, dncjax's timed in the same rounds
    assert_ratio(ratio, 300.0, float(cells[2]), ratio_half=0.05)
  assert len(calls.read_text().splitlines()) == 4  # 2 rounds x (1 thread, the default)


@pytest.mark.skipif(not dnc_speed.native.build.compiler_found(),
                    reason="no C++ compiler ($CXX or c++) for the native link kernel")
def test_the_link_kernels_are_timed_interleaved_with_their_ratio(capsys):
  assert dnc_speed.main(["--link-kernel", "both", *TINY]) == 0
  out = capsys.readouterr().out
  row = next(line for line in out.splitlines() if line.startswith("| 4 |"))
  native_ms, xla_ms, ratio = (float(c) for c in row.strip("|").split("|")[1:])
  assert_ratio(ratio, xla_ms, native_ms)  # XLA's time over the kernel's (not the inverse)


def assert_ratio(ratio, over, under, ratio_half=0.005):
  """ratio is over / under, over and under printed to 2 decimals, the ratio to within
  ratio_half (0.005: 2 decimals)."""
  half = 0.005  # each printed time is within this of its value
  low = (over - half) / (under + half) - ratio_half
  high = (over + half) / max(under - half, 1e-9) + ratio_half
  assert low <= ratio <= high, (ratio, over, under)


@pytest.mark.skipif(not dnc_speed.native.build.compiler_found(),
                    reason="no C++ compiler ($CXX or c++) for the native kernels")
@pytest.mark.parametrize("flag, first, second", [("--link-history", "history", "lax.scan"),
                                                 ("--access-kernels", "kernels", "XLA")])
def test_a_dnc_setting_is_timed_interleaved_both_ways(capsys, flag, first, second):
  assert dnc_speed.main([flag, "both", "--link-kernel", "native", *TINY]) == 0
  out = capsys.readouterr().out
  assert f"| N | {first} ms / step | {second} ms / step | {second} / {first} |" in out
  row = next(line for line in out.splitlines() if line.startswith("| 4 |"))
  first_ms, second_ms, ratio = (float(c) for c in row.strip("|").split("|")[1:])
  assert_ratio(ratio, second_ms, first_ms)


import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import roofline  # noqa: E402  (benchmarks/ is on the path above)


def _matmul_chain(trips: int, inner: int | None = None):
  """The HLO of `trips` (x `inner`, nested) products of a 64 x 64 matrix, as a scan."""
  def body(c, _):
    if inner is None:
      return c @ c / 64, None
    return jax.lax.scan(lambda d, _: (d @ d / 64, None), c, length=inner)[0], None

  x = jnp.ones((64, 64), jnp.float32)
  return jax.jit(lambda x: jax.lax.scan(body, x, length=trips)[0]).lower(x).compile()


@pytest.mark.parametrize("trips, inner", [(8, None), (3, 5)])
def test_the_roofline_counts_every_trip_of_a_loop(trips, inner):
  compiled = _matmul_chain(trips, inner)
  products = trips * (inner or 1)
  flops = roofline.program_cost(compiled.as_text())["flops"]
  assert flops == pytest.approx(products * 2 * 64 ** 3, rel=0.05)
  xla = compiled.cost_analysis()  # XLA's own total counts each body once
  xla = xla[0] if isinstance(xla, (list, tuple)) else xla
  assert xla["flops"] < 0.5 * flops


def test_the_roofline_table_has_a_row_per_memory_size(capsys):
  assert dnc_speed.main(["--roofline", *TINY[:-6], "--memory-sizes", "4", "8", "--steps", "1",
                         "--warmup", "0"]) == 0
  out = capsys.readouterr().out
  assert "GB/s (best STREAM kernel)" in out
  rows = [line for line in out.splitlines() if line.startswith(("| 4 |", "| 8 |"))]
  assert len(rows) == 2 and all(len(r.strip("|").split("|")) == 9 for r in rows)


def test_the_link_bound_is_five_passes_over_every_link_matrix():
  args = dnc_speed.argparse.Namespace(model="dnc", batch=16, time=20, dtype="float32")
  assert roofline.link_bytes(args, 256) == 5 * 16 * 20 * 256 * 256 * 4
  assert roofline.link_bytes(dnc_speed.argparse.Namespace(**{**vars(args), "model": "sdnc"}),
                             256) is None


spec = importlib.util.spec_from_file_location("argsort_speed",
                                              REPO / "benchmarks" / "argsort_speed.py")
argsort_speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(argsort_speed)


@pytest.mark.skipif(not dnc_speed.native.build.compiler_found(),
                    reason="no C++ compiler ($CXX or c++) for the sort kernel")
def test_the_sorts_are_timed_interleaved_and_give_one_order(capsys):
  argv = ["--memory-sizes", "5", "33", "--batch", "3", "--time", "2", "--repeats", "1",
          "--rounds", "2"]
  assert argsort_speed.main(argv) == 0
  rows = [line for line in capsys.readouterr().out.splitlines() if line[:4] in ("| 5 ", "| 33")]
  assert len(rows) == 2
  for row in rows:
    xla_ms, kernel_ms, ratio, same = (c.strip() for c in row.strip("|").split("|")[1:])
    assert same == "yes"
    assert_ratio(float(ratio), float(xla_ms), float(kernel_ms), ratio_half=0.05)

