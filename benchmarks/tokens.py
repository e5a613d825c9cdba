"""Benchmark: a token store with many sparse units (sparse-autoencoder features).

Why: issue 16 asks for 10M tokens x 16,384 sparse units (about 1 % non-zero)
on one machine: build time, store size, memory peak, and SEARCH LENGTH 3
time for all units. That is 1.6 billion non-zeros, 13 GB as CSR (float32
values, int32 indices): more than fits in memory next to anything else on
a 24 GB machine, so every step streams.

Phases, each in its own process (so each has its own memory peak):

1. ``store``: a CoNLL-U-like token stream, ``--tokens`` tokens in sentences
   of 5-30 words, each with a word (Zipf over 5,000 forms, pooled under the
   minimum count), a UPOS tag (17), a Number feature, sent:start/end and a
   position bucket, built through ``build_token_store`` (the CoNLL-U
   builder's core) and saved;
2. ``acts``: ``--units`` sparse units at ``--density``: each unit fires on a
   random concept's tokens (about 70 % of its quota, thinned at random) plus
   uniform noise, generated row block by row block straight into an
   uncompressed ``.npz`` (``CsrNpzWriter``), so generation is bounded too;
3. ``add``: ``cxql units add STORE sae acts.npz --threshold value:0``
   through the CLI's own function (streamed: :mod:`cxql.store.sparse_units`);
4. ``search``: ``SEARCH unit * LENGTH 3 BEAM 5`` (``SET min_active = 0``,
   torch on ``--threads`` threads), the layer's first-use checks timed apart;
5. ``check`` (``--check``): ``cxql store check`` (CRC-32 of every file, counts).

Memory: ``ru_maxrss`` (from ``wait4``) counts every resident page, also the
pages of memory-mapped files (the input's and the layer's, kept in the page
cache and dropped by the kernel when memory is short); the anonymous peak
(``RssAnon`` of ``/proc/PID/status``, sampled every 0.2 s) is the working
memory the process itself allocates, what really bounds it.

Run by hand: ``python benchmarks/tokens.py [--tokens 10000000] [--units 16384] [--density 0.01] [--tmp DIR] [--check]``.

Measured on the 2-core, 24 GB development machine (shared with other work,
pinned to one core: ``OMP_NUM_THREADS=1 taskset -c 1``), 1 % non-zero, BEAM 5,
one torch thread. Memory: anonymous peak / ru_maxrss.

| phase | 1M tokens x 16,384 units | 10M tokens x 16,384 units |
|---|---|---|
| store build + save | 6.9 s; 10.9 MB; 0.45 / 0.47 GB | 70.6 s (+14 s corpus); 70.7 MB; 0.79 / 0.81 GB |
| signatures | 74,849 | 148,720 |
| activations (.npz, generated) | 163 M non-zeros, 1.31 GB, 17 s; 0.65 / 0.69 GB | 1.63 G non-zeros, 13.1 GB, 150 s; 0.79 / 0.88 GB |
| ``units add`` (CLI) | 22.4 s; layer 1.81 GB; 0.27 / 2.26 GB | 244 s; layer 11.8 GB; 0.26 / 19.9 GB |
| histogram entries | 72.4 M | 330 M |
| first-use checks | 1.2 s | 5.4 s |
| ``SEARCH unit * LENGTH 3`` | 126 s, 130 units/s (7.7 ms/unit); 1.87 / 3.14 GB | 626 s, 26.2 units/s (38.2 ms/unit); 2.41 / 7.80 GB |
| ``store check`` | 3.0 s; 0.34 / 1.91 GB | 15.9 s; 0.34 / 11.9 GB |

``units add`` works in a few hundred MB of its own whatever the number of
non-zeros (blocks of 4M non-zeros, O(units + tokens) arrays); its
ru_maxrss is the mapped 13 GB input and 6.5 GB of positions being written,
page cache. SEARCH's anonymous memory is its chunks of units (under 16 x
chunk_mb of state each) plus the backend's concept table; its ru_maxrss adds
the mapped histograms (5.3 GB at 10M). Before streaming (in-memory CSC copy,
histograms and arrays built whole) the 10M run did not fit in 24 GB, and
SEARCH's beam rows held every unit's EXACT-space histogram at once (7.7 GB
anonymous at 1M tokens); both are gone. SEARCH time per unit follows the
signatures (75k -> 149k) and the units' histogram entries (4.4k -> 20k per unit).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X"]
ROWS_PER_BLOCK = 50_000  # rows of the activation matrix generated at a time


# ------------------------------------------------------------------ phase 1: the token store


def sentences(n_tokens: int, rng: np.random.Generator) -> list:
    from cxql.store.conllu import Sentence, Word

    forms = np.minimum(rng.zipf(1.3, n_tokens), 5000)
    tags = rng.integers(0, len(UPOS), n_tokens)
    plural = rng.random(n_tokens) < 0.3
    words: dict[tuple[int, int, bool], Word] = {}  # 170k distinct words: shared, not one object per token

    def word(i: int) -> Word:
        key = (int(forms[i]), int(tags[i]), bool(plural[i]))
        if key not in words:
            words[key] = Word(f"w{key[0]}", "_", UPOS[key[1]], "_",
                              ("Number=Plur",) if key[2] else ("Number=Sing",), "_")
        return words[key]

    out, start = [], 0
    while start < n_tokens:
        length = min(int(rng.integers(5, 31)), n_tokens - start)
        out.append(Sentence(f"s{len(out)}", start, [word(i) for i in range(start, start + length)]))
        start += length
    return out


def concepts_of(s, i: int) -> list[tuple[str, str]]:
    from cxql.store.conllu import bucket

    w = s.words[i]
    form = w.form if int(w.form[1:]) < 500 else "<rare>"
    out = [("word", form), ("upos", w.upos), ("feat", w.feats[0]), ("position", bucket(i))]
    if i == 0:
        out.append(("sent", "start"))
    if i == len(s.words) - 1:
        out.append(("sent", "end"))
    return out


def phase_store(args: argparse.Namespace, folder: Path) -> dict:
    from cxql.store.conllu import build_token_store

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    corpus = sentences(args.tokens, rng)
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    store = build_token_store(corpus, concepts_of, metadata={"builder": "benchmark"})
    store.save(folder / "store")
    return {"generate_s": gen_s, "build_save_s": time.perf_counter() - t, "tokens": store.n_positions,
            "sentences": store.n_samples, "concepts": len(store.concepts), "signatures": store.n_signatures,
            "store_bytes": du(folder / "store")}


# ------------------------------------------------------------------ phase 2: sparse activations, streamed


def phase_acts(args: argparse.Namespace, folder: Path) -> dict:
    """Units fire on a random concept's tokens (about 70 % of their quota) plus uniform noise, ~``density``.

    Written row block by row block into an uncompressed .npz: memory is one block.
    """
    import cxql
    from cxql.store.npz_members import CsrNpzWriter

    store = cxql.ConceptStore.open(folder / "store")
    n, n_units, k = store.n_positions, args.units, len(store.concepts)
    rng = np.random.default_rng(1)
    sizes = np.array([c.count for c in store.concepts], dtype=np.float64)
    concept = rng.integers(0, k, n_units)
    per_unit = max(1.0, args.density * n)
    hit_p = np.minimum(1.0, per_unit / np.maximum(sizes[concept], 1) * 0.7)
    noise_rate = np.maximum(0.0, per_unit - hit_p * sizes[concept]) / n
    order = np.argsort(concept, kind="stable")
    bounds = np.searchsorted(concept[order], np.arange(k + 1))
    bits, ids = np.asarray(store.signature_bits), store.position_signatures
    t = time.perf_counter()
    writer = CsrNpzWriter(folder / "acts.npz", n_units)
    for r0 in range(0, n, ROWS_PER_BLOCK):
        r1 = min(n, r0 + ROWS_PER_BLOCK)
        has = np.unpackbits(bits[np.asarray(ids[r0:r1], dtype=np.int64)], axis=1, count=k,
                            bitorder="little").T.copy()                                     # [K, rows]
        rows, cols = [], []
        for c in np.flatnonzero(np.diff(bounds)):
            units = order[bounds[c]:bounds[c + 1]]
            at = np.flatnonzero(has[c])
            i, j = np.nonzero(rng.random((len(at), len(units))) < hit_p[units])
            rows.append(at[i])
            cols.append(units[j])
        noise = rng.poisson(noise_rate * (r1 - r0))
        cols.append(np.repeat(np.arange(n_units), noise))
        rows.append(rng.integers(0, r1 - r0, int(noise.sum())))
        keys = np.sort(np.concatenate(rows).astype(np.uint64) * n_units + np.concatenate(cols).astype(np.uint64))
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # np.unique: 100x slower here (numpy 2.4)
        row, col = np.divmod(keys, np.uint64(n_units))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(row.astype(np.int64), minlength=r1 - r0))])
        writer.add_rows(indptr, col.astype(np.int32), rng.random(len(keys), dtype=np.float32) + np.float32(0.01))
    writer.close()
    nnz = writer._nnz  # noqa: SLF001 - the writer's own count
    return {"generate_s": time.perf_counter() - t, "nnz": nnz, "density": nnz / (n * n_units),
            "npz_bytes": (folder / "acts.npz").stat().st_size}


# ------------------------------------------------------------------ phases 3-5: units add, SEARCH, store check


def phase_add(args: argparse.Namespace, folder: Path) -> dict:
    from cxql.cli import main

    t = time.perf_counter()
    code = main(["units", "add", str(folder / "store"), "sae", str(folder / "acts.npz"), "--threshold", "value:0"])
    return {"add_s": time.perf_counter() - t, "exit": code, "store_bytes": du(folder / "store")}


def phase_search(args: argparse.Namespace, folder: Path) -> dict:
    import torch

    import cxql

    torch.set_num_threads(args.threads)
    session = cxql.connect(folder / "store")
    session.execute("SET min_active = 0")
    t = time.perf_counter()
    layer = session.layer()
    layer.histograms  # noqa: B018 - the first-use checks, timed apart
    check_s = time.perf_counter() - t
    t = time.perf_counter()
    result = session.execute(f"SEARCH unit * LENGTH 3 BEAM {args.beam}")
    search_s = time.perf_counter() - t
    rows = result.rows
    return {"first_use_check_s": check_s, "search_s": search_s, "units": len(rows),
            "hist_entries": int(len(layer.arrays["hist_sig"])),
            "examples": [f"unit {r['unit']}: {r['formula']} (IoU {r['iou']:.3f})" for r in rows[:3]]}


def phase_check(args: argparse.Namespace, folder: Path) -> dict:
    from cxql.store.check import check_store

    t = time.perf_counter()
    faults, notes = check_store(folder / "store")
    return {"check_s": time.perf_counter() - t, "faults": faults, "notes": notes}


PHASES = {"store": phase_store, "acts": phase_acts, "add": phase_add, "search": phase_search, "check": phase_check}


# ------------------------------------------------------------------ measuring a phase in its own process


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def run_phase(name: str, args: argparse.Namespace, folder: Path) -> dict:
    """Run one phase in a child process; its ru_maxrss (wait4) and sampled anonymous / file-backed RSS peaks."""
    cmd = [sys.executable, __file__, "--phase", name, "--dir", str(folder), "--tokens", str(args.tokens),
           "--units", str(args.units), "--density", str(args.density), "--beam", str(args.beam),
           "--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peaks = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for key, value in _status(proc.pid).items():
                if key in peaks:
                    peaks[key] = max(peaks[key], value)
            done.wait(0.2)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    thread.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed (exit {proc.returncode}):\n{out}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(wall_s=result.get("wall_s", 0), maxrss=usage.ru_maxrss * 1024, anon_peak=peaks["RssAnon"],
                  file_peak=peaks["RssFile"])
    return result


def gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=10_000_000)
    ap.add_argument("--units", type=int, default=16_384)
    ap.add_argument("--density", type=float, default=0.01)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for SEARCH")
    ap.add_argument("--tmp", help="folder for the store and the activations (default: a temp dir), deleted after")
    ap.add_argument("--check", action="store_true", help="also time `cxql store check` on the result")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:  # a child: run one phase, print its figures as the last line
        t = time.perf_counter()
        result = PHASES[args.phase](args, Path(args.dir))
        result["wall_s"] = time.perf_counter() - t
        result["self_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps(result), flush=True)
        return
    base = Path(args.tmp) if args.tmp else None
    if base:
        base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="cxql-tokens-", dir=base))
    try:
        for name in ["store", "acts", "add", "search"] + (["check"] if args.check else []):
            r = run_phase(name, args, folder)
            mem = f"ru_maxrss {gb(r['maxrss'])}, anonymous peak {gb(r['anon_peak'])}, file-backed peak {gb(r['file_peak'])}"
            if name == "store":
                print(f"store: {r['tokens']:,} tokens, {r['sentences']:,} sentences, {r['concepts']:,} concepts, "
                      f"{r['signatures']:,} signatures; corpus {r['generate_s']:.1f} s, build+save "
                      f"{r['build_save_s']:.1f} s; {r['store_bytes'] / 1e6:.1f} MB; {mem}")
            elif name == "acts":
                print(f"activations: {r['nnz']:,} non-zeros ({r['density']:.3%}), generated in {r['generate_s']:.1f} s, "
                      f"{gb(r['npz_bytes'])} uncompressed .npz; {mem}")
            elif name == "add":
                print(f"units add (CLI, streamed): {r['add_s']:.1f} s; store now {gb(r['store_bytes'])}; {mem}")
            elif name == "search":
                print(f"SEARCH unit * LENGTH 3 BEAM {args.beam}: first-use checks {r['first_use_check_s']:.1f} s "
                      f"({r['hist_entries']:,} histogram entries), search {r['search_s']:.1f} s for "
                      f"{r['units']:,} units ({r['units'] / max(r['search_s'], 1e-9):.1f} units/s, "
                      f"{r['search_s'] / max(r['units'], 1) * 1000:.1f} ms/unit); {mem}")
                for line in r["examples"]:
                    print(f"  {line}")
            else:
                print(f"store check: {r['check_s']:.1f} s, faults {r['faults'] or 'none'}; {mem}")
            sys.stdout.flush()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
