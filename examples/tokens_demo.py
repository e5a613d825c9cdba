"""Token-level explanations, offline on CPU: a CoNLL-U sample, a tiny transformer, SEARCH with PREV.

1. builds a token store from examples/tokens/sample.conllu (ten sentences
   written for cxql; same licence as cxql): word:, lemma:, upos:, xpos:,
   feat:, dep:, sent:, position: concepts;
2. creates a tiny transformer at run time (seeded; no download): embedding,
   one encoder layer, an MLP; a toy sub-word tokenizer cuts words into
   pieces of at most three characters and reports character offsets;
3. records the MLP's hidden units over the store's words (max over each
   word's pieces) with ``cxql.record_tokens``, thresholded at the 0.8 quantile;
4. adds a planted layer whose unit 0 fires on a noun right after a
   determiner, to show PREV at work;
5. prints what SEARCH finds.

Run: ``python examples/tokens_demo.py [--out DIR]`` (the store is kept with --out).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import cxql
from cxql.sequence import shift
from cxql.store.conllu import build_conllu_store

SAMPLE = Path(__file__).resolve().parent / "tokens" / "sample.conllu"

QUERIES = [
    "SET layer = 'planted'",
    "SEARCH unit 0 LENGTH 2",
    "SEARCH unit 0 LENGTH 2 USING upos, PREV(upos)",
    "EVAL upos:NOUN AND PREV(upos:DET) ON unit 0",
    "SET layer = 'tiny'",
    "SEARCH unit 0..3 LENGTH 3 USING upos, lemma, PREV(upos)",
]


class TinyTransformer(nn.Module):
    """A one-layer transformer small enough to create on the fly."""

    def __init__(self, vocab: int = 64, dim: int = 16, hidden: int = 24) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, dim)
        self.block = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=32, batch_first=True, dropout=0.0)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.block(self.embed(input_ids)))


def tokenizer(text: str, return_offsets_mapping: bool = True) -> dict:
    """Pieces of at most three characters (ids from their letters), after a [CLS] with an empty span."""
    ids, offsets, start = [1], [(0, 0)], 0
    for word in text.split(" "):
        for a in range(0, len(word), 3):
            piece = word[a:a + 3].lower()
            ids.append(2 + sum(map(ord, piece)) % 60)
            offsets.append((start + a, start + a + len(piece)))
        start += len(word) + 1
    return {"input_ids": ids, "offset_mapping": offsets}


def build(out: Path) -> cxql.ConceptStore:
    store = build_conllu_store(SAMPLE)
    store.save(out)
    store = cxql.ConceptStore.open(out)
    cxql.record_tokens(TinyTransformer(), tokenizer, "mlp.1", store, name="tiny", threshold="quantile:0.8")
    session = cxql.connect(store)
    noun = session.execute("MATCH upos:NOUN TOP 1")  # warm-up; masks below come from the store itself
    del noun
    from cxql.sequence import PositionMasks

    masks = PositionMasks(store, session.resolver.resolve)
    noun, det = masks.concept(session.resolver.resolve("upos:NOUN")), masks.concept(session.resolver.resolve("upos:DET"))
    store.add_unit_masks("planted", (noun & shift(det, store.sample_offsets, 1))[:, None])
    return cxql.ConceptStore.open(out)


def main(argv: list[str] | None = None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="keep the store here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "tokens"
        session = cxql.connect(build(out))
        results = []
        for query in QUERIES:
            result = session.execute(query)
            results.append(result)
            if query.startswith(("SEARCH", "EVAL")):
                print(query)
                for row in result.rows:
                    print(f"  unit {row['unit']}: {row['formula']}  IoU {row['iou']:.2f}")
        return results


if __name__ == "__main__":
    main()
