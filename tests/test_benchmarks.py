"""benchmarks/flops_ceiling.py: the FLOP count by hand, and a run at tiny sizes."""

import importlib.util
import pathlib

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
