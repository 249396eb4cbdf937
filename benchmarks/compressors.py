"""General-purpose compressors on the char-LM's splits, in bits per character.

A compressor codes the held-out tail GIVEN the text before it, as the language model does:
its cost is size(compress(text up to the end of the tail)) - size(compress(text before the
tail)), in bits, per tail character. The development split (the characters just before the
tail) is scored the same way, given the training text. The text is the one the char-LM
reads (UTF-8, universal newlines: alice29.txt is 148,481 characters) and the splits are its
own (`--val_fraction` for the tail, `--dev_fraction` for the split before it).

  python benchmarks/compressors.py                      # alice29.txt, every compressor found
  python benchmarks/compressors.py --data my.txt --only bzip2 xz

A compressor whose program is not installed is listed as skipped with the package to install
(zpaq and 7z: `apt install zpaq p7zip-full` on Debian); the others still run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dncjax.charlm import data


@dataclasses.dataclass(frozen=True)
class Compressor:
  """A program run on a file `text` in an empty folder; it writes its output to stdout, or
  to the archive `archive` when one is named. `package` is where to get the program."""
  name: str
  program: str
  args: tuple[str, ...]
  package: str
  archive: str | None = None

  def size(self, data: bytes) -> int:
    """Bytes of `data` compressed, the format's headers included."""
    with tempfile.TemporaryDirectory() as tmp:
      (Path(tmp) / "text").write_bytes(data)
      out = Path(tmp) / (self.archive or "stdout")
      with open(Path(tmp) / "stdout", "wb") as stdout:
        subprocess.run([self.program, *self.args], check=True, stdout=stdout,
                       stderr=subprocess.DEVNULL, cwd=tmp)
      return out.stat().st_size


COMPRESSORS = (
    Compressor("gzip -9", "gzip", ("-9", "-c", "text"), "gzip"),
    Compressor("bzip2 -9", "bzip2", ("-9", "-c", "text"), "bzip2"),
    Compressor("xz -9e", "xz", ("-9e", "-c", "text"), "xz-utils"),
    # PPMd's order and memory fixed: 7z's presets choose them by the file's size, which
    # breaks the difference of two sizes (and at orders 16 and 32 a longer text can come
    # out smaller); order 8 is the best of 6, 8, 16, 32 on alice29.txt's tail
    Compressor("7z PPMd o8", "7z", ("a", "-bd", "-m0=PPMd:mem=256m:o=8", "out.7z", "text"),
               "p7zip-full", archive="out.7z"),
    Compressor("zpaq -m5", "zpaq", ("a", "out.zpaq", "text", "-m5"), "zpaq",
               archive="out.zpaq"),
)


def conditional_bpc(compressor: Compressor, given: str, coded: str) -> float:
  """Bits per character of `coded` compressed after `given`: the size of both compressed
  together minus the size of `given` alone."""
  if not coded:
    return float("nan")
  both = compressor.size((given + coded).encode("utf-8"))
  alone = compressor.size(given.encode("utf-8"))
  return 8 * (both - alone) / len(coded)


def measure(text: str, val_fraction: float = 0.1, dev_fraction: float = 0.1,
            only: tuple[str, ...] = (), out=print) -> list[dict]:
  """One row per compressor (its dev and tail BPC, or why it was skipped), on the
  char-LM's split of `text` (dncjax.charlm.data.split_text)."""
  train, dev, tail = data.split_text(text, val_fraction, dev_fraction)
  rows = []
  for c in COMPRESSORS:
    if only and c.program not in only:
      continue
    if shutil.which(c.program) is None:
      rows.append({"compressor": c.name, "skipped": f"{c.program} is not installed "
                   f"(apt install {c.package})"})
      out(f"{c.name}: skipped, {rows[-1]['skipped']}")
      continue
    row = {"compressor": c.name, "dev_bpc": conditional_bpc(c, train, dev),
           "tail_bpc": conditional_bpc(c, train + dev, tail)}
    out(f"{c.name}: dev {row['dev_bpc']:.3f}, tail {row['tail_bpc']:.3f} BPC")
    rows.append(row)
  return rows


def markdown(rows: list[dict], sizes: tuple[int, int, int]) -> str:
  """The table of `measure`'s rows, with the split sizes in its header."""
  lines = [f"| compressor | dev BPC ({sizes[1]:,} chars) | tail BPC ({sizes[2]:,} chars) |",
           "|---|---|---|"]
  for r in rows:
    if "skipped" in r:
      lines.append(f"| {r['compressor']} | skipped: {r['skipped']} | |")
    else:
      lines.append(f"| {r['compressor']} | {r['dev_bpc']:.3f} | {r['tail_bpc']:.3f} |")
  return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
  """The command line."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data", metavar="PATH",
                 help="UTF-8 text (default: alice29.txt, found as the char-LM finds it)")
  p.add_argument("--val_fraction", type=float, default=0.1, help="the held-out tail")
  p.add_argument("--dev_fraction", type=float, default=0.1,
                 help="the development split just before the tail")
  p.add_argument("--only", nargs="+", default=(), metavar="PROGRAM",
                 choices=[c.program for c in COMPRESSORS], help="only these programs")
  p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
  return p


def main(argv=None) -> int:
  """Prints each compressor's figures as it goes, then the markdown table."""
  args = parser().parse_args(argv)
  try:
    text = data.read_text(args.data if args.data else data.alice_path())
    train, dev, tail = data.split_text(text, args.val_fraction, args.dev_fraction)
  except ValueError as e:
    sys.exit(f"error: {e}")
  print(f"{len(text):,} characters: training {len(train):,}, dev {len(dev):,}, "
        f"tail {len(tail):,}")
  rows = measure(text, args.val_fraction, args.dev_fraction, tuple(args.only))
  print("\n" + markdown(rows, (len(train), len(dev), len(tail))))
  if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
  return 0


if __name__ == "__main__":
  sys.exit(main())
