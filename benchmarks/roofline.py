"""The roofline of a training step, `dnc_speed.py --roofline`: the bytes one step moves over
the machine's measured memory bandwidth, next to the step's measured time.

Two counts of the bytes of one training step (forward + backward + update; B lanes, T steps):
- XLA's: the "bytes accessed" of XLA's cost analysis of the compiled step, every while
  loop's body counted as many times as the loop runs (`step_cost`; XLA's own total,
  `compiled.cost_analysis()`, counts a body once whatever its trip count, about 1/T of the
  truth for the scans over time). Each top-level HLO operation (a fusion is one) adds the
  bytes of its operands and results: what the compiled program moves if nothing stays in
  cache. FLOPs are counted the same way.
- The temporal link matrix's least traffic (dense `dnc` only): per lane and time step,
  L_{t-1} read and L_t written forward (the backward pass needs every L_t), then, backward,
  L_{t-1} and dL_t read and dL_{t-1} written: 5 N^2 numbers. A step-by-step implementation
  of the paper's equations that keeps every L_t moves at least that.
A bound is bytes / bandwidth, the best STREAM kernel of benchmarks/bandwidth.py measured at
the start of the run; "x bound" is the measured time over it (1.0: at the limit).
"""

from __future__ import annotations

import pathlib
import re
import sys

import jax
import numpy as np
from jax._src.lib import _jax as jax_lib  # XLA's cost analysis of an HLO module
from jaxlib import _hlo as hlo_lib  # an HLO module from its text

LINK_PASSES = 5  # [N, N] arrays read or written per lane and time step (docstring)
WHILE = re.compile(r"while\(.*condition=%([\w.\-]+), body=%([\w.\-]+)")
TRIPS = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')


def computations(hlo: str) -> dict[str, str]:
  """The HLO text of each computation of a module's text, by name."""
  found, name = {}, None
  for line in hlo.splitlines():
    head = re.match(r"(?:ENTRY )?%([\w.\-]+) \(", line)
    if head and line.endswith("{"):
      name, found[head.group(1)] = head.group(1), []
    if name is not None:
      found[name].append(line)
      if line == "}":
        name = None
  return {k: "\n".join(v) for k, v in found.items()}


def _as_entry(hlo: str, name: str) -> str:
  """The module's text with computation `name` as its entry."""
  lines = [line.removeprefix("ENTRY ") for line in hlo.splitlines()]
  return "\n".join("ENTRY " + line if line.startswith(f"%{name} (") else line
                   for line in lines)


def _cost(hlo: str, name: str) -> np.ndarray:
  """XLA's (FLOPs, bytes) of computation `name`, each while body in it counted once."""
  module = hlo_lib.hlo_module_from_text(_as_entry(hlo, name))
  cost = jax_lib.hlo_module_cost_analysis(jax.devices()[0].client, module)
  return np.array([cost.get("flops", 0.0), cost.get("bytes accessed", 0.0)])


def _loop_extra(hlo: str, comps: dict[str, str], name: str) -> np.ndarray:
  """What `_cost` leaves out of computation `name`: each of its loops' further trips."""
  extra = np.zeros(2)
  for line in comps[name].splitlines():
    loop = WHILE.search(line)
    if loop is None:
      continue
    trips = TRIPS.search(line)
    if trips is None:
      raise ValueError(f"a while loop of {name} has no known trip count: {line[:120]}")
    n, (condition, body) = int(trips.group(1)), loop.groups()
    extra += n * _cost(hlo, condition)  # runs n + 1 times, counted once
    extra += (n - 1) * _cost(hlo, body) + n * _loop_extra(hlo, comps, body)
  return extra


def program_cost(hlo: str) -> dict:
  """XLA's FLOPs and bytes of a compiled program's HLO text (`compiled.as_text()`), each
  while loop's body counted once per trip (nested loops too)."""
  comps = computations(hlo)
  entry = re.search(r"^ENTRY %([\w.\-]+) ", hlo, re.M).group(1)
  flops, nbytes = _cost(hlo, entry) + _loop_extra(hlo, comps, entry)
  return {"flops": float(flops), "bytes": float(nbytes)}


def step_cost(build, args, memory_size: int) -> dict:
  """`program_cost` of one training step at `memory_size`. `build(args, N)` is
  dnc_speed's: (jitted train step, state, batch)."""
  train_step, state, batch = build(args, memory_size)
  return program_cost(train_step.lower(state, batch).compile().as_text())


def link_bytes(args, memory_size: int) -> float | None:
  """The link matrix's least bytes per training step (docstring), None for sparse models."""
  if args.model != "dnc":
    return None
  itemsize = np.dtype(args.dtype).itemsize
  return LINK_PASSES * args.batch * args.time * memory_size ** 2 * itemsize


def bandwidth() -> float:
  """Bytes per second of the best STREAM kernel (benchmarks/bandwidth.py)."""
  sys.path.insert(0, str(pathlib.Path(__file__).parent))
  import bandwidth as stream  # pylint: disable=import-outside-toplevel
  return max(stream.measure().values()) * 1e9


def table(args, build, prepare, out=print) -> list[dict]:
  """Prints (and returns) one roofline row per memory size of `args.memory_sizes`:
  measured ms per step (`prepare`'s timer, the rolled program), XLA's GFLOP and GB per
  step, the link matrix's GB, and each bound with the measured time over it."""
  rate = bandwidth()
  out(f"bandwidth {rate / 1e9:.2f} GB/s (best STREAM kernel)\n")
  out("| N | ms / step | XLA GFLOP / step | XLA GB / step | XLA bound ms | x XLA bound "
      "| link GB / step | link bound ms | x link bound |")
  out("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  rows = []
  for n in args.memory_sizes:
    cost = step_cost(build, args, n)
    _, timer = prepare(args, n)
    ms = 1e3 * timer(args.steps)[0]
    links = link_bytes(args, n)
    row = {"N": n, "step_ms": ms, "gflop": cost["flops"] / 1e9, "xla_gb": cost["bytes"] / 1e9,
           "xla_bound_ms": 1e3 * cost["bytes"] / rate,
           "link_gb": None if links is None else links / 1e9,
           "link_bound_ms": None if links is None else 1e3 * links / rate}
    rows.append(row)
    link = ("— | — | —" if links is None else
            f"{row['link_gb']:.3f} | {row['link_bound_ms']:.1f} | "
            f"{ms / row['link_bound_ms']:.1f}")
    out(f"| {n} | {ms:.1f} | {row['gflop']:.2f} | {row['xla_gb']:.3f} | "
        f"{row['xla_bound_ms']:.1f} | {ms / row['xla_bound_ms']:.1f} | {link} |")
  return rows
