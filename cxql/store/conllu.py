"""Token stores from CoNLL-U files: one position per word, one sample per sentence.

Universal Dependencies treebanks are what probing papers use, so a token
store built from one lets a unit be explained by the annotations people
already trust. Concepts (SPEC section 7):

- ``word:FORM`` (lower-cased) and ``lemma:LEMMA``; a form or lemma seen
  fewer than ``min_count`` times (default :data:`MIN_COUNT`) is pooled into
  ``word:<rare>`` / ``lemma:<rare>`` so the table does not fill with hapaxes;
- ``upos:TAG``, ``xpos:TAG``, ``dep:RELATION`` (subtypes kept: ``dep:nsubj:pass``);
- ``feat:Name=Value``, one per morphological feature value (typed as
  ``feat:"Number=Plur"``, since ``=`` is not part of a bare name);
- ``sent:start`` and ``sent:end`` (first and last word of a sentence);
- ``position:B``: the word's 0-based index in its sentence, bucketed
  (:data:`BUCKETS`).

Positions are syntactic words: a multi-word token line (``1-2 du``) is read
but gives no position (its parts ``1 de`` and ``2 le`` do), and an empty node
(``1.1``) gives none either. A malformed line (not 10 tab-separated columns,
an id that is not a number, a range or a decimal, ids out of order, a FEATS
column that is not ``Name=Value|...``) is refused with ``file:line``; with
``skip_bad`` its whole sentence is skipped instead and the line is recorded
in the store's metadata (``skipped``).

With ``vectors`` (``--vectors FILE``) the vectors of the store's ``word:`` and
``lemma:`` concepts are kept in the store, as NLI stores keep theirs
(:func:`cxql.text.attach_vectors`), for NEIGHBORS(word:WORD).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DataError
from ..progress import check_stop
from ..subcommands import Command, Tools
from . import signatures as sig
from .concept_store import ConceptStore

#: A form or lemma seen fewer times than this is pooled into ``<rare>``.
MIN_COUNT = 2
#: The pooled name of rare forms and lemmas.
RARE = "<rare>"
#: Position buckets: (name, first index, last index or None for open-ended).
BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0), ("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("5-8", 5, 8), ("9-16", 9, 16),
    ("17-32", 17, 32), ("33-up", 33, None))
#: Token categories in store order.
CATEGORIES = ("word", "lemma", "upos", "xpos", "feat", "dep", "sent", "position")

_WORD_ID = re.compile(r"[1-9][0-9]*\Z")
_RANGE_ID = re.compile(r"([1-9][0-9]*)-([1-9][0-9]*)\Z")
_EMPTY_ID = re.compile(r"(0|[1-9][0-9]*)\.[1-9][0-9]*\Z")
_FEAT = re.compile(r"[A-Za-z0-9\[\]]+=[A-Za-z0-9,]+\Z")
_SENT_ID = re.compile(r"#\s*sent_id\s*=\s*(.*\S)")


@dataclass(frozen=True)
class Word:
    """One syntactic word of a sentence."""

    form: str
    lemma: str
    upos: str
    xpos: str
    feats: tuple[str, ...]  # "Name=Value", in file order
    deprel: str


@dataclass
class Sentence:
    sent_id: str
    line: int  # where it starts in the file
    words: list[Word] = field(default_factory=list)


@dataclass
class Corpus:
    sentences: list[Sentence]
    skipped: list[dict]  # {"line": n, "reason": text} per skipped sentence


def read_conllu(path: str | Path, *, skip_bad: bool = False,
                on_warning: Callable[[str], None] | None = None) -> Corpus:
    """Sentences of a CoNLL-U file; a bad line raises ``DataError('FILE:LINE: ...')`` unless ``skip_bad``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    sentences: list[Sentence] = []
    skipped: list[dict] = []
    current: Sentence | None = None
    bad: tuple[int, str] | None = None
    pending_id: str | None = None

    def close() -> None:
        nonlocal current, bad, pending_id
        if current is not None:
            if bad is not None:
                skipped.append({"line": bad[0], "reason": bad[1], "sentence_line": current.line})
            elif current.words:
                sentences.append(current)
        current, bad, pending_id = None, None, None

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            close()
            continue
        if line.startswith("#"):
            if current is not None and current.words:  # a comment after words starts nothing new
                continue
            m = _SENT_ID.match(line)
            if m:
                pending_id = m.group(1)
            continue
        if current is None:
            current = Sentence(pending_id or f"s{len(sentences) + len(skipped) + 1}", number)
        if bad is not None:
            continue
        problem = _parse_word(line, current)
        if problem is not None:
            if not skip_bad:
                raise DataError(f"{path}:{number}: {problem}",
                                hint="fix the line, or pass --skip-bad to skip its sentence")
            bad = (number, problem)
            if on_warning:
                on_warning(f"{path}:{number}: {problem}; skipping its sentence")
    close()
    if not sentences:
        raise DataError(f"{path}: no sentences" + (f" ({len(skipped)} skipped as malformed)" if skipped else ""))
    return Corpus(sentences, skipped)


def _parse_word(line: str, sentence: Sentence) -> str | None:
    """Add the line's word to ``sentence``; return what is wrong with it, or None."""
    cols = line.split("\t")
    if len(cols) != 10:
        return f"expected 10 tab-separated columns, found {len(cols)}"
    wid = cols[0]
    if _RANGE_ID.match(wid):
        a, b = (int(x) for x in _RANGE_ID.match(wid).groups())  # type: ignore[union-attr]
        if b <= a or a != len(sentence.words) + 1:
            return f"multi-word token range {wid!r} does not start at the next word ({len(sentence.words) + 1})"
        return None  # its parts come on the following lines
    if _EMPTY_ID.match(wid):
        return None  # empty node (enhanced dependencies): no position
    if not _WORD_ID.match(wid):
        return f"bad word id {wid!r} (expected 1, 2, ... a range 1-2 or an empty node 1.1)"
    if int(wid) != len(sentence.words) + 1:
        return f"word id {wid} out of order (expected {len(sentence.words) + 1})"
    form, lemma, upos, xpos, feats, _head, deprel = cols[1:8]
    if not form:
        return "empty FORM column"
    feat_list: tuple[str, ...] = ()
    if feats != "_":
        feat_list = tuple(feats.split("|"))
        wrong = [f for f in feat_list if not _FEAT.match(f)]
        if wrong:
            return f"bad FEATS item {wrong[0]!r} (expected Name=Value, joined by |)"
    sentence.words.append(Word(form, lemma, upos, xpos, feat_list, deprel))
    return None


# ---------------------------------------------------------------- concepts


def bucket(index: int) -> str:
    """The position bucket of a word's 0-based index in its sentence."""
    for name, lo, hi in BUCKETS:
        if index >= lo and (hi is None or index <= hi):
            return name
    raise AssertionError(index)


def place_concepts(index: int, length: int) -> list[tuple[str, str]]:
    """Where word ``index`` of a ``length``-word sentence stands: sent:start / sent:end and its position bucket."""
    out = [("sent", "start")] if index == 0 else []
    if index == length - 1:
        out.append(("sent", "end"))
    out.append(("position", bucket(index)))
    return out


def word_concepts(sentence: Sentence, i: int, words: set[str], lemmas: set[str]) -> list[tuple[str, str]]:
    """(category, name) of every concept true at word ``i`` of ``sentence``."""
    w = sentence.words[i]
    form = w.form.lower()
    out = [("word", form if form in words else RARE)]
    if w.lemma != "_":
        out.append(("lemma", w.lemma if w.lemma in lemmas else RARE))
    for category, value in (("upos", w.upos), ("xpos", w.xpos), ("dep", w.deprel)):
        if value != "_":
            out.append((category, value))
    out.extend(("feat", f) for f in w.feats)
    return out + place_concepts(i, len(sentence.words))


def vocabulary(sentences: Sequence[Sentence], min_count: int) -> tuple[set[str], set[str]]:
    """Forms (lower-cased) and lemmas seen at least ``min_count`` times."""
    forms = Counter(w.form.lower() for s in sentences for w in s.words)
    lemmas = Counter(w.lemma for s in sentences for w in s.words if w.lemma != "_")
    return ({f for f, n in forms.items() if n >= min_count}, {x for x, n in lemmas.items() if n >= min_count})


def build_token_store(sentences: Sequence[Sentence], concepts_of: Callable[[Sentence, int], list[tuple[str, str]]],
                      *, metadata: dict, should_stop: Callable[[], bool] | None = None,
                      chunk: int = 4096) -> ConceptStore:
    """A token store (kind ``tokens``) from sentences and a word -> concepts function.

    Concepts are ordered by category (as first met), then name; the table is
    built sentence chunk by chunk, so memory grows with the chunk, not the corpus.
    """
    seen: dict[tuple[str, str], None] = {}
    for s in sentences:
        for i in range(len(s.words)):
            seen.update(dict.fromkeys(concepts_of(s, i)))
    order = {c: k for k, c in enumerate(dict.fromkeys(c for c, _ in seen))}
    keys = sorted(seen, key=lambda c: (order[c[0]], c[1]))
    index = {c: k for k, c in enumerate(keys)}
    builder = sig.SignatureBuilder(len(keys))
    ids = []
    for a in range(0, len(sentences), chunk):
        part = sentences[a:a + chunk]
        rows = np.zeros((sum(len(s.words) for s in part), len(keys)), dtype=bool)
        r = 0
        for s in part:
            for i in range(len(s.words)):
                rows[r, [index[c] for c in concepts_of(s, i)]] = True
                r += 1
        ids.append(builder.add(sig.pack_rows(rows)))
        check_stop(should_stop, "the token store build")
    bits, counts = builder.table()
    offsets = np.concatenate([[0], np.cumsum([len(s.words) for s in sentences])]).astype(np.int64)
    return ConceptStore.from_signatures(bits, counts, np.concatenate(ids), [n for _, n in keys],
                                        [c for c, _ in keys], offsets, kind="tokens",
                                        sample_names=[s.sent_id for s in sentences], metadata=metadata)


def build_conllu_store(path: str | Path, *, min_count: int = MIN_COUNT, skip_bad: bool = False,
                       vectors: str | Path | None = None, vectors_format: str = "auto",
                       on_warning: Callable[[str], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> ConceptStore:
    """An in-memory token store from a CoNLL-U file; ``store.save(path)`` writes it."""
    if min_count < 1:
        raise DataError(f"--min-count must be at least 1, got {min_count}")
    corpus = read_conllu(path, skip_bad=skip_bad, on_warning=on_warning)
    check_stop(should_stop, "the token store build")
    words, lemmas = vocabulary(corpus.sentences, min_count)
    metadata = {"builder": "conllu", "source": str(path), "sentences": len(corpus.sentences),
                "skipped": corpus.skipped, "min_count": min_count, "rare": RARE,
                "words_kept": len(words), "lemmas_kept": len(lemmas),
                "buckets": [name for name, _, _ in BUCKETS]}
    store = build_token_store(corpus.sentences, lambda s, i: word_concepts(s, i, words, lemmas),
                              metadata=metadata, should_stop=should_stop)
    return with_vectors(store, vectors, vectors_format, on_warning)


def with_vectors(store: ConceptStore, vectors: str | Path | None, vectors_format: str,
                 on_warning: Callable[[str], None] | None) -> ConceptStore:
    """The store with its word vectors attached when a vectors file was given (NEIGHBORS needs them)."""
    if vectors is not None:
        from ..text import attach_vectors

        attach_vectors(store, vectors, vectors_format, on_warning=on_warning)
    return store


def vectors_note(store: ConceptStore) -> str:
    vec = store.metadata.get("word_vectors")
    return f"; vectors: {vec['words']} words" if vec else ""


def summary(store: ConceptStore) -> str:
    meta = store.metadata
    skipped = f", {len(meta['skipped'])} sentences skipped" if meta.get("skipped") else ""
    return (f"{store.n_positions:,} tokens in {store.n_samples:,} sentences, {len(store.concepts):,} concepts "
            f"({meta.get('words_kept', 0)} words seen at least {meta.get('min_count')} times){skipped}"
            f"{vectors_note(store)}")


# ---------------------------------------------------------------- command line


def out_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="store directory to write (a store there is replaced atomically)")
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a cxql store")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip a malformed line's sentence with a warning (recorded in the store) instead of refusing")
    p.add_argument("--vectors", help="word vectors for NEIGHBORS of word: and lemma: concepts "
                                     "(GloVe text, word2vec text or binary)")
    p.add_argument("--vectors-format", choices=("auto", "glove", "word2vec", "word2vec-binary"), default="auto")


def inputs_of(args: argparse.Namespace) -> list[str]:
    """The files a build reads (a --out among them is refused)."""
    return [args.file] + ([args.vectors] if args.vectors else [])


def save_built(args: argparse.Namespace, inputs: list[str], build: Callable[[], ConceptStore],
               describe: Callable[[ConceptStore], str]) -> int:
    """Check --out before building, build, save atomically, say what was built."""
    import sys

    from .commit import target_kind
    from .validate_input import check_out_path, os_errors

    check_out_path(args.out)
    target_kind(Path(args.out), inputs, args.force)
    store = build()
    with os_errors(args.out):
        store = store.save(args.out, force=args.force, inputs=inputs)
    print(f"built {args.out}: {describe(store)}", file=sys.stderr)
    return 0


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a CoNLL-U file (Universal Dependencies format)")
    out_arguments(p)
    p.add_argument("--min-count", type=int, default=MIN_COUNT,
                   help=f"forms and lemmas seen fewer times are pooled into {RARE} (default {MIN_COUNT})")


def _command(args: argparse.Namespace, tools: Tools) -> int:
    return save_built(args, inputs_of(args), lambda: build_conllu_store(
        args.file, min_count=args.min_count, skip_bad=args.skip_bad, vectors=args.vectors,
        vectors_format=args.vectors_format, on_warning=tools.warn, should_stop=tools.should_stop), summary)


#: ``cxql store build conllu`` (listed in :data:`cxql.subcommands.BUILTIN`).
COMMAND = Command(("store", "build", "conllu"), "a token store from a CoNLL-U file", _arguments, _command,
                  description="One position per word, one sample per sentence: word:, lemma:, upos:, xpos:, "
                              "feat:Name=Value, dep:, sent:start/end and position buckets (see cxql.store.conllu).")
