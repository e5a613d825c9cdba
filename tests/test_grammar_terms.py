"""The grammar as the single source of syntax (issue 12, item 5).

Keywords and token patterns are read from grammar/cxql.lark; the shell's
lexer and completer and the syntax printer use those, and no module retypes
them. The tests read the grammar file on their own (a regex over its text)
and check every consumer against it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pygments.token import Keyword, Name, Operator, String

import cxql
from cxql import grammar_terms as gt
from cxql import syntax as s
from cxql.parser import parse
from cxql.shell.completer import CompletionContext, ConceptName, complete
from cxql.shell.lexer import IDENT, STRING, CxqlLexer, grammar_keywords

CXQL = Path(cxql.__file__).resolve().parent
GRAMMAR = (CXQL.parent / "grammar" / "cxql.lark").read_text(encoding="utf-8")
#: The grammar's keywords, read straight from its text: every case-insensitive word literal.
FROM_TEXT = frozenset(w.upper() for w in re.findall(r'"([A-Za-z]+)"i', GRAMMAR))
#: The grammar's named token regexes, straight from its text.
TOKENS = dict(re.findall(r"^([A-Z_]+)(?:\.\d+)?:\s*/(.*)/i?\s*$", GRAMMAR, re.M))


def test_the_keyword_set_is_the_grammars() -> None:
    assert gt.keywords() == FROM_TEXT
    assert {"EVAL", "SEARCH", "NEIGHBORS", "ASC", "DESC", "ACCURACY"} <= FROM_TEXT


def test_the_lexer_uses_the_grammars_keywords_and_tokens() -> None:
    assert set(grammar_keywords()) == FROM_TEXT
    assert list(grammar_keywords()) == sorted(FROM_TEXT, key=lambda w: (-len(w), w))
    assert IDENT == gt.token_pattern("IDENT") and STRING == gt.token_pattern("STRING")
    for word in sorted(FROM_TEXT):
        for spelled in (word, word.lower()):
            kinds = [kind for kind, text in CxqlLexer().get_tokens(spelled) if text.strip()]
            assert kinds in ([Keyword], [Operator.Word]), (spelled, kinds)
    assert [k for k, t in CxqlLexer().get_tokens("inky") if t.strip()] == [Name]


@pytest.mark.parametrize("word", sorted(FROM_TEXT))
def test_the_printer_quotes_every_keyword_and_only_keywords(word) -> None:
    for spelled in (word, word.lower(), word.capitalize()):
        printed = str(s.Concept(spelled))
        assert printed == f'"{spelled}"'
        assert parse(printed) == s.FormulaStmt(s.Concept(spelled))
        assert str(s.Concept(f"{spelled}:x")) == f'"{spelled}:x"'
        assert str(s.Concept(f"x:{spelled}")) == f"x:{spelled}"
    assert str(s.Concept(word.lower() + "x")) == word.lower() + "x"


#: What each terminal is written as in generated statements (keywords: themselves).
SAMPLE_TOKENS = {"IDENT": "water", "INT": "1", "NUMBER": "2", "STRING": "'w'"}


def generated_statements(n: int, seed: int = 0) -> list[list[str]]:
    """``n`` random statements derived from the grammar's own rules, as token lists."""
    import random

    lark = gt.lark_parser()
    rules: dict[str, list] = {}
    for rule in lark.rules:
        rules.setdefault(rule.origin.name, []).append(rule.expansion)
    literal = {t.name: t.pattern.value for t in lark.terminals if t.pattern.type == "str"}
    rng = random.Random(seed)

    def expand(symbol, depth: int) -> list[str]:
        if symbol.is_term:
            return [SAMPLE_TOKENS.get(symbol.name) or literal[symbol.name]]
        options = rules[symbol.name]
        if depth > 6:  # close off: the alternative with the fewest rules to expand
            options = [min(options, key=lambda e: sum(not s.is_term for s in e))]
        return [tok for s in rng.choice(options) for tok in expand(s, depth + 1)]

    start = next(r.origin for r in lark.rules if r.origin.name == "statement")
    return [expand(start, 0) for _ in range(n)]


def test_the_completer_offers_exactly_the_grammars_keywords() -> None:
    """Completion at every token of statements generated from the grammar offers each keyword, and no other."""
    ctx = CompletionContext(concepts=(ConceptName("water", "object", 5),), lets=("wet",), n_units=4,
                            layers=("conv",), neighbors=True)
    offered = set()
    for tokens in generated_statements(120):
        for end in range(len(tokens)):
            prefix = " ".join(tokens[:end]) + (" " if end else "")
            offered |= {sug.display for sug in complete(prefix, ctx) if sug.meta == "keyword"}
    assert offered == FROM_TEXT


def test_generated_statements_parse_and_print_back() -> None:
    for tokens in generated_statements(120, seed=1):
        stmt = parse(" ".join(tokens))
        assert parse(str(stmt)) == stmt


def test_statement_and_formula_words_come_from_the_grammars_rules() -> None:
    starts = re.findall(r'^[a-z_]+_stmt:\s*"([A-Z]+)"i', GRAMMAR, re.M)
    assert list(gt.statement_keywords()) == list(dict.fromkeys(starts))
    assert gt.operator_words() == {"AND", "OR", "NOT"}
    assert gt.formula_keywords() == {"AND", "OR", "NOT", "NEIGHBORS", "PREV", "NEXT", "WITHIN"}


SAMPLES = ["ink", "t-shirt", "a--b", "don't", "9x", "'it''s'", "'a\\'b'", '"x y"', "'open", "12", "1.5e3", "-2",
           ".5", "1e", "-- note", "--", "a\nb", "'a\nb'", ""]


@pytest.mark.parametrize("name", ["IDENT", "INT", "NUMBER", "STRING", "COMMENT"])
def test_token_patterns_are_the_grammars(name) -> None:
    ours = re.compile(gt.token_pattern(name))
    theirs = re.compile(TOKENS[name], re.I if name == "IDENT" else 0)
    assert [bool(ours.fullmatch(x)) for x in SAMPLES] == [bool(theirs.fullmatch(x)) for x in SAMPLES]
    assert any(ours.fullmatch(x) for x in SAMPLES)
    with pytest.raises(KeyError, match="no terminal NOPE"):
        gt.token_pattern("NOPE")


@pytest.mark.parametrize("value, bare", [("plain", True), ("0.995", True), ("cuda:0", False),
                                         ("quantile:0.99", False), ("t-shirt", True), ("two words", False)])
def test_setting_values_are_quoted_unless_the_grammar_reads_them_bare(value, bare) -> None:
    from cxql.shell.completer import _setting_values
    from cxql.settings import Setting

    ctx = CompletionContext(settings={"x": Setting("x", None, str, "help", choices=(value,))})
    assert _setting_values("x", ctx) == [value if bare else f"'{value}'"]


# ------------------------------------------------------------ nothing retyped


def _string_constants(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


SOURCES = sorted(p for p in CXQL.rglob("*.py") if p.name != "grammar_terms.py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(CXQL)))
def test_no_module_retypes_keyword_lists_or_token_regexes(path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    token_bodies = [TOKENS[n] for n in ("IDENT", "STRING", "NUMBER")] + ["[A-Za-z0-9_", '"([A-Za-z]+)"i']
    for node in _string_constants(tree):
        assert not any(body in node.value for body in token_bodies), f"line {node.lineno}: {node.value[:60]!r}"
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
                     and e.value.isupper() and e.value in FROM_TEXT]
            assert len(words) < 3, f"line {node.lineno}: a retyped keyword list {words}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            words = [w for w in node.value.lower().split() if w.upper() in FROM_TEXT]
            assert len(words) < 8 or len(words) < len(node.value.split()) / 2, f"line {node.lineno}: keyword list"


def test_the_guard_catches_the_old_retyped_list() -> None:
    old = 'KEYWORDS = frozenset("""and or not eval on unit search length beam distinct match top""".split())'
    node = next(_string_constants(ast.parse(old)))
    words = [w for w in node.value.lower().split() if w.upper() in FROM_TEXT]
    assert not (len(words) < 8 or len(words) < len(node.value.split()) / 2)
