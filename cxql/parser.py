"""Text -> syntax tree, with syntax errors people can act on.

The grammar lives in grammar/cxql.lark; this module only turns Lark's parse
tree into :mod:`cxql.syntax` nodes; :mod:`cxql.syntax_errors` turns Lark's
exceptions into :class:`~cxql.errors.QuerySyntaxError` with line, column, caret
and the list of what could have come next. LALR with the contextual lexer keeps keywords
keywords only where the grammar expects them.
"""

from __future__ import annotations

import ast
import warnings

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedInput, VisitError

from . import syntax as s
from .errors import CxqlError, QueryError, QuerySyntaxError, Span
from .grammar_terms import grammar_text, lark_parser  # noqa: F401  (grammar_text re-exported)
from .limits import MAX_DEPTH, MAX_DIGITS
from .syntax_errors import syntax_error

def _lark() -> Lark:
    return lark_parser(positions=False)


def _lark_with_positions() -> Lark:
    return lark_parser(positions=True)


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
        raise syntax_error(exc, text) from None
    if _too_deep(tree) is not None:  # locate it with the parser that keeps positions
        _check_depth(_lark_with_positions().parse(text), text)
    return _transform(tree, text)


def parse_with_spans(text: str) -> list[tuple[s.Statement, Span]]:
    """Each statement of ``text`` with the span of text it came from (for error carets)."""
    try:
        tree = _lark_with_positions().parse(text)
    except UnexpectedInput as exc:
        raise syntax_error(exc, text) from None
    _check_depth(tree, text)
    out = []
    for child in tree.children:
        if isinstance(child, Token):
            continue
        out.append((_transform(child, text), _span(child.meta)))
    return out


#: Tree nodes that add a level of nesting (parentheses add none).
_NESTING = frozenset({"or_op", "and_op", "not_op", "neighbors", "explain_stmt", "prev_seq", "next_seq",
                      "within_seq"})


def _too_deep(tree: Tree) -> Tree | None:
    """The first node nested deeper than MAX_DEPTH, found without recursion (the tree may be deep)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING:
            depth += 1
            if depth > MAX_DEPTH:
                return node
        stack.extend((c, depth) for c in node.children if isinstance(c, Tree))
    return None


def _check_depth(tree: Tree, text: str) -> None:
    """Refuse, with a caret, a query nested deeper than the recursive tree walks can follow."""
    node = _too_deep(tree)
    if node is None:
        return
    meta = node.meta
    span = Span(meta.line, meta.column, meta.start_pos, meta.end_pos) if not meta.empty else None
    raise QueryError(f"the query nests more than {MAX_DEPTH} levels deep (each NOT, AND, OR, NEIGHBORS and "
                     "EXPLAIN is a level; parentheses are not)", span=span, text=text,
                     hint="split it: name parts with LET and combine fewer of them at once")


def _transform(tree: Tree, text: str):
    """Lark tree -> syntax nodes; a CxqlError raised while converting (a huge number) keeps its caret."""
    try:
        return _ToSyntax().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, CxqlError):
            raise exc.orig_exc.with_source(text) from None
        raise


def _span(meta) -> Span | None:
    """The span of a tree node, or None when the parser kept no positions."""
    if meta.empty:
        return None
    return Span(meta.line, meta.column, meta.start_pos, meta.end_pos)


def _whole(token: Token) -> int:
    """A whole number token as an int, refusing numbers longer than MAX_DIGITS digits."""
    text = str(token).lstrip("+-")
    if len(text.lstrip("0")) > MAX_DIGITS:
        end = token.end_pos if token.end_pos is not None else token.start_pos + len(token)
        raise QueryError(f"number too large: {len(text):,} digits (at most {MAX_DIGITS})",
                         span=Span(token.line, token.column, token.start_pos, end))
    return int(str(token))


def parse_formula(text: str) -> s.Formula:
    """Parse text that must be exactly one formula."""
    stmt = parse(text)
    if not isinstance(stmt, s.FormulaStmt):
        raise QuerySyntaxError(f"expected a formula, got {text!r}")
    return stmt.formula


def _unescape(literal: str) -> str:
    body = literal[1:-1]
    try:
        with warnings.catch_warnings():  # "invalid escape sequence" must not reach users (nor fail under -W error)
            warnings.simplefilter("ignore")
            return ast.literal_eval(literal[0] + body + literal[0])
    except (ValueError, SyntaxError):
        return body


class _ToSyntax(Transformer):
    """Lark tree -> cxql.syntax nodes, one method per grammar alias."""

    def script(self, items):
        return s.Script(tuple(i for i in items if not isinstance(i, Token)))

    # formulas (each node keeps its span when the parser kept positions)
    @v_args(meta=True)
    def bare_name(self, meta, items):
        parts = [_unescape(t) if t.type == "STRING" else str(t) for t in items]
        return s.Concept(":".join(parts), span=_span(meta))

    @v_args(meta=True)
    def quoted_name(self, meta, items):
        return s.Concept(_unescape(items[0]), span=_span(meta))

    @v_args(meta=True)
    def not_op(self, meta, items):
        return s.Not(items[0], span=_span(meta))

    @v_args(meta=True)
    def and_op(self, meta, items):
        return s.And(items[0], items[1], span=_span(meta))

    @v_args(meta=True)
    def or_op(self, meta, items):
        return s.Or(items[0], items[1], span=_span(meta))

    @v_args(meta=True)
    def neighbors(self, meta, items):
        k = _whole(items[1]) if len(items) > 1 else None
        return s.Neighbors(items[0], k, span=_span(meta))

    @v_args(meta=True)
    def prev_seq(self, meta, items):
        return s.Prev(items[0], span=_span(meta))

    @v_args(meta=True)
    def next_seq(self, meta, items):
        return s.Next(items[0], span=_span(meta))

    @v_args(meta=True)
    def within_seq(self, meta, items):
        return s.Within(items[0], _whole(items[1]), span=_span(meta))

    # units
    def all_units(self, _items):
        return s.Units(())

    def unit_list(self, items):
        return s.Units(tuple(item for item, _ in items), spans=tuple(span for _, span in items))

    @v_args(meta=True)
    def unit_one(self, meta, items):
        return _whole(items[0]), _span(meta)

    @v_args(meta=True)
    def unit_range(self, meta, items):
        return s.UnitRange(_whole(items[0]), _whole(items[1])), _span(meta)

    # statements
    def formula_stmt(self, items):
        return s.FormulaStmt(items[0])

    def eval_stmt(self, items):
        return s.Eval(items[0], items[1])

    def opt_length(self, items):
        return ("length", _whole(items[0]))

    def opt_beam(self, items):
        return ("beam", _whole(items[0]))

    def opt_distinct(self, _items):
        return ("distinct", True)

    def opt_accuracy(self, _items):
        return ("accuracy", True)

    def opt_exact(self, _items):
        return ("exact", True)

    def opt_within(self, items):
        return ("within", float(items[0]))

    def opt_using(self, items):
        return ("using", tuple(items))

    def using_family(self, items):
        return items[0]

    def using_prev(self, items):
        return s.Prev(items[0])

    def using_next(self, items):
        return s.Next(items[0])

    def using_within(self, items):
        return s.Within(items[0], _whole(items[1]))

    def search_stmt(self, items):
        options = dict(items[1:])
        order = options.pop("order", None)
        return s.Search(items[0], **options, order=order[0] if order else None,
                        descending=bool(order and order[1]))

    def match_stmt(self, items):
        top = _whole(items[1]) if len(items) > 1 else None
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
        return s.Show("unit", unit=_whole(items[0]))

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
        if text.lstrip("+-").isdigit():
            return _whole(tok)
        return float(text)

    @v_args(inline=True)
    def ident_value(self, tok):
        return str(tok)

    def describe_stmt(self, items):
        return s.Describe(_whole(items[0]))

    def summary_stmt(self, items):
        name = _unescape(items[0]) if items[0].type == "STRING" else str(items[0])
        return s.Summary(name, _whole(items[1]) if len(items) > 1 else None)

    def ablate_units(self, items):
        return s.Ablate(units=items[0])

    def ablate_match(self, items):
        return s.Ablate(formula=items[0], top=_whole(items[1]))

    def explain_stmt(self, items):
        return s.Explain(items[0])
