"""Text -> syntax tree, with syntax errors people can act on.

The grammar lives in grammar/cxql.lark; this module only turns Lark's parse
tree into :mod:`cxql.syntax` nodes and Lark's exceptions into
:class:`~cxql.errors.QuerySyntaxError` with line, column, caret and the list of
what could have come next. LALR with the contextual lexer keeps keywords
keywords only where the grammar expects them.
"""

from __future__ import annotations

import ast
from functools import lru_cache

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import syntax as s
from .errors import QuerySyntaxError, Span
from .resources import data_path

#: How terminals read in "expected ..." messages.
_TERMINAL_WORDS = {
    "IDENT": "a concept name",
    "STRING": "a quoted string",
    "INT": "a whole number",
    "NUMBER": "a number",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "COLON": "':'",
    "EQUAL": "'='",
    "STAR": "'*'",
    "SEMICOLON": "';'",
    "_NEWLINE": "end of line",
    "$END": "end of input",
}


@lru_cache(maxsize=1)
def grammar_text() -> str:
    """The grammar source (also used by the shell's completer)."""
    return data_path("grammar", "cxql.lark").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(grammar_text(), start="script", parser="lalr", lexer="contextual",
                propagate_positions=False, maybe_placeholders=False)


@lru_cache(maxsize=1)
def _lark_with_positions() -> Lark:
    return Lark(grammar_text(), start="script", parser="lalr", lexer="contextual",
                propagate_positions=True, maybe_placeholders=False)


def parser() -> Lark:
    """The shared Lark parser (for tools that need its interactive mode)."""
    return _lark()


def parse(text: str) -> s.Script | s.Statement:
    """Parse cxql text: one statement gives that statement, several a Script."""
    script = parse_script(text)
    if len(script.statements) == 1:
        return script.statements[0]
    return script


def parse_script(text: str) -> s.Script:
    """Parse cxql text into a Script of statements (possibly empty)."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    return _ToSyntax().transform(tree)


def parse_with_spans(text: str) -> list[tuple[s.Statement, Span]]:
    """Each statement of ``text`` with the span of text it came from (for error carets)."""
    try:
        tree = _lark_with_positions().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    out = []
    for child in tree.children:
        if isinstance(child, Token):
            continue
        meta = child.meta
        span = Span(meta.line, meta.column, meta.start_pos, meta.end_pos)
        out.append((_ToSyntax().transform(child), span))
    return out


def parse_formula(text: str) -> s.Formula:
    """Parse text that must be exactly one formula."""
    stmt = parse(text)
    if not isinstance(stmt, s.FormulaStmt):
        raise QuerySyntaxError(f"expected a formula, got {text!r}")
    return stmt.formula


def _unescape(literal: str) -> str:
    body = literal[1:-1]
    try:
        return ast.literal_eval(literal[0] + body + literal[0])
    except (ValueError, SyntaxError):
        return body


class _ToSyntax(Transformer):
    """Lark tree -> cxql.syntax nodes, one method per grammar alias."""

    def script(self, items):
        return s.Script(tuple(i for i in items if not isinstance(i, Token)))

    # formulas
    def bare_name(self, items):
        parts = [_unescape(t) if t.type == "STRING" else str(t) for t in items]
        return s.Concept(":".join(parts))

    def quoted_name(self, items):
        return s.Concept(_unescape(items[0]))

    def not_op(self, items):
        return s.Not(items[0])

    def and_op(self, items):
        return s.And(items[0], items[1])

    def or_op(self, items):
        return s.Or(items[0], items[1])

    def neighbors(self, items):
        k = int(items[1]) if len(items) > 1 else None
        return s.Neighbors(items[0], k)

    # units
    def all_units(self, _items):
        return s.Units(())

    def unit_list(self, items):
        return s.Units(tuple(items))

    def unit_one(self, items):
        return int(items[0])

    def unit_range(self, items):
        return s.UnitRange(int(items[0]), int(items[1]))

    # statements
    def formula_stmt(self, items):
        return s.FormulaStmt(items[0])

    def eval_stmt(self, items):
        return s.Eval(items[0], items[1])

    def opt_length(self, items):
        return ("length", int(items[0]))

    def opt_beam(self, items):
        return ("beam", int(items[0]))

    def opt_distinct(self, _items):
        return ("distinct", True)

    def opt_accuracy(self, _items):
        return ("accuracy", True)

    def opt_exact(self, _items):
        return ("exact", True)

    def opt_within(self, items):
        return ("within", float(items[0]))

    def search_stmt(self, items):
        return s.Search(items[0], **dict(items[1:]))

    def match_stmt(self, items):
        top = int(items[1]) if len(items) > 1 else None
        return s.Match(items[0], top)

    def let_stmt(self, items):
        return s.Let(str(items[0]), items[1])

    def show_concepts(self, items):
        options = dict(items)
        order = options.get("order")
        return s.Show("concepts", pattern=options.get("like"), order=order[0] if order else None,
                      descending=bool(order and order[1]))

    def like(self, items):
        return ("like", _unescape(items[0]))

    def order(self, items):
        return ("order", (str(items[0]).lower(), len(items) > 1 and items[1].type == "DESC"))

    def show_categories(self, _items):
        return s.Show("categories")

    def show_units(self, _items):
        return s.Show("units")

    def show_unit(self, items):
        return s.Show("unit", unit=int(items[0]))

    def show_store(self, _items):
        return s.Show("store")

    def show_lets(self, _items):
        return s.Show("lets")

    def show_settings(self, _items):
        return s.Show("settings")

    @v_args(inline=True)
    def set_stmt(self, name, value):
        return s.Set(str(name).lower(), value)

    @v_args(inline=True)
    def string_value(self, tok):
        return _unescape(tok)

    @v_args(inline=True)
    def number_value(self, tok):
        text = str(tok)
        try:
            return int(text)
        except ValueError:
            return float(text)

    @v_args(inline=True)
    def ident_value(self, tok):
        return str(tok)

    def explain_stmt(self, items):
        return s.Explain(items[0])


def _describe(expected: set[str]) -> str:
    words = sorted({_TERMINAL_WORDS.get(t, _keyword(t)) for t in expected if not t.startswith("__")})
    if not words:
        return ""
    if len(words) > 8:
        words = words[:8] + ["..."]
    return "expected " + ", ".join(words)


def _keyword(terminal: str) -> str:
    # Lark names anonymous keyword terminals after the keyword itself (e.g. "SEARCH").
    return terminal.upper() if terminal.isalpha() else terminal


def _syntax_error(exc: UnexpectedInput, text: str) -> QuerySyntaxError:
    line = getattr(exc, "line", None) or 1
    column = getattr(exc, "column", None) or 1
    start = getattr(exc, "pos_in_stream", None) or 0
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            what = "unexpected end of input"
            line, column, start = _end_position(text)
            end = start + 1
        else:
            what = f"unexpected {token!s:.40}" if token.type != "_NEWLINE" else "unexpected end of line"
            end = (token.end_pos or start + 1)
            start = token.start_pos if token.start_pos is not None else start
        expected = exc.accepts or exc.expected
    elif isinstance(exc, UnexpectedCharacters):
        what = f"unexpected character {text[exc.pos_in_stream]!r}"
        expected = exc.allowed or set()
        end = start + 1
    elif isinstance(exc, UnexpectedEOF):
        what = "unexpected end of input"
        line, column, start = _end_position(text)
        end = start + 1
        expected = set(exc.expected)
    else:  # pragma: no cover - lark has no other kinds today
        what, expected, end = str(exc), set(), start + 1
    hint = _describe(set(expected))
    return QuerySyntaxError(what, span=Span(line, column, start, end), text=text,
                            hint=hint or None)


def _end_position(text: str) -> tuple[int, int, int]:
    stripped = text.rstrip()
    lines = stripped.splitlines() or [""]
    return len(lines), len(lines[-1]) + 1, len(stripped)
