"""SNLI-style text probe stores: one position per premise/hypothesis pair.

The paper's second case study explains NLI units with sentence-level concepts
(SPEC section 6, after compexp's ``nli/code/analyze.py``)::

    pre:<word>  hyp:<word>          a frequent word is in the premise / hypothesis
    pre:pos:<TAG>  hyp:pos:<TAG>    a spaCy fine-grained (PTB) tag is on that side
    overlap-25  overlap-50  overlap-75
                                    |tokens in both| / |tokens in exactly one| > .25, ...
    entailment  neutral  contradiction   the gold label

Naming: words and tags have the side as category (``pre`` or ``hyp``); a
tag's name is ``pos:TAG``, so it prints as ``pre:pos:NN``, completes after
``pre:``, and a bare ``pos:NN`` is an ambiguity error that lists both sides
(words never contain ``:``, so the two cannot clash). Overlap concepts have
category ``overlap``, gold labels ``label``. Tags such as ``PRP$`` or ``,``
print quoted (``"pre:pos:PRP$"``).

Choices, as compexp makes them unless said otherwise:
- words are surface forms, lower-cased (``lemma=True`` / ``--lemma`` uses the
  pipeline's lemmas instead); the most common ``words`` of them, counted over
  every token of both sides, after dropping ``a an the of`` and tokens with no
  letter or digit; ties go to the word seen first;
- overlap counts the distinct tokens of each side, stop words and punctuation
  included (compexp does the same); identical token sets count as infinite
  overlap, two empty sides as none;
- tokens come from the spaCy pipeline when one tags, else from a regular
  expression (words with inner ``-`` or ``'``, and single punctuation marks);
  the store's metadata names the tokenizer, the pipeline and its version;
- without an installed pipeline the store is built without tag concepts and
  its metadata (and the CLI) say why; nothing is ever downloaded;
- bad lines (not UTF-8, not JSON, missing or empty ``sentence1``/``sentence2``)
  refuse the build with every fault listed by file and line, because a store
  that silently lost pairs would no longer line up with activations recorded
  on the same file; ``skip_bad=True`` (``--skip-bad``) keeps the other pairs,
  warns for each line and records the skipped line numbers in the metadata.
  Blank lines are not pairs and are passed over. A ``gold_label`` of ``-``
  (no annotator consensus) or none gives the pair no label concept.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import DataError
from ..progress import check_stop
from ..subcommands import Command, Tools
from ..text import TAG_PREFIX, RegexTokenizer, Tagger, Token, load_pipeline
from . import signatures as sig
from .concept_store import ConceptStore
from .nli_pairs import Pair, read_pairs

STOP_WORDS = frozenset({"a", "an", "the", "of"})
OVERLAP_LEVELS = (25, 50, 75)
SIDES = ("pre", "hyp")
SNLI_LABELS = ("entailment", "neutral", "contradiction")
_CHUNK = 8192


@dataclass
class Analysis:
    """Each pair's tokens as form ids (premise, hypothesis) and tag ids, with the vocabularies."""

    forms: list[tuple[list[int], list[int]]]
    tags: list[tuple[set[int], set[int]]]
    form_vocab: list[str]
    tag_vocab: list[str]


def analyse(pairs: Sequence[Pair], tagger: Tagger, lemma: bool = False) -> Analysis:
    """Tokenize both sides of every pair; forms are lower-cased surface forms or lemmas."""
    form_ids: dict[str, int] = {}
    tag_ids: dict[str, int] = {}
    forms: list[tuple[list[int], list[int]]] = []
    tags: list[tuple[set[int], set[int]]] = []
    for start in range(0, len(pairs), _CHUNK):
        chunk = pairs[start:start + _CHUNK]
        docs = tagger([p.premise for p in chunk] + [p.hypothesis for p in chunk])
        for pre, hyp in zip(docs[:len(chunk)], docs[len(chunk):]):
            sides = [[_id(form_ids, _form(t, lemma)) for t in doc] for doc in (pre, hyp)]
            forms.append((sides[0], sides[1]))
            side_tags = [{_id(tag_ids, t.tag) for t in doc if t.tag and t.tag != "_SP"} for doc in (pre, hyp)]
            tags.append((side_tags[0], side_tags[1]))
    return Analysis(forms, tags, list(form_ids), list(tag_ids))


def _form(token: Token, lemma: bool) -> str:
    if lemma and not token.lemma:
        raise DataError(f"the pipeline gives no lemma for {token.text!r}; --lemma needs one with a lemmatizer")
    return (token.lemma if lemma else token.text).lower()


def _id(table: dict[str, int], key: str) -> int:
    return table.setdefault(key, len(table))


def is_word(form: str) -> bool:
    """A form that can be a word concept: not a stop word, with a letter or digit, and no ``:``."""
    return form not in STOP_WORDS and any(ch.isalnum() for ch in form) and ":" not in form


def top_words(analysis: Analysis, n: int) -> list[str]:
    """The ``n`` most frequent word forms over both sides; ties go to the form seen first."""
    counts: Counter[int] = Counter()
    for pre, hyp in analysis.forms:
        counts.update(pre)
        counts.update(hyp)
    ranked = sorted((i for i in counts if is_word(analysis.form_vocab[i])), key=lambda i: (-counts[i], i))
    return [analysis.form_vocab[i] for i in ranked[:n]]


def overlap(pre: Iterable[int], hyp: Iterable[int]) -> float:
    """compexp's overlap: |distinct tokens in both| / |distinct tokens in exactly one side|."""
    a, b = set(pre), set(hyp)
    both, one = len(a & b), len(a ^ b)
    if one == 0:
        return float("inf") if both else 0.0
    return both / one


def label_order(pairs: Sequence[Pair]) -> list[str]:
    """SNLI's three labels first (those present), then any others alphabetically."""
    present = {p.label for p in pairs if p.label is not None}
    return [lab for lab in SNLI_LABELS if lab in present] + sorted(present - set(SNLI_LABELS))


@dataclass(frozen=True)
class Layout:
    """Concept columns, in store order: pre words, pre tags, hyp words, hyp tags, overlap, labels."""

    words: list[str]
    tags: list[str]
    labels: list[str]

    @property
    def names(self) -> list[str]:
        side = self.words + [TAG_PREFIX + t for t in self.tags]
        return side + side + [f"overlap-{lvl}" for lvl in OVERLAP_LEVELS] + self.labels

    @property
    def categories(self) -> list[str]:
        out: list[str] = []
        for s in SIDES:
            out += [s] * (len(self.words) + len(self.tags))
        return out + ["overlap"] * len(OVERLAP_LEVELS) + ["label"] * len(self.labels)


def concept_rows(pairs: Sequence[Pair], analysis: Analysis, layout: Layout, start: int, stop: int) -> np.ndarray:
    """Bool [stop - start, K]: the concepts of pairs ``start:stop``."""
    vocab_col = np.full(len(analysis.form_vocab), -1, dtype=np.int64)
    form_index = {f: i for i, f in enumerate(analysis.form_vocab)}
    for j, w in enumerate(layout.words):
        vocab_col[form_index[w]] = j
    tag_col = np.asarray([layout.tags.index(t) for t in analysis.tag_vocab], dtype=np.int64)
    side_width = len(layout.words) + len(layout.tags)
    base = 2 * side_width
    label_col = {lab: base + len(OVERLAP_LEVELS) + i for i, lab in enumerate(layout.labels)}
    rows = np.zeros((stop - start, len(layout.names)), dtype=bool)
    for r, i in enumerate(range(start, stop)):
        for s, (ids, tag_set) in enumerate(zip(analysis.forms[i], analysis.tags[i])):
            cols = vocab_col[np.asarray(ids, dtype=np.int64)] if ids else np.zeros(0, np.int64)
            rows[r, s * side_width + cols[cols >= 0]] = True
            if tag_set:
                rows[r, s * side_width + len(layout.words) + tag_col[list(tag_set)]] = True
        ratio = overlap(*analysis.forms[i])
        for lvl_i, lvl in enumerate(OVERLAP_LEVELS):
            rows[r, base + lvl_i] = ratio > lvl / 100
        if pairs[i].label is not None:
            rows[r, label_col[pairs[i].label]] = True
    return rows


# ---------------------------------------------------------------- building


def build_nli_store(source: str | Path | Sequence[Pair], *, words: int = 2000, lemma: bool = False,
                    tagger: Tagger | str | None = "auto", vectors: str | Path | None = None,
                    vectors_format: str = "auto", skip_bad: bool = False,
                    on_warning: Callable[[str], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> ConceptStore:
    """An in-memory text store from a pairs file (or pairs); ``store.save(path)`` writes it.

    ``tagger`` is a :class:`Tagger` (e.g. ``SpacyTagger(nlp)``), a spaCy
    pipeline name or path, ``"auto"`` (``en_core_web_sm`` if installed) or
    None (no tags). ``vectors`` is a word-vector file for NEIGHBORS (see
    :mod:`cxql.text`). ``should_stop()`` is asked between the build's phases
    (reading, tagging) and after each chunk of pairs; a yes raises :class:`~cxql.errors.Cancelled`.
    """
    if words < 1:
        raise DataError(f"--words must be at least 1, got {words}")
    skipped: list[int] = []
    if isinstance(source, (str, Path)):
        pairs, skipped = read_pairs(source, skip_bad=skip_bad, on_warning=on_warning)
    else:
        pairs = list(source)
        if not pairs:
            raise DataError("no sentence pairs to build a store from")
    pos_note = None
    if isinstance(tagger, str) or tagger is None:
        tagger, pos_note = load_pipeline(tagger)
    if lemma and tagger is None:
        raise DataError("--lemma needs a spaCy pipeline with a lemmatizer; " + (pos_note or "none is loaded"))
    tokenizer = tagger if tagger is not None else RegexTokenizer()
    check_stop(should_stop, "the NLI build")
    analysis = analyse(pairs, tokenizer, lemma)
    check_stop(should_stop, "the NLI build")
    if tagger is not None and not analysis.tag_vocab:
        pos_note = f"the pipeline {tagger.describe().get('pipeline', '?')} assigns no tags, so no tag concepts"
    layout = Layout(top_words(analysis, words), sorted(analysis.tag_vocab), label_order(pairs))
    builder = sig.SignatureBuilder(len(layout.names))
    ids = []
    for a in range(0, len(pairs), _CHUNK):
        ids.append(builder.add(sig.pack_rows(concept_rows(pairs, analysis, layout, a, min(a + _CHUNK, len(pairs))))))
        check_stop(should_stop, "the NLI build")
    bits, counts = builder.table()
    metadata = _metadata(source, pairs, skipped, layout, tokenizer, words, lemma, pos_note)
    store = ConceptStore.from_signatures(bits, counts, np.concatenate(ids), layout.names, layout.categories,
                                         None, kind="text", sample_names=[p.pair_id for p in pairs],
                                         metadata=metadata)
    if vectors is not None:
        from ..text import attach_vectors

        attach_vectors(store, vectors, vectors_format, on_warning=on_warning)
    return store


def _metadata(source, pairs, skipped, layout: Layout, tokenizer, words: int, lemma: bool,
              pos_note: str | None) -> dict[str, Any]:
    labels = Counter(p.label for p in pairs if p.label is not None)
    described = tokenizer.describe()
    return {
        "builder": "nli", "source": str(source) if isinstance(source, (str, Path)) else None,
        "pairs": len(pairs), "skipped_lines": skipped,
        "words": {"requested": words, "kept": len(layout.words), "form": "lemma" if lemma else "surface",
                  "stop_words": sorted(STOP_WORDS)},
        "tokenizer": described.get("tokenizer"),
        "pos": None if not layout.tags else {k: v for k, v in described.items() if k != "tokenizer"},
        "pos_note": pos_note,
        "overlap": {"levels": list(OVERLAP_LEVELS), "definition": "|tokens in both| / |tokens in exactly one|"},
        "labels": {lab: labels[lab] for lab in layout.labels},
        "unlabelled": len(pairs) - sum(labels.values()),
    }


def summary(store: ConceptStore) -> str:
    """One line on what a text store holds (the CLI prints it)."""
    meta = store.metadata
    tags = "tags: " + (f"{meta['pos']['pipeline']} {meta['pos']['version']}" if meta.get("pos")
                       else f"none ({meta.get('pos_note')})")
    vec = meta.get("word_vectors")
    vectors = (f"vectors: {vec['words']} of {meta['words']['kept']} words" if vec
               else "vectors: none (NEIGHBORS off)")
    return (f"{store.n_samples:,} pairs, {len(store.concepts):,} concepts "
            f"({meta['words']['kept']} {meta['words']['form']} words per side); {tags}; {vectors}")


# ---------------------------------------------------------------- command line


def _build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pairs", help="JSON lines with sentence1, sentence2 and optionally gold_label")
    p.add_argument("--out", required=True, help="store directory to write (a store there is replaced atomically)")
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a cxql store")
    p.add_argument("--words", type=int, default=2000, help="most common words kept per side (default 2000)")
    p.add_argument("--lemma", action="store_true", help="lemmas instead of lower-cased surface forms")
    p.add_argument("--pipeline", default="auto",
                   help="installed spaCy pipeline for tags (default: en_core_web_sm if installed; none: off)")
    p.add_argument("--vectors", help="word vectors for NEIGHBORS (GloVe text, word2vec text or binary)")
    p.add_argument("--vectors-format", choices=("auto", "glove", "word2vec", "word2vec-binary"), default="auto")
    p.add_argument("--skip-bad", action="store_true", help="skip bad lines with a warning instead of refusing")


def _classifier_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    p.add_argument("layer")
    p.add_argument("--weights", required=True, help=".npy/.pt [classes, units] (or [units, classes])")
    p.add_argument("--predictions", required=True, help=".npy/.pt class indices [pairs] or scores [pairs, classes]")
    p.add_argument("--classes", default=",".join(SNLI_LABELS), help="class names in output order")


def _build_command(args: argparse.Namespace, tools: Tools) -> int:
    import sys

    from .commit import target_kind
    from .validate_input import check_out_path, os_errors

    check_out_path(args.out)
    inputs = [args.pairs] + ([args.vectors] if args.vectors else [])
    target_kind(Path(args.out), inputs, args.force)  # refuse a bad --out before the build, not after
    store = build_nli_store(args.pairs, words=args.words, lemma=args.lemma, tagger=args.pipeline,
                            vectors=args.vectors, vectors_format=args.vectors_format, skip_bad=args.skip_bad,
                            on_warning=tools.warn, should_stop=tools.should_stop)
    with os_errors(args.out):
        store = store.save(args.out, force=args.force, inputs=inputs)
    print(f"built {args.out}: {summary(store)}", file=sys.stderr)
    return 0


def _classifier_command(args: argparse.Namespace, tools: Tools) -> int:
    import sys

    from ..text_record import attach_classifier

    from .activation_files import load_activations

    from ..resources import locate_store

    store = ConceptStore.open(locate_store(args.store, writes=True))
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    attach_classifier(store, args.layer, np.asarray(load_activations(args.weights)),
                      np.asarray(load_activations(args.predictions)), classes)
    print(f"attached a {len(classes)}-class classifier to layer {args.layer!r}", file=sys.stderr)
    return 0


#: ``cxql store build nli`` and ``cxql nli classifier`` (listed in :data:`cxql.subcommands.BUILTIN`).
COMMANDS = (
    Command(("store", "build", "nli"), "a text store from SNLI-style JSON lines", _build_arguments, _build_command,
            description="One position per pair: pre:/hyp: words, pre:pos:/hyp:pos: tags, "
                        "overlap-25/50/75 and gold labels (see cxql.store.nli)."),
    Command(("nli", "classifier"), "attach a layer's output weights and the model's predictions",
            _classifier_arguments, _classifier_command),
)
