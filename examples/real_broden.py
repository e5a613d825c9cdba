"""Explain a CNN's units on real Broden (its ADE20k part), as compexp does. Run as is with the dataset.

    python examples/real_broden.py /data/broden1_224 [--out runs/ade20k] [--device cuda]

What it does, each step skipped when its result is already there (so an
interrupted run picks up where it stopped):

1. builds the concept store of Broden's ADE20k rows (``--prefix ade20k/``) at
   112x112, about 22k images and 280 M positions (a few minutes; about 1.2 GB
   on disk, see benchmarks/broden_build.py);
2. records the model's layer (default: torchvision's ImageNet ResNet-18,
   ``layer4``, 512 units at 7x7; the weights download once) over the store's
   images, thresholded at the exact 0.995 quantile (README, *Metric*);
3. runs ``SEARCH unit <units> LENGTH 3 BEAM 5`` (compexp's vision settings)
   and writes the rows to OUT/search.jsonl;
4. writes the report, OUT/report/<layer>.html, to open from disk.

compexp probes a ResNet-18 trained on Places365; pass your own with
``--model file.py:factory`` (a function returning the torch module).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import cxql
from cxql.record import load_factory
from cxql.report import write_report
from cxql.store.broden import build_broden


def imagenet_resnet18() -> torch.nn.Module:
    """torchvision's ResNet-18 with ImageNet weights (needs torchvision; downloads the weights once)."""
    try:
        import torchvision
    except ImportError:
        sys.exit("this default model needs torchvision (pip install torchvision), or pass --model file.py:factory")
    return torchvision.models.resnet18(weights="IMAGENET1K_V1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("broden", help="the Broden directory (holds index.csv, label.csv, images/)")
    parser.add_argument("--out", default="runs/ade20k", help="where the store, results and report go")
    parser.add_argument("--prefix", default="ade20k/", help="image path prefix of the rows to probe ('' for all)")
    parser.add_argument("--resolution", type=int, default=112, help="mask resolution (default 112)")
    parser.add_argument("--model", help="module:factory or file.py:factory (default: ImageNet ResNet-18)")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--units", default="*", help="units to search, e.g. 0..63 (default: all)")
    parser.add_argument("--length", type=int, default=3)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    out = Path(args.out)

    store_dir = out / "store"
    if (store_dir / "manifest.json").exists():
        store = cxql.ConceptStore.open(store_dir)
    else:
        print(f"building {store_dir} from {args.broden} ...", flush=True)
        store = build_broden(args.broden, store_dir, prefixes=[args.prefix] if args.prefix else (),
                             resolution=(args.resolution, args.resolution), progress=_dots(500))
    print(f"store: {store.n_samples:,} images, {store.n_positions:,} positions, {len(store.concepts):,} concepts, "
          f"{store.n_signatures:,} signatures, {store.nbytes() / 2**30:.2f} GiB")

    if args.layer not in store.layers:
        model = load_factory(args.model) if args.model else imagenet_resnet18()
        print(f"recording {args.layer} on {args.device} ...", flush=True)
        cxql.record(model, args.layer, store, batch_size=args.batch_size, device=args.device, progress=_dots(5000))
    layer = store.layers[args.layer]
    print(f"layer {args.layer}: {layer.n_units} units, threshold {layer.threshold}")

    session = cxql.connect(store)
    session.execute(f"SET device = '{args.device}'")
    session.execute(f"SET layer = '{args.layer}'")
    result = session.execute(f"SEARCH unit {args.units} LENGTH {args.length} BEAM {args.beam}")
    with open(out / "search.jsonl", "w", encoding="utf-8") as f:
        for row in result.rows:
            f.write(json.dumps(row) + "\n")
    for row in sorted(result.rows, key=lambda r: -r["iou"])[:10]:
        print(f"  unit {row['unit']:4d}  IoU {row['iou']:.3f}  {row['formula']}")
    page = write_report(store, args.layer, out / "report", session=session, rows=result.rows)
    print(f"results: {out / 'search.jsonl'}\nreport:  {page}")


def _dots(every: int):
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if done[0] % every < n:
            print(f"  {done[0]:,}", flush=True)

    return tick


if __name__ == "__main__":
    main()
