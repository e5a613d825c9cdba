"""``\\help SEARCH``: a statement's syntax, read from the grammar file itself.

grammar/cxql.lark is the single source of the syntax, so the help shows its
rules in a form people read: ``"SEARCH"i`` becomes SEARCH, ``x?`` becomes
``[x]``, ``x*`` becomes ``[x ...]``; one-line helper rules (``like``,
``order``) are written in place, and rules with alternatives (``units``,
``search_opt``) are listed under the statement. Only the one-line summaries
are written here.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .. import grammar_terms
from ..grammar_terms import grammar_text

#: What each statement does, by its first keyword.
SUMMARIES = {
    "EVAL": "IoU, precision and recall of a formula against units",
    "SEARCH": "the best formula of each unit (beam search over concepts)",
    "MATCH": "the units a formula explains best",
    "LET": "name a formula for later statements",
    "SHOW": "what the store and the session hold",
    "SET": "change a setting (SHOW settings lists them)",
    "EXPLAIN": "what a statement would do, without running it",
    "DESCRIBE": "a unit's best formula as an English sentence",
    "SUMMARY": "how well a layer is explained: best scores by formula length, categories, operators",
    "ABLATE": "accuracy per class with units zeroed, against as many random units (the attached model)",
}
#: Words for the grammar's terminals and basic rules.
TERMS = {
    "statement": "any statement (EXPLAIN says what it would do)",
    "formula": "concepts combined with AND, OR, NOT and parentheses, e.g. (water OR river) AND NOT blue",
    "INT": "a whole number", "IDENT": "a name (of a concept, LET, setting or result column)", "STRING": "a quoted string", "NUMBER": "a number",
}

_RULE = re.compile(r"^(\??)([a-z_]+)\s*:\s*(.*)$")


@lru_cache(maxsize=1)
def grammar_rules() -> dict[str, list[str]]:
    """Rule name -> its alternatives (aliases and comments dropped), from the grammar file."""
    rules: dict[str, list[str]] = {}
    current: str | None = None
    for raw in grammar_text().splitlines():
        line = raw.split("//", 1)[0].rstrip()
        match = _RULE.match(line)
        if match:
            current = match.group(2)
            rules[current] = []
            body = match.group(3)
        elif current and line.strip().startswith("|"):
            body = line.strip()[1:]
        else:
            if line.strip():
                current = None
            continue
        for alternative in _top_level_alternatives(body):
            alternative = re.sub(r"->\s*\w+", "", alternative).strip()
            if alternative:
                rules[current].append(alternative)
    return rules


def _top_level_alternatives(body: str) -> list[str]:
    """``a | (b | c)`` -> ``["a", "(b | c)"]``: split on the bars outside parentheses and quotes."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(body):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append(body[start:i])
            start = i + 1
    return out + [body[start:]]


def statement_keywords() -> list[str]:
    """The keywords that start a statement (EVAL, SEARCH, ...), in grammar order."""
    return list(grammar_terms.statement_keywords())


def statement_help(keyword: str) -> list[str] | None:
    """The syntax lines of the statement starting with ``keyword`` (None if no statement does)."""
    keyword = keyword.upper()
    rules = grammar_rules()
    lines: list[str] = []
    for name, alternatives in rules.items():
        if not name.endswith("_stmt"):
            continue
        lines += [_render(alt) for alt in alternatives if re.match(rf'"{keyword}"i(?!\w)', alt, re.I)]
    if not lines:
        return None
    where: list[str] = []
    listed: set[str] = set()
    while True:  # the rules with alternatives that the lines use, and those that they use
        used = set(re.findall(r"[a-z_]+", " ".join(lines + where)))
        more = [n for n in rules if n in used and n not in listed and len(rules[n]) > 1
                and n not in ("name", "statement")]
        if not more:
            break
        listed.update(more)
        where += [f"{n}: " + " | ".join(_render(a) for a in rules[n]) for n in more]
    where += [f"{t}: {words}" for t, words in TERMS.items() if re.search(rf"\b{t}\b", " ".join(lines + where))]
    return lines + where


def _render(alternative: str) -> str:
    """A grammar alternative as people write it: keywords upper case, [optional], [repeated ...]."""
    rules = grammar_rules()
    text = alternative
    for name, alts in rules.items():  # one-line helper rules in place (like, order)
        if len(alts) == 1 and not name.endswith("_stmt") and name not in ("formula",) and name != "script":
            text = re.sub(rf"(?<![\w\"]){name}(?![\w\"])", f"({alts[0]})", text)
    text = re.sub(r'"([^"]*)"i?', lambda m: m.group(1).upper(), text)
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"\(([^()]*)\)\?", r"[\1]", text)
        text = re.sub(r"\(([^()]*)\)\*", r"[\1 ...]", text)
        text = re.sub(r"\(([^()|]*)\)", r"\1", text)
    text = re.sub(r"(?<![\w\]])(\w+)\?", r"[\1]", text)
    text = re.sub(r"(?<![\w\]])(\w+)\*", r"[\1 ...]", text)
    return " ".join(text.split())
