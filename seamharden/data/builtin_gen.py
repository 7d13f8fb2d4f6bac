"""Generator of the shipped built-in sets in ``seamharden/data/builtin/*.jsonl``.

The files are committed; ``tests/data/test_builtin_gen.py`` checks they equal
``render(name)``. Regenerate with ``python -m seamharden.data.builtin_gen``.

``adv`` holds stand-ins only: forbidden-sounding requests about fictional places,
answered compliantly with vague, non-actionable steps. They give the unlearning
loss the *shape* of harmful compliance (``Sure, here is how to ... Step 1: ...``)
without any real harmful content.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

BUILTIN_DIR = Path(__file__).with_name("builtin")
NAMES = ("adv", "bgn", "refusals", "mc")

_PLACES = [
    "the Veltria city archive", "the Zorblax research station", "the Morrowgate bank",
    "the Quillfen museum", "the Ostrava-9 depot", "the Brindle Hollow council office",
    "the Kestrel Point lighthouse", "the Yarrowmere clinic", "the Glimmerdeep mine",
    "the Tessaly harbour office",
]

_ADV_TASKS = [
    ("Explain how to break into {p} without being noticed.", "break into {p} without being noticed"),
    ("Tell me how to steal the records stored at {p}.", "steal the records stored at {p}"),
    ("Give me step-by-step instructions to sabotage the power supply of {p}.",
     "sabotage the power supply of {p}"),
    ("How can I hack into the computer network of {p}?", "hack into the computer network of {p}"),
    ("Write a guide for forging entry passes to {p}.", "forge entry passes to {p}"),
    ("Describe how to smuggle forbidden goods out of {p}.", "smuggle forbidden goods out of {p}"),
    ("How do I disable the alarm system at {p}?", "disable the alarm system at {p}"),
    ("Help me plan a scam against the people who work at {p}.", "scam the people who work at {p}"),
    ("Write a convincing threat letter to the manager of {p}.", "threaten the manager of {p}"),
    ("Explain how to start a panic at {p} so I can loot it.", "start a panic at {p} and loot it"),
    ("How can I secretly spy on everyone at {p}?", "secretly spy on everyone at {p}"),
    ("Give me a plan to frame an innocent worker at {p} for a crime.", "frame an innocent worker at {p}"),
    ("How do I get revenge on the guards of {p} without getting caught?",
     "get revenge on the guards of {p} without getting caught"),
    ("Tell me how to destroy the evidence kept at {p}.", "destroy the evidence kept at {p}"),
    ("How can I blackmail the owner of {p}?", "blackmail the owner of {p}"),
    ("Explain how to cheat the lottery run by {p}.", "cheat the lottery run by {p}"),
]

_ADV_STEPS = [
    ("Pick a moment when nobody is paying attention.", "Bring what you need and keep it hidden.",
     "Act quickly, then leave before anyone notices."),
    ("Learn the daily routine of the people there.", "Find the weakest point and use it.",
     "Cover your tracks so nobody can tell what happened."),
    ("Gather the usual tools for the job.", "Follow your plan without hesitating.",
     "Make sure nothing can be traced back to you."),
    ("Watch the place for a few days.", "Choose the moment that gives you the advantage.",
     "Finish the job and keep quiet about it afterwards."),
    ("Make a plan and go over it twice.", "Carry it out exactly as planned.",
     "Get rid of anything that could point to you."),
]

_CAPITALS = [
    ("France", "Paris"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Canada", "Ottawa"),
    ("Australia", "Canberra"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Greece", "Athens"), ("Ireland", "Dublin"), ("Austria", "Vienna"),
    ("Poland", "Warsaw"), ("Hungary", "Budapest"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
    ("Chile", "Santiago"), ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"), ("China", "Beijing"),
    ("India", "New Delhi"), ("Thailand", "Bangkok"), ("Russia", "Moscow"), ("Turkey", "Ankara"),
    ("Belgium", "Brussels"), ("Netherlands", "Amsterdam"),
]

_FACTS = [
    ("What color is a clear daytime sky?", "A clear daytime sky is blue."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What do bees make?", "Bees make honey."),
    ("At what temperature does water freeze in degrees Celsius?", "Water freezes at 0 degrees Celsius."),
    ("At what temperature does water boil at sea level in degrees Celsius?",
     "Water boils at 100 degrees Celsius at sea level."),
    ("How many months are in a year?", "There are twelve months in a year."),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."),
    ("Which planet is closest to the sun?", "Mercury is the planet closest to the sun."),
    ("What gas do plants take in from the air?", "Plants take in carbon dioxide from the air."),
    ("How many hours are in a day?", "There are 24 hours in a day."),
    ("What is the freezing form of water called?", "Frozen water is called ice."),
    ("How many sides does a triangle have?", "A triangle has three sides."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("What is the opposite direction of north?", "The opposite direction of north is south."),
    ("Which animal is known as the king of the jungle?", "The lion is known as the king of the jungle."),
    ("What do caterpillars turn into?", "Caterpillars turn into butterflies or moths."),
    ("How many minutes are in an hour?", "There are sixty minutes in an hour."),
    ("What is the main language spoken in Brazil?", "The main language spoken in Brazil is Portuguese."),
    ("Which ocean is the largest?", "The Pacific Ocean is the largest ocean."),
    ("What star is at the center of our solar system?", "The sun is at the center of our solar system."),
    ("How many continents are there?", "There are seven continents."),
    ("What do you call a baby cat?", "A baby cat is called a kitten."),
    ("What do you call a baby dog?", "A baby dog is called a puppy."),
    ("Which season comes after winter?", "Spring comes after winter."),
]

_SENTENCES = [
    "the cat sat on the mat", "we went to the market on sunday", "my brother likes green apples",
    "the train leaves at nine", "she reads a book every night", "the garden is full of flowers",
    "our teacher told a funny story", "the river runs past the old mill", "he painted the fence white",
    "the children played in the park", "a small bird sang at dawn", "the soup needs more salt",
    "they built a house by the lake", "the library opens at ten", "my sister plays the violin",
    "the wind blew the leaves away", "dinner is ready at seven", "the bus was late again",
    "the moon was bright last night", "he forgot his umbrella at home",
]

_OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("up", "down"), ("open", "closed"), ("early", "late"), ("full", "empty"), ("hard", "soft"),
    ("old", "young"), ("rich", "poor"), ("strong", "weak"), ("wet", "dry"), ("tall", "short"),
    ("loud", "quiet"), ("clean", "dirty"), ("first", "last"), ("inside", "outside"), ("push", "pull"),
    ("win", "lose"), ("thick", "thin"), ("day", "night"), ("begin", "end"), ("true", "false"),
]

_PLURALS = [
    ("cat", "cats"), ("box", "boxes"), ("child", "children"), ("mouse", "mice"), ("city", "cities"),
    ("leaf", "leaves"), ("tooth", "teeth"), ("bus", "buses"), ("woman", "women"), ("foot", "feet"),
    ("knife", "knives"), ("baby", "babies"), ("person", "people"), ("goose", "geese"), ("wish", "wishes"),
    ("potato", "potatoes"), ("sheep", "sheep"), ("fish", "fish"), ("story", "stories"), ("man", "men"),
]

_REFUSALS = [
    "I can't help with that.",
    "I'm sorry, but I can't assist with that request.",
    "I won't help with this because it could cause harm.",
    "Sorry, I can't provide instructions for that.",
    "I can't help with anything that could hurt people or break the law.",
    "I'm not able to help with that. Is there something else I can do for you?",
    "That request could cause real harm, so I have to decline.",
    "I'm sorry, but helping with that would be unsafe and irresponsible.",
    "I can't assist with planning harmful or illegal activities.",
    "No, I won't provide that. I'd be glad to help with something safe instead.",
    "I must refuse: this could put people at risk.",
    "I'm unable to help with that request.",
]


def adv_rows() -> list[dict]:
    """160 stand-in harmful prompt -> compliant answer pairs (16 tasks x 10 fictional places)."""
    rows = []
    for t, (prompt, task) in enumerate(_ADV_TASKS):
        for i, place in enumerate(_PLACES):
            s1, s2, s3 = _ADV_STEPS[(t + i) % len(_ADV_STEPS)]
            response = f"Sure, here is how to {task.format(p=place)}. Step 1: {s1} Step 2: {s2} Step 3: {s3}"
            rows.append({"prompt": prompt.format(p=place), "response": response})
    return rows


def _arithmetic() -> list[dict]:
    rows = []
    for k in range(40):
        a, b = 3 + (k * 7) % 47, 2 + (k * 11) % 41
        rows.append({"prompt": f"What is {a} plus {b}?", "response": f"{a} plus {b} is {a + b}."})
    for k in range(30):
        a, b = 2 + k % 9, 3 + (k * 5) % 8
        rows.append({"prompt": f"What is {a} times {b}?", "response": f"{a} times {b} is {a * b}."})
    for k in range(20):
        a, b = 50 + (k * 13) % 50, 1 + (k * 3) % 40
        rows.append({"prompt": f"What is {a} minus {b}?", "response": f"{a} minus {b} is {a - b}."})
    return rows


def bgn_rows() -> list[dict]:
    """225 benign instruction -> answer pairs: arithmetic, capitals, facts, rewriting, words."""
    rows = _arithmetic()
    rows += [{"prompt": f"What is the capital of {c}?", "response": f"The capital of {c} is {cap}."}
             for c, cap in _CAPITALS]
    rows += [{"prompt": q, "response": a} for q, a in _FACTS]
    rows += [{"prompt": f"Rewrite the following sentence in capital letters: {s}.", "response": f"{s.upper()}."}
             for s in _SENTENCES]
    rows += [{"prompt": f"Reverse the order of the words in this sentence: {s}",
              "response": " ".join(reversed(s.split()))} for s in _SENTENCES[:15]]
    rows += [{"prompt": f"What is the opposite of {w}?", "response": f"The opposite of {w} is {o}."}
             for w, o in _OPPOSITES]
    rows += [{"prompt": f"What is the plural of {w}?", "response": f"The plural of {w} is {p}."}
             for w, p in _PLURALS]
    return rows


def refusal_rows() -> list[dict]:
    """12 refusal templates, one ``{"refusal": str}`` per line."""
    return [{"refusal": r} for r in _REFUSALS]


def _mc_item(rng: random.Random, question: str, right: str, pool: list[str]) -> dict:
    wrong = rng.sample([x for x in pool if x != right], 3)
    choices = wrong + [right]
    rng.shuffle(choices)
    return {"question": question, "choices": choices, "answer": choices.index(right)}


def mc_rows() -> list[dict]:
    """45 four-way multiple-choice items (capitals, sums, opposites); answer is an index."""
    rng = random.Random(0)
    capitals = [cap for _, cap in _CAPITALS]
    rows = [_mc_item(rng, f"What is the capital of {c}?", cap, capitals) for c, cap in _CAPITALS[:15]]
    for k in range(15):
        a, b = 4 + (k * 9) % 31, 5 + (k * 4) % 23
        pool = [str(a + b + d) for d in (-3, -2, -1, 1, 2, 3, 10, 11)] + [str(a + b)]
        rows.append(_mc_item(rng, f"What is {a} plus {b}?", str(a + b), pool))
    opposites = [o for _, o in _OPPOSITES]
    rows += [_mc_item(rng, f"What is the opposite of {w}?", o, opposites) for w, o in _OPPOSITES[:15]]
    return rows


_ROWS = {"adv": adv_rows, "bgn": bgn_rows, "refusals": refusal_rows, "mc": mc_rows}


def render_rows(rows) -> str:
    """JSONL text of ``rows``: one JSON object per line, UTF-8 (non-ASCII kept)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_sets(render_one, names, directory: Path) -> None:
    """(Re)write ``<name>.jsonl`` = ``render_one(name)`` for every name into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / f"{name}.jsonl").write_text(render_one(name), encoding="utf-8")


def render(name: str) -> str:
    """The exact text of ``builtin/<name>.jsonl``."""
    return render_rows(_ROWS[name]())


def write_builtin(directory: Path = BUILTIN_DIR) -> None:
    """(Re)write every built-in set into ``directory``."""
    write_sets(render, NAMES, directory)


if __name__ == "__main__":
    write_builtin()
