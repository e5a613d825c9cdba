"""Record a language model's units over a token store's words (issue 16 item 3).

A token store's positions are words; a model sees sub-word tokens. Each
sentence is joined with single spaces, tokenised with character offsets, run
through the model with a forward hook on the module at ``layer`` (any module
path: ``transformer.h.3.mlp.act``, ``model.layers.0``, ...), and each word's
activations are pooled over the tokens whose character span overlaps it
(``max``, ``mean`` or ``first``). Rows are written to a memory-mapped
``.npy`` file when ``out`` is given, so a large store never holds them all.

The tokenizer follows Hugging Face's fast-tokenizer call:
``tokenizer(text, return_offsets_mapping=True)`` returns ``input_ids`` and
``offset_mapping`` (special tokens have empty spans and are ignored). The
model is called as ``model(input_ids=tensor[1, T])``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import DataError
from .store.concept_store import ConceptStore

POOLING = ("max", "mean", "first")


def store_words(store: ConceptStore) -> list[list[str]]:
    """The words of each sample of a token store, read again from the file it was built from."""
    meta = store.metadata
    source = meta.get("source")
    if store.kind != "tokens" or not source:
        raise DataError("record_tokens needs a token store built by 'cxql store build conllu' or 'text'")
    if not Path(source).is_file():
        raise DataError(f"the store was built from {source}, which is no longer there; pass words= explicitly")
    skip = bool(meta.get("skipped"))
    if meta.get("builder") == "conllu":
        from .store.conllu import read_conllu

        words = [[w.form for w in s.words] for s in read_conllu(source, skip_bad=skip).sentences]
    elif meta.get("builder") == "text" and not meta.get("pipeline"):
        from .store.text_tokens import read_texts, tokenise

        texts, _ = read_texts(source, skip_bad=skip)
        words = [[w.form for w in s.words] for s in tokenise(texts, None)[0]]
    else:
        raise DataError("this store's words cannot be re-read (a spaCy pipeline tokenised them); pass words=")
    return words


def word_spans(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The sentence text (words joined by spaces) and each word's character span in it."""
    spans, start = [], 0
    for w in words:
        spans.append((start, start + len(w)))
        start += len(w) + 1
    return " ".join(words), spans


def align(spans: Sequence[tuple[int, int]], offsets: Sequence[Sequence[int]], sentence: int) -> list[list[int]]:
    """For each word, the token indices whose character span overlaps it; a word with none is refused."""
    out = []
    for k, (a, b) in enumerate(spans):
        hits = [t for t, (x, y) in enumerate(offsets) if y > x and x < b and y > a]
        if not hits:
            raise DataError(f"sentence {sentence}: word {k} (characters {a}..{b}) has no token: the tokenizer's "
                            "offsets cannot be aligned to the store's words",
                            hint="use a fast tokenizer that returns offset_mapping")
        out.append(hits)
    return out


def pool(acts: np.ndarray, groups: Sequence[Sequence[int]], how: str) -> np.ndarray:
    """[T, D] token activations -> [words, D]."""
    if how == "max":
        return np.stack([acts[g].max(axis=0) for g in groups])
    if how == "mean":
        return np.stack([acts[g].mean(axis=0) for g in groups])
    if how == "first":
        return np.stack([acts[g[0]] for g in groups])
    raise DataError(f"pooling must be one of {', '.join(POOLING)}, got {how!r}")


def record_tokens(model: Any, tokenizer: Callable[..., Any], layer: str, store: ConceptStore, *,
                  name: str | None = None, pooling: str = "max", words: Sequence[Sequence[str]] | None = None,
                  device: str = "cpu", out: str | Path | None = None, threshold: Any = None,
                  attach: bool = True, progress: Callable[[int], None] | None = None,
                  replace: bool = False) -> np.ndarray:
    """Activations [tokens, units] of ``model``'s module ``layer`` over the store's words; attached as ``name``
    (an existing layer of that name only with ``replace``, checked before the model runs)."""
    import torch

    from .store.validate_input import check_new_layer

    if attach:
        check_new_layer(store.layers, name or layer, replace)
    if pooling not in POOLING:
        raise DataError(f"pooling must be one of {', '.join(POOLING)}, got {pooling!r}")
    words = [list(w) for w in (words if words is not None else store_words(store))]
    lengths = [len(w) for w in words]
    if sum(lengths) != store.n_positions or len(words) != store.n_samples:
        raise DataError(f"{sum(lengths):,} words in {len(words):,} sentences, but the store has "
                        f"{store.n_positions:,} tokens in {store.n_samples:,} sentences")
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise DataError(f"the model has no module {layer!r}",
                        hint="module paths look like " + ", ".join(n for n, _ in list(model.named_modules())[1:6]))
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append((output[0] if isinstance(output, (tuple, list)) else output).detach())

    handle = module.register_forward_hook(hook)
    rows: np.ndarray | None = None
    position = 0
    model.eval()
    try:
        for i, sentence in enumerate(words):
            text, spans = word_spans(sentence)
            encoded = tokenizer(text, return_offsets_mapping=True)
            groups = align(spans, encoded["offset_mapping"], i)
            captured.clear()
            with torch.no_grad():
                model(input_ids=torch.as_tensor([list(encoded["input_ids"])], device=device))
            if not captured:
                raise DataError(f"module {layer!r} did not run for sentence {i}")
            acts = captured[-1].float().cpu().numpy()
            acts = acts.reshape(-1, acts.shape[-1]) if acts.ndim == 3 else acts
            pooled = pool(acts, groups, pooling)
            if rows is None:
                shape = (store.n_positions, pooled.shape[1])
                rows = (np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape) if out
                        else np.zeros(shape, dtype=np.float32))
            rows[position:position + len(sentence)] = pooled
            position += len(sentence)
            if progress:
                progress(1)
    finally:
        handle.remove()
    assert rows is not None
    if isinstance(rows, np.memmap):
        rows.flush()
    if attach:
        store.add_units(name or layer, rows, threshold, replace=replace)
    return rows


# ---------------------------------------------------------------- command line (hf: models)


def load_hf(spec: str, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) from ``hf:PATH`` on disk, never downloading; a clear error without transformers."""
    path = spec[3:] if spec.startswith("hf:") else spec
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise DataError("--model hf:PATH needs the transformers package, which is not installed",
                        hint="pip install transformers, or call cxql.record_tokens from Python") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
        model = AutoModel.from_pretrained(path, local_files_only=True).to(device)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load a Hugging Face model from {path}: {exc}") from None
    return model, tokenizer


def run_cli(args: argparse.Namespace, store: ConceptStore, tools: Any) -> int:
    """``cxql units record STORE LAYER --model hf:PATH`` on a token store."""
    import sys

    from .errors import UsageError

    if store.kind != "tokens":
        raise UsageError(f"--model {args.model}: hf: models are recorded over token stores; this store is {store.kind}")
    if not args.model.startswith("hf:"):
        raise UsageError(f"--model {args.model}: a token store needs a language model, given as hf:PATH")
    device = args.device or "cpu"
    model, tokenizer = load_hf(args.model, device)
    bar = tools.progress()
    bar.start(store.n_samples, f"recording {args.layer}")
    try:
        record_tokens(model, tokenizer, args.layer, store, name=args.name or args.layer, pooling=args.pooling,
                      device=device, out=args.save, threshold=args.threshold, progress=bar.advance,
                      replace=args.replace)
    finally:
        bar.finish()
    print(f"added {store.layers[args.name or args.layer].describe()}", file=sys.stderr)
    return 0


__all__ = ["POOLING", "align", "pool", "record_tokens", "store_words", "word_spans"]
