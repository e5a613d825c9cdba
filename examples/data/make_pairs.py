"""Write examples/data/pairs.jsonl: 300 small SNLI-style sentence pairs (run once; the file ships).

Premises describe a person doing something somewhere; each gets one
hypothesis that is entailed (a more general restatement), contradicted (a
different person, activity or place, or "nobody") or neutral (an added detail
the premise does not settle). The lexical shortcuts of real NLI data (e.g.
"sleeping" or "nobody" for contradiction) are there on purpose, so that the
units of a model trained on these pairs have something to find.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PEOPLE = {"man": ("person", "woman"), "woman": ("person", "man"), "boy": ("child", "girl"),
          "girl": ("child", "boy"), "old man": ("person", "young woman"), "young woman": ("person", "old man")}
ACTIVITIES = {  # activity: (more general, incompatible)
    "playing a guitar": ("playing an instrument", "sleeping"), "riding a bike": ("riding", "sitting on a couch"),
    "eating a sandwich": ("eating food", "sleeping"), "reading a book": ("reading", "swimming"),
    "throwing a ball": ("playing with a ball", "sleeping"), "cooking dinner": ("cooking food", "sitting on a couch"),
    "running": ("moving", "sitting"), "painting a wall": ("painting", "sleeping"),
    "walking a dog": ("walking with an animal", "driving a car"), "singing a song": ("making music", "sleeping"),
}
PLACES = {"on a beach": "outdoors", "in a park": "outdoors", "on a street": "outdoors",
          "in a kitchen": "indoors", "in a library": "indoors", "on a stage": "indoors"}
DETAILS = ["for their friends", "because it is sunny", "after work", "with great skill", "for the first time",
           "to win a prize"]


def a(noun: str) -> str:
    """The noun with its indefinite article, capitalised (sentences start with it)."""
    return ("An " if noun[0] in "aeiou" else "A ") + noun


def premise(rng: random.Random) -> tuple[str, str, str]:
    return rng.choice(list(PEOPLE)), rng.choice(list(ACTIVITIES)), rng.choice(list(PLACES))


def hypothesis(label: str, who: str, act: str, where: str, rng: random.Random) -> str:
    if label == "entailment":
        return rng.choice([f"{a(PEOPLE[who][0])} is {act}.", f"{a(who)} is {ACTIVITIES[act][0]}.",
                           f"{a(who)} is {PLACES[where]}.", f"{a(PEOPLE[who][0])} is {ACTIVITIES[act][0]} {where}."])
    if label == "contradiction":
        other = "indoors" if PLACES[where] == "outdoors" else "outdoors"
        return rng.choice([f"{a(who)} is {ACTIVITIES[act][1]}.", f"Nobody is {act}.",
                           f"The {who} is {act} {other}.", f"{a(PEOPLE[who][1])} is {act} alone.",
                           f"The {who} is sleeping {where}."])
    return rng.choice([f"{a(who)} is {act} {rng.choice(DETAILS)}.", f"The {who} is a professional.",
                       f"{a(who)} is {act} with a friend.", f"A tall {who} is {act} {where}.",
                       f"The {who} is happy."])


def pairs(n: int = 300, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        who, act, where = premise(rng)
        label = ("entailment", "neutral", "contradiction")[i % 3]
        out.append({"pairID": f"ex{i:03d}", "sentence1": f"{a(who)} is {act} {where}.",
                    "sentence2": hypothesis(label, who, act, where, rng), "gold_label": label})
    rng.shuffle(out)
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("pairs.jsonl")
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs()), encoding="utf-8")
    print(f"wrote {path}")
