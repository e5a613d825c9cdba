"""Text for text stores: tokens and tags (spaCy), and word vectors for NEIGHBORS.

Sentences become :class:`Token` lists through a :class:`Tagger`: a spaCy
pipeline the user has installed (:class:`SpacyTagger`, fine-grained PTB tags
from ``token.tag_`` and lemmas), or, without one, :class:`RegexTokenizer`
(words with inner ``-`` or ``'``, and single punctuation marks; no tags).
spaCy is imported only when a pipeline is loaded, and nothing is downloaded:
``spacy.load`` only finds installed pipelines. Tests pass any object with the
same two methods.

NEIGHBORS(word, k) is the paper's unary operator for text stores: the word's
concept OR the concepts of its k nearest words (default 5) by cosine
similarity of word vectors, in the same family and among the words the store
has as concepts: the same side (``pre:``/``hyp:``) on text stores, ``word:``
or ``lemma:`` on token stores (``<rare>`` pools have no vector). Like compexp's code, the word itself is part
of the OR (a unit that fires for "dog-like words" fires for "dog" too).

Vectors are read once, at build time, with gensim's KeyedVectors from a file
the user gives (GloVe text without a header, word2vec text, or word2vec
binary); only the rows of the store's words are kept, inside the store
(``word_vectors.npy`` plus the word list in the manifest), so queries never
need the file again. A store word with no vector is listed in the metadata,
and NEIGHBORS on it is an error naming it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol, Sequence

import numpy as np

from .errors import DataError, NameResolutionError, StoreError

if TYPE_CHECKING:
    from .store import ConceptStore

VECTOR_FORMATS = ("auto", "glove", "word2vec", "word2vec-binary")
WORD_SIDES = ("pre", "hyp")
TOKEN_FAMILIES = ("word", "lemma")  # token stores' word concepts (cxql.store.conllu, cxql.store.text_tokens)
RARE_WORD = "<rare>"  # token stores' pool of rare forms: a concept, not a word
TAG_PREFIX = "pos:"  # a tag concept is named pos:TAG within its side's category
VECTORS_ARRAY = "word_vectors"
DEFAULT_PIPELINE = "en_core_web_sm"
_TOKEN = re.compile(r"\w+(?:[-'\u2019]\w+)*|[^\w\s]")


# ---------------------------------------------------------------- tokens and tags


class Token(NamedTuple):
    text: str
    tag: str | None = None
    lemma: str | None = None


class Tagger(Protocol):
    """Turns sentences into tokens (with tags and lemmas when it has them)."""

    def __call__(self, texts: Sequence[str]) -> list[list[Token]]: ...

    def describe(self) -> dict[str, Any]: ...



class RegexTokenizer:
    """Words and punctuation by a regular expression: no tags, no lemmas."""

    def __call__(self, texts: Sequence[str]) -> list[list[Token]]:
        return [[Token(t) for t in _TOKEN.findall(text)] for text in texts]

    def describe(self) -> dict[str, Any]:
        return {"tokenizer": "regex", "pattern": _TOKEN.pattern}


class SpacyTagger:
    """A spaCy pipeline's tokens, fine-grained tags (``token.tag_``) and lemmas."""

    def __init__(self, nlp: Any, batch_size: int = 256) -> None:
        self.nlp = nlp
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str]) -> list[list[Token]]:
        return [[Token(t.text, t.tag_ or None, t.lemma_ or None) for t in doc if not t.is_space]
                for doc in self.nlp.pipe(texts, batch_size=self.batch_size)]

    def describe(self) -> dict[str, Any]:
        import spacy

        meta = self.nlp.meta
        name = f"{meta.get('lang', '')}_{meta.get('name', '')}".strip("_")
        return {"tokenizer": "spacy", "pipeline": name, "version": str(meta.get("version", "")),
                "spacy": spacy.__version__, "components": list(self.nlp.pipe_names)}


def load_pipeline(name: str | None = "auto") -> tuple[Tagger | None, str | None]:
    """(tagger, why there is none): an installed spaCy pipeline by name or path.

    ``auto`` tries ``en_core_web_sm`` and falls back to no tags with a note;
    a pipeline named explicitly must load; ``none`` turns tags off.
    """
    if name is None or name.lower() == "none":
        return None, "tags turned off (pipeline none)"
    wanted = DEFAULT_PIPELINE if name == "auto" else name
    try:
        import spacy
    except ImportError:
        if name != "auto":
            raise DataError(f"spaCy pipeline {name!r} asked for, but spaCy is not installed",
                            hint="pip install 'cxql[text]'") from None
        return None, "spaCy is not installed (pip install 'cxql[text]'), so no tag concepts"
    try:
        nlp = spacy.load(wanted)
    except OSError:
        if name != "auto":
            raise DataError(f"spaCy pipeline {name!r} is not installed",
                            hint=f"install it (e.g. python -m spacy download {name}) and build again") from None
        return None, f"spaCy pipeline {wanted!r} is not installed, so no tag concepts"
    nlp.select_pipes(disable=[p for p in ("parser", "ner") if p in nlp.pipe_names])
    return SpacyTagger(nlp), None


# ---------------------------------------------------------------- word vectors


def detect_format(path: str | Path) -> str:
    """``word2vec-binary`` for .bin files, ``word2vec`` when the first line is 'count dim', else ``glove``."""
    path = Path(path)
    if path.suffix == ".bin":
        return "word2vec-binary"
    try:
        with open(path, "rb") as fh:
            first = fh.readline().split()
    except OSError as exc:
        raise DataError(f"{path}: cannot read word vectors ({exc.strerror or exc})") from None
    return "word2vec" if len(first) == 2 and all(p.isdigit() for p in first) else "glove"


def load_vectors(path: str | Path, fmt: str = "auto") -> Any:
    """A gensim KeyedVectors from a GloVe or word2vec file."""
    if fmt not in VECTOR_FORMATS:
        raise DataError(f"unknown vectors format {fmt!r}; use one of {', '.join(VECTOR_FORMATS)}")
    try:
        from gensim.models import KeyedVectors
    except ImportError:
        raise DataError("word vectors need gensim", hint="pip install 'cxql[text]'") from None
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such word-vectors file")
    fmt = detect_format(path) if fmt == "auto" else fmt
    _check_vector_header(path, fmt)
    if fmt != "word2vec-binary":
        _check_vector_rows(path, fmt)
    try:
        kv = KeyedVectors.load_word2vec_format(str(path), binary=fmt == "word2vec-binary",
                                               no_header=fmt == "glove", unicode_errors="strict")
    except (ValueError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise DataError(f"{path}: not a {fmt} word-vectors file ({exc})",
                        hint="name the format with --vectors-format glove|word2vec|word2vec-binary") from None
    bad = np.flatnonzero(~np.isfinite(kv.vectors).all(axis=1))
    if len(bad):
        raise DataError(f"{path}: the vector of {kv.index_to_key[int(bad[0])]!r} holds NaN or inf "
                        f"({len(bad)} word(s) in all)")
    return kv


def _check_vector_rows(path: Path, fmt: str) -> None:
    """Refuse a text vectors file whose rows differ in length (gensim would pad a short row silently)."""
    with open(path, "rb") as fh:
        if fmt == "word2vec":
            dim = int(fh.readline().split()[1])
            first = 2
        else:
            dim, first = None, 1
        for number, line in enumerate(fh, start=first):
            fields = len(line.split())
            if fields == 0:
                continue
            if dim is None:
                dim = fields - 1
            if fields != dim + 1:
                raise DataError(f"{path}:{number}: a word and {fields - 1} numbers, but the vectors have {dim} "
                                "numbers each")


def _check_vector_header(path: Path, fmt: str) -> None:
    """Refuse an empty file, and a word2vec header promising more than the file holds (gensim would allocate it)."""
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty word-vectors file")
    if fmt == "glove":
        return
    with open(path, "rb") as fh:
        header = fh.readline().split()
    if len(header) != 2 or not all(p.isdigit() and len(p) < 19 for p in header):
        raise DataError(f"{path}: a {fmt} file starts with 'COUNT DIM', got {b' '.join(header)[:60]!r}")
    count, dim = map(int, header)
    least = count * dim * (4 if fmt == "word2vec-binary" else 2)  # a float takes 4 bytes, or 2 characters
    if least > size:
        raise DataError(f"{path}: its header promises {count:,} vectors of {dim:,} numbers, "
                        f"more than its {size:,} bytes can hold")


def store_words(store: "ConceptStore") -> list[str]:
    """The words of a store's word concepts, each once (a text store has the same list on both sides)."""
    if store.kind == "tokens":
        return list(dict.fromkeys(c.name for c in store.concepts if is_word_concept(c, store.kind)))
    return [c.name for c in store.concepts if is_word_concept(c) and c.category == WORD_SIDES[0]]


def is_word_concept(concept: Any, kind: str = "text") -> bool:
    """A word concept: ``pre:``/``hyp:`` on text stores (not ``pos:`` tags), ``word:``/``lemma:`` on token stores."""
    if kind == "tokens":
        return concept.category in TOKEN_FAMILIES and concept.name != RARE_WORD
    return concept.category in WORD_SIDES and not concept.name.startswith(TAG_PREFIX)


def attach_vectors(store: "ConceptStore", vectors: Any, fmt: str = "auto",
                   on_warning: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Keep the vectors of the store's words inside an in-memory store (saved with it)."""
    source = str(vectors) if isinstance(vectors, (str, Path)) else None
    kv = load_vectors(vectors, fmt) if isinstance(vectors, (str, Path)) else vectors
    words = store_words(store)
    present = [w for w in words if w in kv.key_to_index]
    missing = [w for w in words if w not in kv.key_to_index]
    if not present:
        raise DataError(f"{source or 'the vectors'}: none of the store's {len(words)} words has a vector",
                        hint="check the file's case and language (store words are lower-cased)")
    if missing:
        warn = on_warning or (lambda m: warnings.warn(m, stacklevel=2))
        warn(f"{len(missing)} of {len(words)} words have no vector, so no NEIGHBORS: "
             + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    store.arrays[VECTORS_ARRAY] = np.stack([np.asarray(kv[w], dtype=np.float32) for w in present])
    info = {"words": len(present), "dim": int(store.arrays[VECTORS_ARRAY].shape[1]), "source": source,
            "vocabulary": present, "missing": missing}
    store.metadata["word_vectors"] = info
    return info


def neighbors_for(store: "ConceptStore") -> Callable[[int, int], list[int]] | None:
    """The NEIGHBORS provider of a store, or None when it has no word vectors."""
    if store.kind not in ("text", "tokens") or not store.metadata.get("word_vectors"):
        return None
    return Neighbors(store)


class Neighbors:
    """concept index, k -> the concept and its k nearest words of the same family (cosine)."""

    def __init__(self, store: "ConceptStore") -> None:
        self.store = store
        self.vocabulary: list[str] = list(store.metadata["word_vectors"]["vocabulary"])
        self._unit: np.ndarray | None = None
        self._index = {(c.category, c.name): c.index for c in store.concepts if is_word_concept(c, store.kind)}
        self._row = {w: i for i, w in enumerate(self.vocabulary)}
        families: dict[str, list[int]] = {}  # a token store's word: and lemma: lists differ
        for category, name in self._index:
            if name in self._row:
                families.setdefault(category, []).append(self._row[name])
        self._family = {c: np.array(sorted(rows), dtype=np.int64) for c, rows in families.items()}

    @property
    def unit_vectors(self) -> np.ndarray:
        if self._unit is None:
            vectors = self.store.arrays.get(VECTORS_ARRAY)
            if vectors is None:
                path = self.store.path / f"{VECTORS_ARRAY}.npy" if self.store.path else None
                if path is None or not path.exists():
                    raise StoreError(f"{path or 'the store'}: its word vectors are missing; rebuild it with --vectors")
                vectors = np.load(path, allow_pickle=False)
            v = np.asarray(vectors, dtype=np.float64)
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            self._unit = v / np.where(norms > 0, norms, 1.0)
        return self._unit

    def words(self, word: str, k: int, family: str | None = None) -> list[str]:
        """The k nearest vocabulary words to ``word`` (itself excluded) in ``family``'s words, nearest first."""
        rows = self._family[family] if family is not None else np.arange(len(self.vocabulary))
        rows = rows[rows != self._row[word]]
        sims = self.unit_vectors[rows] @ self.unit_vectors[self._row[word]]
        order = np.argsort(-sims, kind="stable")[:max(0, min(k, len(rows)))]
        return [self.vocabulary[rows[i]] for i in order]

    def __call__(self, index: int, k: int) -> list[int]:
        concept = self.store.concepts[index]
        tokens = self.store.kind == "tokens"
        if not is_word_concept(concept, self.store.kind):
            kinds = "word:WORD or lemma:LEMMA" if tokens else "pre:WORD or hyp:WORD"
            raise NameResolutionError(f"NEIGHBORS needs a word concept ({kinds}), "
                                      f"not {concept.qualified}", needle=concept.name)
        if concept.name not in self._row:
            raise NameResolutionError(f"the word {concept.name!r} has no vector, so it has no NEIGHBORS",
                                      hint="the vectors file given at build time lacks it", needle=concept.name)
        near = self.words(concept.name, k, concept.category if tokens else None)
        return [index] + [self._index[(concept.category, w)] for w in near]
