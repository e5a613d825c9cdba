"""Seeing units: each unit's best formula and its top images, as PNGs and one HTML page per layer.

``cxql report STORE LAYER --out DIR`` writes, in the spirit of NetDissect's
report, ``DIR/LAYER.html`` (a static page: open it from disk, no server),
``DIR/LAYER/unit_NNNN.png`` (the unit's top-activating images side by side)
and ``DIR/LAYER.json`` (the same numbers for programs).

On each image the unit's mask (``activation > T_u``, at the mask resolution)
is outlined in yellow and the formula's mask is tinted cyan, so agreement and
disagreement between the two are visible at a glance. Images rank by their
maximum raw activation, as in NetDissect (or, when the layer keeps no
activations, by how many of their positions the unit covers).

Computing (:func:`unit_reports`, :func:`image_masks`) and drawing
(:func:`draw_tile`, :func:`html_page`) are separate: the first two return plain
data and need no Pillow.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .engine import Session, connect, open_session
from .errors import DataError
from .metrics import METRICS
from .parser import parse_formula
from .progress import counter
from .store import ConceptStore, Layer
from .subcommands import Command, Tools

UNIT_COLOR = (255, 221, 0)
FORMULA_COLOR = (0, 200, 255)


@dataclass
class UnitReport:
    """One unit: its best formula with its scores, and its top images (sample index, score)."""

    unit: int
    formula: str
    iou: float
    precision: float
    recall: float
    mask_size: int
    top: list[tuple[int, float]] = field(default_factory=list)
    metric: str = "iou"   # what the SEARCH maximised (``SET metric``), and its value
    score: float = 0.0
    description: str = ""  # the formula in English (cxql.describe)
    sanity: str = ""      # 'passes', or the controls it does not beat (cxql.sanity)


# ------------------------------------------------------------------ computing


def unit_reports(session: Session, layer: str, units: str = "*", *, length: int = 3, beam: int = 5,
                 top: int = 8, rows: list[dict] | None = None) -> list[UnitReport]:
    """SEARCH the units (as in the language: ``*``, ``0..63``, ``1, 5``) and rank their images.

    ``rows`` are SEARCH rows already computed for this layer (then nothing is searched again).
    """
    session.execute(f"SET layer = '{layer}'")
    if rows is None:
        rows = session.execute(f"SEARCH unit {units} LENGTH {int(length)} BEAM {int(beam)}").rows
    from . import sanity  # it computes with torch: loaded when a report is made, not with the CLI

    unit_ids = [int(r["unit"]) for r in rows]
    scores = sample_scores(session.store, session.store.layers[layer], unit_ids)
    from .describe import sentence

    metric = session.metric.name
    reports = []
    for r, column in zip(rows, scores.T):
        order = np.lexsort((np.arange(len(column)), -column))[:top]
        check = sanity.check(session, int(r["unit"]), parse_formula(r["formula"])).verdict() \
            if r["formula"] != "NONE" else "no formula"
        reports.append(UnitReport(int(r["unit"]), r["formula"], float(r["iou"]), float(r["precision"]),
                                  float(r["recall"]), int(r["mask_size"]),
                                  [(int(s), float(column[s])) for s in order], metric, float(r[metric]),
                                  sentence(parse_formula(r["formula"]), session.store)
                                  if r["formula"] not in (None, "NONE") else "", check))
    return reports


def sample_scores(store: ConceptStore, layer: Layer, units: list[int], chunk: int = 256) -> np.ndarray:
    """float64 [samples, len(units)]: each image's max raw activation (or active positions)."""
    acts = layer.activations
    if acts is None:
        per = store.n_positions // max(store.n_samples, 1)
        return np.stack([np.bincount(layer.unit_positions(u) // per, minlength=store.n_samples).astype(float)
                         for u in units], axis=1) if units else np.zeros((store.n_samples, 0))
    out = np.empty((acts.shape[0], len(units)))
    for start in range(0, acts.shape[0], chunk):
        block = np.asarray(acts[start:start + chunk], dtype=np.float64)[:, units]
        out[start:start + chunk] = block.reshape(block.shape[0], len(units), -1).max(axis=2)
    return out


def image_masks(session: Session, layer: str, unit: int, formula: str, sample: int) -> tuple[np.ndarray, np.ndarray]:
    """(unit mask, formula mask), bool [h, w] each, of one image at the mask resolution."""
    store = session.store
    shape = store.mask_shape
    if not shape or len(shape) != 2:
        raise DataError("reports draw images; this store's samples are not 2-D masks")
    a, b = int(store.sample_offsets[sample]), int(store.sample_offsets[sample + 1])
    positions = store.layers[layer].unit_positions(unit)
    unit_mask = np.zeros(b - a, dtype=bool)
    unit_mask[positions[np.searchsorted(positions, a):np.searchsorted(positions, b)] - a] = True
    formula_mask = np.zeros(b - a, dtype=bool)
    if formula != "NONE":
        sig_mask = session.backend.formula_mask(session.formula_plan(parse_formula(formula))).cpu().numpy()
        formula_mask = sig_mask[np.asarray(store.position_signatures[a:b], dtype=np.int64)]
    return unit_mask.reshape(shape), formula_mask.reshape(shape)


IMAGES_ARRAY = "images"  # images.npy in a store: uint8 [samples, H, W] or [samples, H, W, 3], drawn under the masks


def image_path(store: ConceptStore, sample: int) -> Path | None:
    """The probe image file of a sample: metadata ``image_root`` / the sample's name, when that file exists.

    ``image_root`` may be relative: then it is read from the store's own
    directory, so a store can carry its pictures and still be moved.
    """
    root, names = store.metadata.get("image_root"), store.sample_names
    if not root or not names:
        return None
    base = Path(root)
    if not base.is_absolute() and store.path is not None:
        base = Path(store.path) / base
    path = base / str(names[sample])
    return path if path.is_file() else None


def sample_image(store: ConceptStore, sample: int):
    """The picture to draw under a sample's masks (a PIL image), or None for a grey tile.

    The store's own ``images`` array comes first (the demo store carries its
    digits that way), then a file under ``image_root``.
    """
    from PIL import Image

    pictures = store.arrays.get(IMAGES_ARRAY)
    if pictures is not None:
        grey_or_rgb = pictures.ndim == 3 or (pictures.ndim == 4 and pictures.shape[-1] in (3, 4))
        if len(pictures) != store.n_samples or not grey_or_rgb or pictures.dtype != np.uint8:
            raise DataError(f"{IMAGES_ARRAY}.npy is {pictures.dtype} {list(pictures.shape)}; expected uint8 "
                            f"[{store.n_samples}, H, W] or [{store.n_samples}, H, W, 3] (one picture a sample)")
        return Image.fromarray(np.asarray(pictures[sample]))
    path = image_path(store, sample)
    if path is None:
        return None
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # decoded now, while the file is open
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


# ------------------------------------------------------------------ drawing


def outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside the mask (or on the border)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def draw_tile(image, unit_mask: np.ndarray, formula_mask: np.ndarray, size: int = 112):
    """A PIL image: the probe image (or grey) with the formula tinted and the unit mask outlined."""
    from PIL import Image

    base = (image.convert("RGB") if image is not None else Image.new("RGB", (size, size), (96, 96, 96)))
    pixels = np.asarray(base.resize((size, size), Image.BILINEAR), dtype=np.float32)
    scale = lambda m: np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 0
    formula, unit = scale(formula_mask), scale(unit_mask)
    pixels *= 0.6  # dimmed, so that both overlays stand out
    pixels[formula] = 0.4 * pixels[formula] + 0.6 * np.array(FORMULA_COLOR, dtype=np.float32)
    edge = outline(unit)
    edge |= outline(unit & ~edge)  # two pixels wide, inside the mask
    pixels[edge] = UNIT_COLOR
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def strip(tiles: list, gap: int = 4):
    """Tiles side by side on white."""
    from PIL import Image

    if not tiles:
        return Image.new("RGB", (1, 1), (255, 255, 255))
    w, h = tiles[0].size
    canvas = Image.new("RGB", (len(tiles) * (w + gap) - gap, h), (255, 255, 255))
    for i, tile in enumerate(tiles):
        canvas.paste(tile, (i * (w + gap), 0))
    return canvas


def _scores(r: UnitReport) -> str:
    """``F1 0.4000 · IoU 0.2500 · precision ...``: the search metric first."""
    values = {"iou": r.iou, "precision": r.precision, "recall": r.recall, r.metric: r.score}
    order = [r.metric] + [name for name in ("iou", "precision", "recall") if name != r.metric]
    return " &middot; ".join(f"{METRICS[name].label} {values[name]:.4f}" for name in order)


def _flag(r: UnitReport) -> str:
    """A warning under an explanation that does not beat its sanity controls (cxql.sanity)."""
    if not r.sanity.startswith("fails"):
        return ""
    return f'<br><span class="w">&#9888; sanity check {html.escape(r.sanity)}</span>'


def html_page(store_label: str, layer: str, reports: list[UnitReport], image_dir: str,
              sample_names: list[str] | None, extra: str = "") -> str:
    """A static page: one row per unit, best score (the search metric) first."""
    rows = []
    for r in sorted(reports, key=lambda r: (-r.score, r.unit)):
        captions = " &middot; ".join(html.escape(sample_names[s] if sample_names else f"sample {s}") for s, _ in r.top)
        rows.append(
            f'<tr id="unit{r.unit}"><td class="n">{r.unit}</td><td><b>{html.escape(r.formula)}</b><br>'
            f'<i>{html.escape(r.description)}</i><br>'
            f'<span class="m">{_scores(r)} &middot; {r.mask_size:,} positions</span>{_flag(r)}</td>'
            f'<td><img src="{html.escape(image_dir)}/unit_{r.unit:04d}.png" alt="unit {r.unit}" loading="lazy">'
            f'<div class="m">{captions}</div></td></tr>')
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(layer)} - cxql report</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td{{border-top:1px solid #ddd;padding:6px 10px;vertical-align:top}} td.n{{font-size:1.3em;color:#555}}
.m{{color:#666;font-size:.85em}} .w{{color:#b00;font-size:.85em}} table.s td{{padding:2px 8px;font-size:.9em}} .key span{{display:inline-block;width:1em;height:1em;vertical-align:middle}}</style>
</head><body><h1>Layer {html.escape(layer)}</h1>
<p>{html.escape(store_label)} &middot; {len(reports)} units, best IoU first.
<span class="key"><span style="border:2px solid rgb{UNIT_COLOR}"></span> unit mask
&nbsp;<span style="background:rgb{FORMULA_COLOR}"></span> formula mask</span></p>
<table>{''.join(rows)}</table>{extra}</body></html>
"""


def write_report(store: "ConceptStore | str | Path", layer: str, out: str | Path, *, units: str = "*",
                 length: int = 3, beam: int = 5, top: int = 8, tile: int = 112,
                 session: Session | None = None, rows: list[dict] | None = None) -> Path:
    """Compute and draw a layer's report into ``out``; return the HTML page's path."""
    check_report_out(Path(out))
    session = session or connect(store)
    if layer not in session.store.layers:
        raise DataError(f"no layer {layer!r} in the store; layers: {', '.join(session.store.layers) or 'none'}")
    reports = unit_reports(session, layer, units, length=length, beam=beam, top=top, rows=rows)
    return draw_report(session, layer, reports, out, tile=tile, length=length)


def check_report_out(out: Path) -> None:
    """Refuse an ``out`` that is a cxql store or lies inside one: report files there would mix with its arrays."""
    from .errors import UsageError
    from .store.commit import is_store

    real = Path(out).resolve()  # links followed
    for folder in (real, *real.parents):
        if is_store(folder):
            raise UsageError(f"--out {out}: {folder} is a cxql store; write the report to a folder outside it")


def draw_report(session: Session, layer: str, reports: list[UnitReport], out: str | Path, *, tile: int = 112,
                progress: Callable[[int], None] | None = None, length: int = 3) -> Path:
    """Write the PNGs, the HTML page and the JSON of computed reports; return the page's path.

    Below the units: the layer summary (its figure saved as ``LAYER_summary.png``) and, when the store
    has an attached model fed by this layer, class contributions (:mod:`cxql.model_report`).
    """
    store = session.store
    out = Path(out)
    check_report_out(out)
    safe = layer.replace("/", "_")
    (out / safe).mkdir(parents=True, exist_ok=True)
    for r in reports:
        tiles = []
        for sample, _ in r.top:
            masks = image_masks(session, layer, r.unit, r.formula, sample)
            tiles.append(draw_tile(sample_image(store, sample), *masks, size=tile))
        strip(tiles).save(out / safe / f"unit_{r.unit:04d}.png")
        if progress:
            progress(1)
    label = str(store.path) if store.path else "in-memory store"
    page = out / f"{safe}.html"
    from .model_report import sections

    extra = sections(session, layer, {r.unit: r.formula for r in reports}, out, length)
    page.write_text(html_page(label, layer, reports, safe, store.sample_names, extra), encoding="utf-8")
    (out / f"{safe}.json").write_text(json.dumps([asdict(r) for r in reports], indent=1), encoding="utf-8")
    return page


# ------------------------------------------------------------------ CLI


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="store directory, or demo: the bundled demo store")
    p.add_argument("layer")
    p.add_argument("--out", required=True, help="directory for LAYER.html, LAYER/unit_NNNN.png, LAYER.json")
    p.add_argument("--units", default="*", help="units as in the language: *, 0..63, '1, 5, 9' (default *)")
    p.add_argument("--length", type=int, default=3)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--top", type=int, default=8, help="top-activating images per unit (default 8)")
    p.add_argument("--tile", type=int, default=112, help="pixels per image tile (default 112)")
    p.add_argument("--device", help="torch device for SEARCH, e.g. cuda")
    p.add_argument("--metric", default="iou", choices=list(METRICS), help="what SEARCH maximises (default iou)")


def _command(args: argparse.Namespace, tools: Tools) -> int:
    session = open_session(args.store, args.device)
    if args.layer not in session.store.layers:
        raise DataError(f"no layer {args.layer!r} in {args.store}; layers: {', '.join(session.store.layers) or 'none'}")
    session.progress = tools.progress()
    session.execute(f"SET metric = '{args.metric}'")
    reports = unit_reports(session, args.layer, args.units, length=args.length, beam=args.beam, top=args.top)
    bar = tools.progress()
    bar.start(len(reports), "drawing units")
    try:
        page = draw_report(session, args.layer, reports, args.out, tile=args.tile, progress=counter(bar),
                           length=args.length)
    finally:
        bar.finish()
    print(f"wrote {page} ({len(reports)} units)", file=sys.stderr)
    return 0


#: ``cxql report`` (listed in :data:`cxql.subcommands.BUILTIN`).
COMMAND = Command(("report",), "HTML page and PNGs of a layer's units (best formula, top images)", _arguments,
                  _command, description=__doc__.split("\n\n")[0])
