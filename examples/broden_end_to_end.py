"""End to end on a Broden-layout dataset: build, record a CNN, SEARCH, report. Runs in seconds.

What it shows: the whole vision workflow on data this script makes itself
(a few dozen images written by examples/broden_synthetic.py in NetDissect's
Broden layout, with their segmentation PNGs and JPEG pictures):

1. ``cxql store build broden`` (here the Python call ``build_broden``);
2. ``cxql.record``: a small torch CNN runs over the store's images with a
   forward hook on one conv layer, activations stream to a memory-mapped
   .npy and are thresholded (exact 0.995 quantile) and attached;
3. ``SEARCH unit * LENGTH 3 BEAM 5`` for every unit's best formula;
4. ``cxql report``: an HTML page with each unit's top images, the unit mask
   outlined and the formula's mask tinted; open it from disk.

The CNN is untrained (fixed seed): random colour filters already make units
that the colour concepts explain, which is enough to see the pieces fit. With
48 images the units are thresholded at the 0.95 quantile rather than the
default 0.995, so their masks are not a handful of pixels.
Run ``python examples/broden_end_to_end.py [--out DIR]``; the same steps on
the command line are printed at the end.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cxql  # noqa: E402
from broden_synthetic import write_dataset  # noqa: E402
from cxql.report import write_report  # noqa: E402
from cxql.store.broden import build_broden  # noqa: E402


def make_model() -> torch.nn.Module:
    """A small CNN (conv 3->16 stride 2, conv 16->32 stride 2, classifier); fixed seed."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 5, stride=2, padding=2), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10))


LAYER, NAME = "2", "conv2"     # the hooked module of make_model, and its name in the store
THRESHOLD = "quantile:0.95"    # a tiny probe set: looser than the 0.995 default
SEARCH = "SEARCH unit * LENGTH 3 BEAM 5"
TOP = 6                        # images per unit in the report


def shell_commands(root: Path, store: Path, report: Path) -> list[str]:
    """The command lines that repeat this script's steps with the same settings, so the same numbers."""
    q = shlex.quote
    model = f"{Path(__file__).resolve()}:make_model"
    return [f"cxql store build broden {q(str(root))} --out {q(str(store))}",
            f"cxql units record {q(str(store))} {LAYER} --name {NAME} --model {q(model)} "
            f"--threshold {THRESHOLD} --device cpu",
            f"cxql -s {q(str(store))} -c {q(SEARCH)}",
            f"cxql report {q(str(store))} {NAME} --out {q(str(report))} --top {TOP}"]


def main(argv: list[str] | None = None) -> list[dict]:
    """Run every step and print the shell commands that repeat them; return the SEARCH rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="working directory (default: a new temporary one)")
    parser.add_argument("--images", type=int, default=48)
    args = parser.parse_args(argv)
    work = Path(args.out or tempfile.mkdtemp(prefix="cxql-broden-demo-"))

    root = write_dataset(work / "broden", args.images, seg=56, with_images=True)
    store = build_broden(root, work / "store")
    print(f"store: {store.n_samples} images, {store.n_positions:,} positions, {len(store.concepts)} concepts, "
          f"{store.n_signatures:,} signatures")

    layer = cxql.record(make_model(), LAYER, store, name=NAME, batch_size=16, device="cpu", threshold=THRESHOLD)
    print(f"recorded layer {NAME}: {layer.n_units} units, threshold {layer.threshold}")

    session = cxql.connect(store)
    result = session.execute(SEARCH)
    for row in sorted(result.rows, key=lambda r: -r["iou"])[:8]:
        print(f"  unit {row['unit']:2d}  IoU {row['iou']:.3f}  {row['formula']}")
    page = write_report(store, NAME, work / "report", top=TOP, session=session, rows=result.rows)
    print(f"\nreport: {page}")
    print("\nthe same from the shell:\n  " + "\n  ".join(shell_commands(root, work / "store", work / "report")))
    return result.rows


if __name__ == "__main__":
    main()
