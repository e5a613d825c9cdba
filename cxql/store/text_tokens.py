"""Token stores from raw text (JSON lines): one position per token, one sample per line.

Without a spaCy pipeline the concepts are those that need none: ``word:``
(lower-cased, rare forms pooled into ``word:<rare>`` as in
:mod:`cxql.store.conllu`), ``shape:`` (spaCy-style: ``Xxxx``, ``dd``, runs
cut at four), ``kind:punct``, ``kind:digit``, ``kind:title``, ``kind:lower``,
``kind:upper``, ``sent:start``/``sent:end`` and ``position:`` buckets.

With a pipeline (``--pipeline NAME``, or any callable ``nlp(text) -> doc``
whose tokens carry spaCy's attributes) it adds ``lemma:``, ``upos:``,
``xpos:`` (spaCy's fine tag), ``dep:``, ``feat:Name=Value`` (morphology),
``ent:B``/``ent:I`` and ``ent:TYPE``, and ``kind:stop``; its tokenisation
replaces the regular expression's.

``--vectors FILE`` keeps word vectors for NEIGHBORS, as in :mod:`cxql.store.conllu`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import DataError
from ..subcommands import Command, Tools
from .concept_store import ConceptStore
from .conllu import (MIN_COUNT, RARE, Sentence, Word, build_token_store, place_concepts, inputs_of, out_arguments,
                     save_built, vectors_note, with_vectors)

_TOKEN = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]", re.UNICODE)


def shape(text: str) -> str:
    """spaCy's word shape: letters to X/x, digits to d, other characters kept; runs cut at four."""
    out: list[str] = []
    for ch in text:
        c = "X" if ch.isalpha() and ch.isupper() else "x" if ch.isalpha() else "d" if ch.isdigit() else ch
        if len(out) >= 4 and all(o == c for o in out[-4:]):
            continue
        out.append(c)
    return "".join(out)


def flags(text: str) -> list[str]:
    """The ``kind:`` concepts of a token's text."""
    out = []
    if all(not ch.isalnum() for ch in text):
        out.append("punct")
    if text.isdigit():
        out.append("digit")
    if text.istitle():
        out.append("title")
    if text.islower():
        out.append("lower")
    if text.isupper():
        out.append("upper")
    return out


def read_texts(path: str | Path, *, field: str = "text", skip_bad: bool = False,
               on_warning: Callable[[str], None] | None = None) -> tuple[list[tuple[str, str]], list[dict]]:
    """(sample name, text) per JSON line with a string ``field``; a bad line names file:line."""
    path = Path(path)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it as UTF-8 text ({exc})") from None
    texts, skipped = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            text = obj[field] if isinstance(obj, dict) else None
            problem = None if isinstance(text, str) and text.strip() else f"no non-empty string {field!r}"
        except json.JSONDecodeError as exc:
            problem, obj = f"not JSON ({exc.msg})", None
        if problem:
            if not skip_bad:
                raise DataError(f"{path}:{number}: {problem}", hint="fix the line, or pass --skip-bad")
            skipped.append({"line": number, "reason": problem})
            if on_warning:
                on_warning(f"{path}:{number}: {problem}; skipped")
            continue
        name = obj.get("id") if isinstance(obj.get("id"), str) else f"line{number}"
        texts.append((name, text))
    if not texts:
        raise DataError(f"{path}: no texts")
    return texts, skipped


def _annotated(doc: Any) -> list[Word]:
    return [Word(t.text, t.lemma_ or "_", t.pos_ or "_", t.tag_ or "_",
                 tuple(str(t.morph).split("|")) if str(t.morph) else (), t.dep_ or "_") for t in doc]


def tokenise(texts: Sequence[tuple[str, str]], nlp: Callable[[str], Any] | None) -> tuple[list[Sentence], dict]:
    """Sentences of Words (annotations '_' without a pipeline) and per-token extras (entities, stop words)."""
    sentences, extra = [], {}
    for k, (name, text) in enumerate(texts):
        if nlp is None:
            words = [Word(t, "_", "_", "_", (), "_") for t in _TOKEN.findall(text)]
        else:
            doc = nlp(text)
            words = _annotated(doc)
            for i, t in enumerate(doc):
                extra[(k, i)] = ([("ent", t.ent_iob_)] if t.ent_iob_ in ("B", "I") else []) + \
                    ([("ent", t.ent_type_)] if t.ent_type_ else []) + ([("kind", "stop")] if t.is_stop else [])
        if words:
            sentences.append(Sentence(name, k, words))
    return sentences, extra


def build_text_store(path: str | Path, *, nlp: Callable[[str], Any] | None = None, min_count: int = MIN_COUNT,
                     field: str = "text", skip_bad: bool = False,
                     vectors: str | Path | None = None, vectors_format: str = "auto",
                     on_warning: Callable[[str], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> ConceptStore:
    """An in-memory token store from JSON lines of text; ``nlp`` is a spaCy pipeline or None."""
    if min_count < 1:
        raise DataError(f"--min-count must be at least 1, got {min_count}")
    texts, skipped = read_texts(path, field=field, skip_bad=skip_bad, on_warning=on_warning)
    sentences, extra = tokenise(texts, nlp)
    counts: dict[str, int] = {}
    for s in sentences:
        for w in s.words:
            counts[w.form.lower()] = counts.get(w.form.lower(), 0) + 1
    kept = {f for f, n in counts.items() if n >= min_count}

    def concepts_of(s: Sentence, i: int) -> list[tuple[str, str]]:
        w = s.words[i]
        form = w.form.lower()
        out = [("word", form if form in kept else RARE), ("shape", shape(w.form))]
        out += [("kind", f) for f in flags(w.form)]
        if nlp is not None:
            out += [(c, v) for c, v in (("lemma", w.lemma), ("upos", w.upos), ("xpos", w.xpos), ("dep", w.deprel))
                    if v != "_"]
            out += [("feat", f) for f in w.feats]
            out += extra.get((s.line, i), [])  # s.line is the text's index here
        return out + place_concepts(i, len(s.words))

    metadata = {"builder": "text", "source": str(path), "texts": len(sentences), "skipped": skipped,
                "min_count": min_count, "rare": RARE, "words_kept": len(kept),
                "pipeline": None if nlp is None else _describe(nlp),
                "tokenizer": "regex \\w+(?:[-']\\w+)*|[^\\w\\s]" if nlp is None else "spaCy"}
    store = build_token_store(sentences, concepts_of, metadata=metadata, should_stop=should_stop)
    return with_vectors(store, vectors, vectors_format, on_warning)


def _describe(nlp: Any) -> str:
    meta = getattr(nlp, "meta", None) or {}
    return f"{meta.get('lang', '?')}_{meta.get('name', '?')} {meta.get('version', '')}".strip()


def load_nlp(name: str | None) -> Callable[[str], Any] | None:
    """An installed spaCy pipeline by name or path; None for 'none'; a clear error if it cannot load."""
    if name is None or name.lower() == "none":
        return None
    try:
        import spacy
    except ImportError:
        raise DataError(f"spaCy pipeline {name!r} asked for, but spaCy is not installed",
                        hint="pip install 'cxql[text]', or build without --pipeline") from None
    try:
        return spacy.load(name)
    except OSError:
        raise DataError(f"spaCy pipeline {name!r} is not installed",
                        hint=f"install it (python -m spacy download {name}) or build without --pipeline") from None


def summary(store: ConceptStore) -> str:
    meta = store.metadata
    return (f"{store.n_positions:,} tokens in {store.n_samples:,} texts, {len(store.concepts):,} concepts; "
            f"pipeline: {meta.get('pipeline') or 'none (word, shape, kind concepts only)'}{vectors_note(store)}")


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="JSON lines, each an object with a 'text' string (and optionally an 'id')")
    out_arguments(p)
    p.add_argument("--field", default="text", help="the JSON key holding the text (default text)")
    p.add_argument("--pipeline", default="none", help="an installed spaCy pipeline for tags (default none)")
    p.add_argument("--min-count", type=int, default=MIN_COUNT,
                   help=f"forms seen fewer times are pooled into {RARE} (default {MIN_COUNT})")


def _command(args: argparse.Namespace, tools: Tools) -> int:
    return save_built(args, inputs_of(args), lambda: build_text_store(
        args.file, nlp=load_nlp(args.pipeline), min_count=args.min_count, field=args.field,
        skip_bad=args.skip_bad, vectors=args.vectors, vectors_format=args.vectors_format,
        on_warning=tools.warn, should_stop=tools.should_stop), summary)


#: ``cxql store build text`` (listed in :data:`cxql.subcommands.BUILTIN`).
COMMAND = Command(("store", "build", "text"), "a token store from JSON lines of raw text", _arguments, _command,
                  description="One position per token, one sample per line: word:, shape:, kind: (punct, digit, "
                              "title, lower, upper), sent:, position:; more with a spaCy pipeline.")
