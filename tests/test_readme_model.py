"""The README's "Does the explanation hold for the model?" section: every number comes from live results.

``python tests/test_readme_model.py`` prints the section; the test checks the README holds it verbatim.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cxql
from cxql import copy_paste as cp
from cxql.contributions import contributions
from cxql.resources import demo_store_path

README = Path(__file__).resolve().parent.parent / "README.md"
DESCRIBED = (3, 10, 14)
CLASS = "2"
ABLATION = "ABLATE MATCH hole TOP 3"


def section() -> str:
    """The README section, from the shipped demo store (conv2 for SUMMARY/DESCRIBE/ABLATE, fc for classes)."""
    store = cxql.ConceptStore.open(demo_store_path())
    session = cxql.connect(store)
    session.execute("SET layer = conv2")
    lengths = [r for r in session.execute("SUMMARY LAYER conv2 LENGTH 3").rows if r["part"] == "length"]
    lines = ["| length | mean IoU | median | q1..q3 | max |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['mean']:.3f} | {r['median']:.3f} | {r['q1']:.3f}..{r['q3']:.3f} | {r['max']:.3f} |"
              for r in lengths]
    figure = "\n".join(lines)
    described = []
    for u in DESCRIBED:
        [row] = session.execute(f"DESCRIBE unit {u}").rows
        described.append(f"- unit {u}, `{row['formula']}` (IoU {row['iou']:.3f}): *{row['description']}*")
    ablate = session.execute(ABLATION)
    by_class = {r["class"]: r for r in ablate.rows}
    worst = min((r for r in ablate.rows if r["class"] != "all"), key=lambda r: (r["change"], r["class"]))
    a = by_class["all"]
    # the sentences below read these facts; they must stay true
    assert a["change"] > a["random_change"] and worst["change"] < worst["random_change"] - worst["random_spread"]
    session.execute("SET layer = fc")
    formulas = {r["unit"]: r["formula"] for r in session.execute("SEARCH unit * LENGTH 3 BEAM 10").rows}
    per_class, _ = contributions(store, "fc", formulas)
    rows = [r for r in per_class.rows if r["class"] == CLASS]
    pasted = cp.summary_row(cp.paste(store, "hole", 1, n=100, seed=0), "hole", 1, source=0)
    assert pasted["to_source"] > pasted["control_to_source"]
    contrib = "\n".join(f"| {r['rank']} | {r['unit']} | {r['weight']:.3f} | `{r['formula']}` |" for r in rows)
    return f"""### Does the explanation hold for the model?

The demo store carries its CNN (weights, inputs and labels inside the store;
the class is `cxql.models.digits`), so the model statements run right after
install. `SUMMARY LAYER conv2 LENGTH 3` gives the best IoU of conv2's 16 units
at each formula length (compexp's figure; `cxql report` draws it as
`conv2_summary.png` beside the page, along with the share of units per concept
category and how many formulas use OR, AND, AND NOT):

{figure}

![mean best IoU by formula length, conv2](docs/img/conv2_summary.png)

`DESCRIBE unit u` reads a unit's best formula as English, from the phrases the
store keeps for its concepts (conv2):

{chr(10).join(described)}

Class contributions (the output layer's weights from `fc`, with SEARCH LENGTH 3
BEAM 10 formulas; the report of `fc` lists every class): class {CLASS} leans on

| rank | fc unit | weight | formula |
|---|---|---|---|
{contrib}

`{ABLATION}` (conv2) zeroes units {ablate.message.split(': ')[1].split(';')[0]} (a forward hook) and
re-runs the model over all {a['samples']:,} digits: accuracy {a['before']:.4f} -> {a['after']:.4f}
({a['change']:+.4f}), against {a['random_after']:.4f} ± {a['random_spread']:.4f} (mean ± standard
deviation, 5 seeds) with 3 random other conv2 units. Overall the hole units
matter less than random ones, but the digit {worst['class']} loses most:
{worst['before']:.4f} -> {worst['after']:.4f}, where random units leave it at
{worst['random_after']:.4f} ± {worst['random_spread']:.4f}.

Copy-paste (`cxql.copy_paste`, compexp section 5): the holes of random other
digits pasted into {pasted['victims']} correctly read 1s change the prediction
of {pasted['flip_rate']:.0%} of them, {pasted['to_source']:.0%} into a 0; the same number of the
donor's pixels pasted at random positions changes {pasted['control_flip_rate']:.0%}, {pasted['control_to_source']:.0%} into a 0:

![victim, donor, pasted; prediction before -> after](docs/img/copy_paste_hole.png)

`cxql report demo fc --out report` runs the same experiment for the first
classes whose top units' formulas name a concept with a region inside the
image (with or without NOT; the page says which), pasting it into up to 10
correctly read digits of each other class, and saves a grid beside the page.
"""


def test_readme_model_section_is_live():
    assert section() in README.read_text(encoding="utf-8")


if __name__ == "__main__":
    sys.stdout.write(section())
