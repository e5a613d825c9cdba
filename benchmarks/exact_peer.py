"""Benchmark (run by hand): the peer package's "optimal" search next to SEARCH ... EXACT and the beam.

Usage (from the repository root; the peer lives in its own venv, not in cxql's)::

    python -m venv --system-site-packages /work/peer-venv
    /work/peer-venv/bin/pip install --no-deps compositional-explanations   # 0.0.3.x, La Rosa & Gilpin
    python benchmarks/exact_peer.py                      # 100 images = 1.25M positions, 1,000 concepts, units 0..3
    python benchmarks/exact_peer.py --units 0,5,9 --cap 600 --peer-python /path/to/python

The store is benchmarks/search.py's Broden-like store and the units are the
first units of benchmarks/exact.py (``unit_histograms`` with the same seed).
Those units exist only as signature histograms; the peer needs position
masks, so each unit is given real positions: for every signature s it fires on
exactly hist_u(s) positions drawn at random among the positions that carry s.
Its histogram, hence its IoU with every formula, is that of exact.py's unit,
and the masks are attached with ``store.add_unit_masks``, so cxql and the peer
see the same unit masks and the same concept masks (the peer gets them dense:
one bool [images, 112*112] tensor per concept, 1.25 GB at 100 images).

For each unit it times cxql's ``SEARCH unit u LENGTH 3 EXACT`` and ``... BEAM
10``, then runs the peer's ``optimal.compute_optimal_explanations`` (length 3,
CPU) in a subprocess of the peer's Python under a time cap (``--cap``, 300 s),
reads back its formula and recomputes its IoU with cxql's EVAL on the same
store, and says whether it equals the proven optimum. A run that hits the cap
reports the best formula the peer had found so far (from its progress line).

``--trap`` runs instead a 100-position case of the first trap below: concepts
A = 0..39, B = 20..59, C = 60..79 (C alone there), D and E as decoys, and a
unit that is exactly (A AND B) OR C.

What the peer searches (read from compositional_explanations 0.0.3.4):
``length`` counts leaves (``len(Or(a, b)) == 2``); formulas grow left-deep by
``f OR c``, ``f AND c`` and ``f AND (NOT c)`` over distinct concepts, NOT only
on the new leaf: the same space as cxql's EXACT. It evaluates formulas of
exactly ``length`` leaves, their prefixes (ancestors of evaluated formulas) and
single concepts, and prefers the shorter formula on ties. Its IoU count is
exact (intersection over hits + extras, per image), and agreed with EVAL on
every formula below. Its pruning is not admissible: before evaluating a
full-length formula whose left part has one operator it rewrites
``(A op1 B) op2 C -> (A op2 C) op1 (B op2 C)`` (``apply_distributive_property``)
and drops the formula unevaluated when the rewrite's estimate is below the
pruning threshold. Its estimate of an AND of two formulas
(``optimal_sample_heuristic.estimate_label_info``) sets the "unique"
intersection (positions covered by exactly one concept) to 0, as if the
operands shared no concept; (A OR C) AND (B OR C) keeps C's unique positions,
so the estimate is below the formula's IoU. At length 4 the rewrite loop
``for i in range(len(chain) - 1): final = op(chain[i], chain[i + 1])`` keeps
only the last pair, i.e. it estimates a different, smaller formula.

Measured on 2026-12-01 (2-core VM, one core: ``nice -n 10 taskset -c 0``,
OMP_NUM_THREADS=1; compositional_explanations 0.0.3.4, torch 2.13 CPU), store
of 100 images = 1,254,400 positions, 3,487 signatures, 1,000 concepts, LENGTH 3,
BEAM 10, peer cap 300 s, units 0..11 of exact.py (two runs: default units, then
``--units 4,...,11``)::

    unit | cxql EXACT                               IoU     s | BEAM 10                                  IoU | peer optimal                              IoU      s
       0 | ((object21 AND white) OR object101)   0.6440  0.01 | object101                             0.5793 | ((object21 AND white) OR object101)    0.6440  15.1
       1 | (scene110 OR object49)                0.2114  0.01 | (scene110 OR object49)                0.2114 | (scene110 OR object49)                 0.2114  56.7
       2 | ((sky AND material14) OR skyscraper)  0.1755  0.00 | skyscraper                            0.1629 | ((sky AND material14) OR skyscraper)   0.1755  75.8
       3 | ((object49 AND blue) OR scene230)     0.3032  0.01 | scene230                              0.3017 | ((object49 AND blue) OR scene230)      0.3032  41.1
       4 | ((object102 OR object127) OR object132) 0.2996 0.01 | (same)                              0.2996 | (same)                                 0.2996  39.1
       5 | (object118 OR material29)             0.4223  0.00 | (material29 OR object118)             0.4223 | (object118 OR material29)              0.4223  27.5
       6 | ((object49 AND material0) OR object354) 0.2944 0.00 | (same)                              0.2944 | (same)                                 0.2944  30.9
       7 | ((scene34 AND NOT door) OR part3)     0.1312  0.01 | ((part3 OR scene34) AND NOT door)     0.1312 | ((scene34 AND NOT door) OR part3)      0.1312  98.7
       8 | ((cabinet OR part12) AND purple)      0.1312  0.02 | ((texture22 AND ceiling) OR object203) 0.1214 | ((cabinet OR part12) AND purple)      0.1312  71.6
       9 | ((object150 OR object203) AND NOT pink) 0.3324 0.00 | (same)                              0.3324 | ((object150 AND purple) OR object203)  0.3324  15.5
      10 | ((scene16 AND sky) OR object96)       0.2663  0.01 | ((living_room AND pink) OR object96)  0.2597 | ((scene16 AND sky) OR object96)        0.2663  21.6
      11 | ((scene109 AND wall) AND blue)        0.2949  0.02 | ((scene109 AND blue) AND wall)        0.2949 | ((scene109 AND wall) AND blue)         0.2949  32.6

The peer finished every unit within the cap (15-99 s of search per unit, plus
~1.3-4 s building its dense masks and ~5 s of start-up; cxql: 0.00-0.02 s per
unit) and its IoU equalled the proven optimum on all 12 (on unit 9 a different
formula of the same IoU); the beam was below it on 6 of 12. The trap did not
fire here because no position of this store is covered by exactly one concept
(every image has a scene and every cell a colour), so the "unique" quantities
the AND estimate drops are all 0. On ``--trap`` it does fire::

    trap | ((A AND B) OR C)                      1.0000  0.01 | ((C OR A) AND NOT E)                  0.8000 | NONE (no formula at all)                   -   0.0

at LENGTH 3 and at LENGTH 4 alike: the peer pops ((A AND B) OR C) with its own
estimate 1.0, rewrites it to ((B OR C) AND (A OR C)), estimates that at 0
(below the threshold 1.0 set by the min estimate of that very path), drops it
unevaluated, and ends with an empty frontier and no formula -- although C
alone has IoU 0.5 and (C OR A) 0.67.

LENGTH 4 (``--units 0,1 --length 4 --cap 240``): cxql EXACT proved
(((object21 OR object130) AND white) OR object101) 0.6454 in 0.44 s and
(((part21 AND material15) OR scene110) OR object49) 0.2183 in 0.31 s (beam:
0.5793, 0.2114); the peer did not finish either in 240 s and had not yet
evaluated any formula (best so far: none; frontier 151,871 and 255,229 nodes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
DEFAULT_PEER = "/work/peer-venv/bin/python"
INSTALL = ("the peer package is not installed. Install it in a separate venv:\n"
           "  python -m venv --system-site-packages /work/peer-venv\n"
           "  /work/peer-venv/bin/pip install --no-deps compositional-explanations\n"
           "(its numpy/scipy/torch come from the system site-packages), then pass --peer-python "
           "/work/peer-venv/bin/python")
PROGRESS = re.compile(r"Frontier Size: (\d+) Best Node: \(([-0-9.e]+), (.*?)\)\s*$")


# ----------------------------------------------------------------- the peer's side (its own interpreter)

def peer_child(data: str, index: int, length: int, out: str, cache: str) -> None:
    """Run the peer's optimal search on one unit; write its formula, own IoU and time as JSON."""
    import torch
    from compositional_explanations import metrics, optimal

    d = np.load(data)
    n_images, hw, k = int(d["n_images"]), int(d["hw"]), int(d["n_concepts"])
    start = time.perf_counter()
    columns = np.unpackbits(d["bits"], axis=1, bitorder="little")[:, :k]          # [signatures, concepts]
    by_concept = np.ascontiguousarray(columns.T.astype(bool))
    ps = d["position_sig"].astype(np.int64)
    masks = [torch.from_numpy(by_concept[c][ps].reshape(n_images, hw)) for c in range(k)]
    dense = torch.from_numpy(columns.astype(np.float32))
    disjoint = (dense.T @ dense) == 0                                             # no signature has both
    bitmap = np.zeros(n_images * hw, dtype=bool)
    bitmap[d[f"unit{index}"]] = True
    bitmap = torch.from_numpy(bitmap.reshape(n_images, hw))
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    label = optimal.compute_optimal_explanations(masks=masks, bitmaps=bitmap, disjoint_info=disjoint,
                                                 length=length, device=torch.device("cpu"), cache_dir=cache)
    search_s = time.perf_counter() - start
    if isinstance(label, tuple):                   # the docstring promises a tuple; 0.0.3.4 returns the label
        label = label[0]
    iou = None if label is None else metrics.compute_iou_from_masks(formula=label, masks=masks, bitmaps=bitmap)
    Path(out).write_text(json.dumps({"formula": None if label is None else str(label), "iou": iou,
                                     "setup_s": setup_s, "search_s": search_s}))


# ----------------------------------------------------------------- cxql's side

def peer_available(python: str) -> bool:
    try:
        done = subprocess.run([python, "-c", "import compositional_explanations.optimal"], capture_output=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def positions_for(hist_sig: np.ndarray, hist_count: np.ndarray, order: np.ndarray, first: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Positions with exactly hist_count[i] positions of signature hist_sig[i], drawn at random."""
    shuffled = [rng.permutation(order[first[s]:first[s + 1]])[:c] for s, c in zip(hist_sig, hist_count)]
    return np.sort(np.concatenate(shuffled)) if shuffled else np.zeros(0, np.int64)


def peer_text(peer: str, names: list[str]) -> str:
    """The peer's printed formula, e.g. ``((12 OR 40) AND (NOT 7))``, in cxql's syntax with concept names."""
    text = re.sub(r"\(NOT (\d+)\)", r"NOT \1", peer)
    return re.sub(r"\d+", lambda m: names[int(m.group())], text)


def run_peer(python: str, data: str, index: int, length: int, cap: float, work: str) -> dict:
    out, log = f"{work}/unit{index}.json", f"{work}/unit{index}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with open(log, "w") as sink:
        try:
            subprocess.run([python, str(HERE), "--child", data, str(index), str(length), out, f"{work}/cache"],
                           stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=cap, check=True)
        except subprocess.TimeoutExpired:
            result = {"finished": False}
        except subprocess.CalledProcessError as e:
            result = {"finished": False, "error": f"exit {e.returncode}: {Path(log).read_text()[-400:]}"}
        else:
            result = {"finished": True, **json.loads(Path(out).read_text())}
    result["wall_s"] = time.perf_counter() - start
    if not result["finished"]:                      # the peer's last progress line: its best so far
        lines = Path(log).read_text(errors="replace").replace("\r", "\n").splitlines()
        found = [m for m in map(PROGRESS.search, lines) if m]
        if found:
            result["frontier"], result["so_far_iou"] = int(found[-1].group(1)), float(found[-1].group(2))
            result["so_far"] = None if found[-1].group(3) == "None" else found[-1].group(3)
    return result


def broden_units(args, bench, cxql):
    """benchmarks/search.py's store with exact.py's units given real positions (see the module docstring)."""
    wanted = [int(u) for u in args.units.split(",")]
    store = bench.build_store(args.images, args.concepts, args.seed)
    indptr, sig, count = bench.unit_histograms(store, max(wanted) + 1, args.seed)
    ps = np.asarray(store.position_signatures).astype(np.int64)
    order = np.argsort(ps, kind="stable")
    first = np.searchsorted(ps[order], np.arange(store.n_signatures + 1))
    rng = np.random.default_rng(args.seed + 2)
    drawn = [positions_for(sig[indptr[u]:indptr[u + 1]], count[indptr[u]:indptr[u + 1]], order, first, rng)
             for u in wanted]
    layer = attach_positions(store, drawn)
    for i, u in enumerate(wanted):            # the same units as exact.py's: equal signature histograms
        a, b = layer.arrays["hist_indptr"][i:i + 2]
        mine = dict(zip(layer.arrays["hist_sig"][a:b].tolist(), layer.arrays["hist_count"][a:b].tolist()))
        theirs = dict(zip(sig[indptr[u]:indptr[u + 1]].tolist(), count[indptr[u]:indptr[u + 1]].tolist()))
        assert mine == theirs, f"unit {u}: drawn positions do not reproduce the histogram"
    return store, wanted, drawn, store.n_samples, store.n_positions // store.n_samples


def trap_units(cxql):
    """Trap 1 on 100 positions: the unit is exactly (A AND B) OR C, and C alone covers its positions 60..79."""
    spans = {"A": [(0, 40)], "B": [(20, 60)], "C": [(60, 80)], "D": [(85, 95)], "E": [(0, 10), (90, 100)]}
    masks = np.zeros((100, len(spans)), dtype=bool)
    for k, ranges in enumerate(spans.values()):
        for a, b in ranges:
            masks[a:b, k] = True
    store = cxql.ConceptStore.from_masks(masks, list(spans))
    unit = np.r_[20:40, 60:80]
    attach_positions(store, [unit])
    return store, ["trap"], [unit], 1, 100


def attach_positions(store, drawn: list[np.ndarray]):
    masks = np.zeros((store.n_positions, len(drawn)), dtype=bool)
    for i, pos in enumerate(drawn):
        masks[pos, i] = True
    return store.add_unit_masks("peer", masks)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=100, help="probe images of 112x112 positions")
    p.add_argument("--concepts", type=int, default=1000)
    p.add_argument("--units", default="0,1,2,3", help="units of benchmarks/exact.py, comma-separated")
    p.add_argument("--length", type=int, default=3)
    p.add_argument("--beam", type=int, default=10)
    p.add_argument("--cap", type=float, default=300, help="seconds the peer may take per unit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trap", action="store_true", help="instead: the 100-position case of trap 1")
    p.add_argument("--peer-python", default=DEFAULT_PEER if Path(DEFAULT_PEER).exists() else sys.executable)
    args = p.parse_args(argv)
    if not peer_available(args.peer_python):
        print(INSTALL)
        return
    sys.path.insert(0, str(HERE.parent))
    import search as bench  # benchmarks/search.py: the Broden-like store
    import cxql

    start = time.perf_counter()
    store, wanted, drawn, n_images, hw = trap_units(cxql) if args.trap else broden_units(args, bench, cxql)
    names = [c.name for c in store.concepts]
    assert len(set(names)) == len(names), "concept names are not unique"
    columns = np.unpackbits(store.signature_bits, axis=1, bitorder="little")[:, :len(names)]
    counts = np.asarray(store.signature_counts, dtype=np.int64)
    assert (columns.T @ counts).tolist() == [c.count for c in store.concepts], "signature bit k is not concept k"
    single = counts[columns.sum(1) == 1].sum() / store.n_positions
    print(f"store: {n_images:,} images, {store.n_positions:,} positions, {store.n_signatures:,} signatures, "
          f"{len(names):,} concepts, {single:.2%} of positions covered by exactly one concept; units {wanted}, "
          f"{[len(d) for d in drawn]} positions each (built in {time.perf_counter() - start:.1f} s)")

    session = cxql.connect(store)
    session.execute("SEARCH unit 0 LENGTH 1 BEAM 1")        # warm-ups outside the timings
    session.execute("SEARCH unit 0 LENGTH 1 EXACT")
    rows = []
    for i, u in enumerate(wanted):
        t = time.perf_counter()
        exact = session.execute(f"SEARCH unit {i} LENGTH {args.length} EXACT").rows[0]
        exact_s = time.perf_counter() - t
        beam = session.execute(f"SEARCH unit {i} LENGTH {args.length} BEAM {args.beam}").rows[0]
        rows.append({"unit": u, "exact": exact, "exact_s": exact_s, "beam": beam})
        print(f"unit {u}: EXACT {exact['formula']} {exact['iou']:.4f} (optimal {exact['optimal']}) "
              f"in {exact_s:.2f} s; beam {beam['formula']} {beam['iou']:.4f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="exact_peer_") as work:
        data = f"{work}/data.npz"
        np.savez(data, bits=store.signature_bits, position_sig=np.asarray(store.position_signatures),
                 n_images=n_images, hw=hw, n_concepts=len(names), **{f"unit{i}": pos for i, pos in enumerate(drawn)})
        for i, row in enumerate(rows):
            peer = run_peer(args.peer_python, data, i, args.length, args.cap, work)
            text = peer.get("formula") if peer["finished"] else peer.get("so_far")
            if text:
                peer["text"] = peer_text(text, names)
                peer["eval"] = session.execute(f"EVAL {peer['text']} ON unit {i}").rows[0]["iou"]
            row["peer"] = peer
            print(f"unit {row['unit']}: peer {peer}", flush=True)
    print_table(rows, args)


def print_table(rows: list[dict], args) -> None:
    print(f"\nLENGTH {args.length}, peer cap {args.cap:.0f} s per unit (peer s = compute_optimal_explanations, "
          f"its per-unit concept statistics included, building its dense masks not)")
    print(f"{'unit':>4} | {'cxql EXACT':<42} {'IoU':>7} {'s':>6} | {'BEAM ' + str(args.beam):<42} {'IoU':>7} | "
          f"{'peer optimal':<42} {'IoU':>7} {'s':>7} | peer = optimum?")
    for row in rows:
        e, b, peer = row["exact"], row["beam"], row["peer"]
        if "text" in peer:
            gap = e["iou"] - peer["eval"]
            verdict = "yes" if abs(gap) < 1e-12 else f"no, {gap:.4f} below"
            if peer.get("iou") is not None and abs(peer["iou"] - peer["eval"]) > 1e-9:
                verdict += f" (its own IoU {peer['iou']:.4f})"
        else:
            verdict = peer.get("error", "no: it returned no formula")[:60]
        if peer["finished"]:
            shown, secs = peer.get("text", "NONE"), f"{peer['search_s']:7.1f}"
        else:
            shown = f"not finished in {args.cap:.0f} s" + (f"; best so far {peer['text']}" if "text" in peer else "")
            secs, verdict = "  >cap", ("so far: " + verdict) if "text" in peer else "-"
        iou = f"{peer['eval']:.4f}" if "eval" in peer else "-"
        print(f"{row['unit']:>4} | {e['formula']:<42} {e['iou']:7.4f} {row['exact_s']:6.2f} | "
              f"{b['formula']:<42} {b['iou']:7.4f} | {shown:<42} {iou:>7} {secs} | {verdict}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        peer_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    else:
        main()
