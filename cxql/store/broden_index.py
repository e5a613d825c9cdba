"""Reading a NetDissect Broden directory's CSV files (label.csv, index.csv), checked row by row.

Only the layout: which labels, categories and images there are. Decoding the
segmentation PNGs and building the store is :mod:`cxql.store.broden`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import DataError


META_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
_CATEGORY_COUNT = re.compile(r"^\s*([^()]+?)\s*\(\s*(\d+)\s*\)\s*$")


@dataclass(frozen=True)
class Label:
    """A row of label.csv (its number is the key): name and per-category counts."""

    name: str
    counts: dict[str, int]


@dataclass(frozen=True)
class IndexRow:
    """A row of index.csv: the image, its sizes, and per category its PNGs or label numbers."""

    line: int
    image: str
    image_size: tuple[int, int] | None
    seg_size: tuple[int, int]
    cells: dict[str, tuple[str | int, ...]]


@dataclass
class Broden:
    """A parsed Broden directory, restricted to the selected categories and rows."""

    directory: Path
    labels: dict[int, Label]
    categories: list[str]
    rows: list[IndexRow]


def _read_csv(path: Path, required: Sequence[str]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line, row)]) of a CSV file, with clear errors for missing files and columns."""
    if not path.is_file():
        raise DataError(f"{path}: missing; {path.parent} is not a Broden directory (NetDissect's layout: "
                        "index.csv, label.csv, category.csv, c_<category>.csv and the images/ folder)")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            if [c for c in required if c not in header]:
                raise DataError(f"{path}, row 1: header needs columns {', '.join(required)}; got {','.join(header)}")
            rows = []
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise DataError(f"{path}, row {reader.line_num}: has {len(header)} columns in the header "
                                    f"but a different number here")
                rows.append((reader.line_num, row))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return header, rows


MAX_LABEL = (1 << 16) - 1  # segmentation PNGs encode a label as R + 256 * G


def _int(value: str, path: Path, line: int, column: str, most: int | None = None) -> int:
    text = value.strip()
    try:
        if len(text) > 18:  # past int64, and past Python's limit on digits at some length
            raise ValueError
        number = int(text)
    except ValueError:
        shown = repr(text if len(text) <= 40 else text[:40] + "...")
        raise DataError(f"{path}, row {line}: column {column} must be an integer, got {shown}") from None
    if most is not None and not 0 <= number <= most:
        raise DataError(f"{path}, row {line}: column {column}: {number} is out of range 0..{most}")
    return number


def _label_number(value: str, path: Path, line: int, column: str) -> int:
    """An image-level label number of an index.csv cell (label numbers are 0..65535, as in the PNGs)."""
    return _int(value, path, line, column, MAX_LABEL)


def read_labels(directory: Path) -> dict[int, Label]:
    """label.csv as {number: Label}; label 0 (background) is skipped."""
    path = directory / "label.csv"
    _, rows = _read_csv(path, ("number", "name", "category"))
    labels: dict[int, Label] = {}
    for line, row in rows:
        number = _int(row["number"], path, line, "number", MAX_LABEL)
        if number in labels:
            raise DataError(f"{path}, row {line}: label number {number} appears twice")
        counts = {}
        for part in filter(None, (p.strip() for p in row["category"].split(";"))):
            match = _CATEGORY_COUNT.match(part)
            if not match:
                raise DataError(f"{path}, row {line}: category {part!r} is not of the form name(count)")
            counts[match.group(1)] = _int(match.group(2), path, line, "category")
        if number:
            labels[number] = Label(row["name"].strip(), counts)
    return labels


def read_index(directory: Path, categories: Sequence[str] | None = None, prefixes: Sequence[str] = (),
               split: str | None = None, limit: int | None = None) -> tuple[list[str], list[IndexRow]]:
    """(selected categories, selected rows) of index.csv."""
    path = directory / "index.csv"
    header, rows = _read_csv(path, ("image", "sh", "sw"))
    present = [c for c in header if c not in META_COLUMNS]
    if categories:
        unknown = [c for c in categories if c not in present]
        if unknown:
            raise DataError(f"{path}: no category column {', '.join(unknown)}; it has {', '.join(present)}")
        present = [c for c in present if c in categories]
    out: list[IndexRow] = []
    for line, row in rows:
        image = row["image"].strip()
        if prefixes and not any(image.startswith(p) for p in prefixes):
            continue
        if split is not None and row.get("split", "").strip() != split:
            continue
        seg = (_int(row["sh"], path, line, "sh"), _int(row["sw"], path, line, "sw"))
        has_size = row.get("ih", "").strip() and row.get("iw", "").strip()
        size = (_int(row["ih"], path, line, "ih"), _int(row["iw"], path, line, "iw")) if has_size else None
        if min(seg) <= 0:
            raise DataError(f"{path}, row {line}: segmentation size {seg} must be positive")
        cells = {c: tuple(_label_number(v, path, line, c) if v.isdigit() else v
                          for v in map(str.strip, row[c].split(";")) if v)
                 for c in present}  # label numbers (image-level) or PNG paths
        out.append(IndexRow(line, image, size, seg, cells))
        if limit is not None and len(out) >= limit:
            break
    return present, out


def open_broden(directory: str | Path, categories: Sequence[str] | None = None, prefixes: Sequence[str] = (),
                split: str | None = None, limit: int | None = None) -> Broden:
    """Read and check a Broden directory's CSV files (no images are decoded here)."""
    directory = Path(directory)
    return Broden(directory, read_labels(directory), *read_index(directory, categories, prefixes, split, limit))
