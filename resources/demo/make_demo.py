"""Write the SlimPajama Studio demo set: resources/demo/train.tsv and dev.tsv.

Every fragment below was written for this project. Sentences are composed from them with
a fixed seed, so running this script again gives the same files byte for byte:

    python resources/demo/make_demo.py

Labels: 0 negative, 1 positive. Negations ("not bad at all") and contrasts ("slow to
start, but the ending is superb") are mixed in so the task is not a bag of words.
"""

from __future__ import annotations

import random
from pathlib import Path

SEED = 20240611
TRAIN_PER_CLASS = 220
DEV_PER_CLASS = 50

# Each group: subjects that agree with every predicate of the group.
# pos / neg: plain opinions. not_neg: negated negatives (positive). not_pos: negated
# positives (negative).
GROUPS: dict[str, dict[str, list[str]]] = {
    "film": {
        "subjects": [
            "the film",
            "the movie",
            "this thriller",
            "the sequel",
            "this comedy",
            "the documentary",
            "the remake",
            "this animated feature",
            "the new western",
            "this horror film",
        ],
        "pos": [
            "kept me on the edge of my seat",
            "is funny, warm and surprisingly moving",
            "is the best thing I have seen this year",
            "rewards your patience with a terrific final act",
            "looks gorgeous and never wastes a scene",
            "earns every one of its tears",
            "had the whole theater laughing",
            "is smart, tight and beautifully shot",
            "grabbed me in the first minute and never let go",
            "is a small gem",
            "stayed with me for days",
            "handles a difficult subject with real grace",
        ],
        "neg": [
            "drags on for far too long",
            "is a mess of half-finished ideas",
            "put half the audience to sleep",
            "forgets its own plot halfway through",
            "is loud, dull and instantly forgettable",
            "wastes a talented cast",
            "feels like a two-hour trailer",
            "is a chore to sit through",
            "insults the intelligence of its viewers",
            "has nothing new to say",
            "collapses in a ridiculous final act",
            "is ugly to look at and tiring to follow",
        ],
        "not_neg": [
            "is not bad at all",
            "never feels as long as it is",
            "is not the disaster the trailer suggested",
            "did not disappoint me",
            "is never boring",
            "never loses its nerve",
            "is not the usual lazy sequel",
            "left me with nothing to complain about",
        ],
        "not_pos": [
            "is not worth the price of a ticket",
            "never finds its rhythm",
            "is not nearly as clever as it thinks",
            "did not make me laugh once",
            "is not as good as everyone says",
            "never gives you a reason to care",
            "is not something I would watch again",
            "fails to live up to the first one",
        ],
    },
    "film_parts": {
        "subjects": [
            "the script",
            "the acting",
            "the soundtrack",
            "the ending",
            "the lead performance",
            "the dialogue",
            "the pacing",
            "the cinematography",
            "the villain",
            "the humor",
        ],
        "pos": [
            "is excellent",
            "is a real highlight",
            "is handled with real care",
            "is beautifully done",
            "is a cut above the usual",
            "is sharp and confident",
            "could not have been better",
            "lifts every scene it touches",
        ],
        "neg": [
            "is clumsy",
            "falls flat",
            "is the weakest part",
            "feels lazy",
            "is painfully weak",
            "is a letdown",
            "is simply embarrassing",
            "grates after a while",
        ],
        "not_neg": [
            "is not a weak spot at all",
            "never gets annoying",
            "is not as clumsy as I feared",
            "leaves little to complain about",
        ],
        "not_pos": [
            "is far from convincing",
            "is not good enough to carry the story",
            "never comes together",
            "is hardly memorable",
        ],
    },
    "food": {
        "subjects": [
            "the pasta",
            "the soup",
            "the burger",
            "the curry",
            "the steak",
            "the dessert",
            "the pizza",
            "the ramen",
            "the fish taco",
            "the breakfast plate",
            "the risotto",
        ],
        "pos": [
            "was fresh and full of flavor",
            "was cooked perfectly",
            "was the best I have had in years",
            "tasted like it was made with love",
            "was generous and delicious",
            "was worth the drive across town",
            "was rich, hot and perfectly seasoned",
            "disappeared from my plate in minutes",
            "was simple but excellent",
        ],
        "neg": [
            "was cold and bland",
            "tasted like it came out of a freezer",
            "was swimming in grease",
            "was burnt on one side and raw on the other",
            "was far too salty to finish",
            "was tiny for the price",
            "made me feel sick later",
            "was dry and chewy",
            "was a sad, soggy mess",
        ],
        "not_neg": [
            "was not bad at all",
            "was not as greasy as I expected",
            "did not disappoint",
            "was not overpriced for what you get",
            "never tasted stale",
        ],
        "not_pos": [
            "was not worth the wait",
            "was not fresh",
            "did not taste like anything",
            "was not what the menu described",
            "was nowhere near as good as last time",
        ],
    },
    "service": {
        "subjects": [
            "the service",
            "our waiter",
            "the staff",
            "the host",
            "the bartender",
            "the manager",
        ],
        "pos": [
            "was friendly and quick",
            "made us feel welcome",
            "went out of their way to help",
            "was attentive without hovering",
            "got every detail of our order right",
            "handled a busy night with a smile",
        ],
        "neg": [
            "was slow and rude",
            "forgot half of our order",
            "ignored us for twenty minutes",
            "was careless and distracted",
            "rushed us out the door",
            "got our order wrong twice",
        ],
        "not_neg": [
            "was never rude, even when it was packed",
            "did not keep us waiting",
            "did not rush us at all",
            "was not the problem people warned me about",
        ],
        "not_pos": [
            "was not friendly at all",
            "did not seem to care",
            "never checked on us",
            "was not even polite",
        ],
    },
    "gadget": {
        "subjects": [
            "this phone",
            "the laptop",
            "this tablet",
            "the speaker",
            "this smartwatch",
            "the router",
            "this camera",
            "the keyboard",
            "the e-reader",
            "this headset",
        ],
        "pos": [
            "works exactly as advertised",
            "is worth every penny",
            "was easy to set up",
            "feels solid and well made",
            "has a battery that lasts for days",
            "is fast, quiet and reliable",
            "exceeded my expectations",
            "has been flawless for months",
            "is the best purchase I made this year",
        ],
        "neg": [
            "stopped working after a week",
            "feels cheap and rattles",
            "arrived with a cracked case",
            "is a pain to set up",
            "overheats constantly",
            "drains its battery by lunchtime",
            "crashes every few hours",
            "is a waste of money",
            "broke the second time I used it",
        ],
        "not_neg": [
            "has not given me a single problem",
            "is not flimsy at all",
            "was not hard to set up",
            "has never crashed on me",
            "is not as fragile as it looks",
        ],
        "not_pos": [
            "is not worth the money",
            "does not do what the box promises",
            "is not as fast as the ads claim",
            "never connects on the first try",
            "did not survive a month",
        ],
    },
    "appliance": {
        "subjects": [
            "the blender",
            "this vacuum",
            "the coffee maker",
            "this kettle",
            "the air fryer",
            "the rice cooker",
            "this toaster",
            "the dishwasher",
        ],
        "pos": [
            "does its job perfectly",
            "is sturdy and easy to clean",
            "has made my mornings easier",
            "is surprisingly good for the price",
            "still works like new after a year",
            "heats up in seconds",
        ],
        "neg": [
            "fell apart within a month",
            "is loud enough to wake the neighbors",
            "leaks every time I use it",
            "smells like burning plastic",
            "is impossible to clean",
            "tripped the fuse twice in a week",
        ],
        "not_neg": [
            "is not noisy at all",
            "has not broken yet, and I use it daily",
            "was not a waste of money",
            "is not hard to clean",
        ],
        "not_pos": [
            "does not hold up to daily use",
            "is not worth the hype",
            "does not work as well as my old one",
            "never heats evenly",
        ],
    },
    "furniture": {
        "subjects": [
            "the desk chair",
            "the sofa",
            "the bookshelf",
            "the dining table",
            "the bed frame",
            "the wardrobe",
        ],
        "pos": [
            "is sturdy and well made",
            "looks even better in person",
            "was easy to assemble",
            "is surprisingly good for the price",
            "has held up beautifully",
        ],
        "neg": [
            "fell apart within a month",
            "is flimsy and wobbly",
            "looks nothing like the photos",
            "came with half the screws missing",
            "started sagging after a week",
        ],
        "not_neg": ["is not wobbly at all", "was not hard to put together", "has not creaked once"],
        "not_pos": ["is not sturdy", "is not worth the price", "did not survive the move"],
    },
    "book": {
        "subjects": [
            "the novel",
            "this memoir",
            "the sequel",
            "the short story collection",
            "the audiobook",
            "this biography",
            "the thriller I picked up at the airport",
        ],
        "pos": [
            "is a joy to read",
            "kept me up until three in the morning",
            "is wise, funny and kind",
            "is hard to put down",
            "is full of ideas I keep coming back to",
            "is beautifully written",
        ],
        "neg": [
            "is a slog",
            "is padded with pointless chapters",
            "has a twist you can see coming a mile off",
            "reads like a first draft",
            "is full of flat, lifeless characters",
            "bored me to tears",
        ],
        "not_neg": [
            "is not a difficult read at all",
            "never drags",
            "is not as bleak as reviews suggest",
        ],
        "not_pos": [
            "is not worth finishing",
            "never lives up to its opening",
            "is not as funny as it thinks",
        ],
    },
    "hotel": {
        "subjects": [
            "the hotel",
            "our room",
            "the bathroom",
            "the pool",
            "the lobby",
        ],
        "pos": [
            "was spotless",
            "was better than the pictures",
            "made the whole trip",
            "was quiet and comfortable",
            "was a lovely surprise",
        ],
        "neg": [
            "was dirty and smelled of smoke",
            "was nothing like the pictures",
            "ruined the trip",
            "was noisy all night",
            "was a huge disappointment",
        ],
        "not_neg": [
            "was not bad for the price",
            "was not as small as I feared",
            "never felt crowded",
        ],
        "not_pos": ["was not clean", "was not worth the price", "was not what we booked"],
    },
}

# Groups that can meet in a contrast sentence ("X was poor, but Y was great").
PAIRS = [
    ("film", "film_parts"),
    ("film_parts", "film"),
    ("food", "service"),
    ("service", "food"),
    ("hotel", "hotel"),
    ("film_parts", "film_parts"),
    ("food", "food"),
]

OPENERS = [
    "Honestly,",
    "To be fair,",
    "In the end,",
    "I have to say",
    "Overall,",
    "For what it's worth,",
    "After all the hype,",
    "Against my expectations,",
    "Sadly,",
    "Happily,",
]
# Openers that only fit one sentiment.
OPENER_LABEL = {"Sadly,": 0, "Happily,": 1, "Against my expectations,": None}

CLOSERS = {
    1: {
        "film": ["Go and see it.", "Highly recommended.", "I would watch it again tomorrow."],
        "film_parts": ["Go and see it.", "Highly recommended."],
        "food": [
            "We will be back.",
            "Five stars from our table.",
            "Order it, you will not regret it.",
        ],
        "service": ["We will be back.", "Five stars from our table."],
        "gadget": ["Highly recommended.", "I would buy it again.", "Five stars."],
        "appliance": ["I would buy it again.", "Five stars.", "Worth it."],
        "furniture": ["I would buy it again.", "Worth it."],
        "book": ["Read it.", "I have already bought copies for friends."],
        "hotel": ["We would stay again.", "Book it."],
    },
    0: {
        "film": ["Skip it.", "Save your money.", "Wait for it to show up for free."],
        "film_parts": ["Skip it.", "What a shame."],
        "food": ["We will not be going back.", "Avoid.", "Eat somewhere else."],
        "service": ["We will not be going back.", "Avoid."],
        "gadget": ["I sent it back.", "Save your money.", "One star."],
        "appliance": ["I sent it back.", "Save your money.", "One star."],
        "furniture": ["I sent it back.", "One star."],
        "book": ["Life is too short.", "I gave up on it."],
        "hotel": ["Stay somewhere else.", "Never again."],
    },
}

# Whole sentences that do not fit the patterns above.
STANDALONE = {
    1: [
        "I expected very little and was won over completely.",
        "Not a single dull moment from start to finish.",
        "I wanted to hate it, and I just couldn't.",
        "It is hard to find anything wrong with it.",
        "I was skeptical at first, but it proved me wrong.",
        "Everything about the evening was just right.",
        "My only complaint is that it ended too soon.",
        "I cannot remember the last time I enjoyed a meal this much.",
        "It does one thing and does it brilliantly.",
        "Cheap, cheerful and far better than it has any right to be.",
        "The kids loved it and, to my surprise, so did I.",
        "No frills, no fuss, just very good work.",
        "I would not change a thing.",
        "Nothing fancy, but it never lets me down.",
        "You would never guess it was made on such a small budget.",
        "I keep recommending it to everyone I know.",
        "Not perfect, but easily the best of its kind.",
        "It arrived early and works like a charm.",
        "Every bite was better than the last.",
        "The second half is even better than the first.",
        "I laughed, I cried, and I bought a copy for my sister.",
        "It fixed a problem I have had for years.",
        "There is nothing to dislike here.",
        "Small place, big flavors, kind people.",
        "Worth every minute and every penny.",
    ],
    0: [
        "I wanted to love it, but it let me down at every turn.",
        "Not a single scene worked for me.",
        "I could not wait for it to be over.",
        "It is hard to find anything good to say about it.",
        "The photos were the best part, and that is not a compliment.",
        "Everything that could go wrong, did.",
        "My only regret is paying for it.",
        "I cannot remember the last time a meal made me this angry.",
        "It tries to do everything and does none of it well.",
        "Expensive, slow and somehow still disappointing.",
        "Even the kids were bored, and they like everything.",
        "All style, no substance.",
        "I would not wish it on anyone.",
        "Looks nice, but it never works when you need it.",
        "You can tell nobody cared while making it.",
        "I keep warning everyone I know to stay away.",
        "Not terrible, but nowhere near worth the price.",
        "It arrived late and broken, and support never answered.",
        "Every bite was worse than the last.",
        "The second half is even worse than the first.",
        "I fell asleep twice and did not miss anything.",
        "It created more problems than it solved.",
        "There is nothing to like here.",
        "Big prices, small portions, cold welcome.",
        "A waste of an evening and of good money.",
    ],
}


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def clause(rng: random.Random, group: str, label: int) -> tuple[str, str]:
    """(subject, predicate) with the given sentiment; about 30% are negations."""
    g = GROUPS[group]
    negated = rng.random() < 0.3
    if label == 1:
        pool = g["not_neg"] if negated else g["pos"]
    else:
        pool = g["not_pos"] if negated else g["neg"]
    return rng.choice(g["subjects"]), rng.choice(pool)


def sentence(rng: random.Random, label: int) -> str:
    kind = rng.random()
    if kind < 0.08:
        return rng.choice(STANDALONE[label])
    if kind < 0.28:
        a, b = rng.choice(PAIRS)
        s1, p1 = clause(rng, a, 1 - label)
        s2, p2 = clause(rng, b, label)
        while s2 == s1:
            s2 = rng.choice(GROUPS[b]["subjects"])
        if rng.random() < 0.6:
            return f"{cap(s1)} {p1}, but {s2} {p2}."
        return f"Although {s1} {p1}, {s2} {p2}."
    group = rng.choice(list(GROUPS))
    s, p = clause(rng, group, label)
    text = f"{cap(s)} {p}."
    r = rng.random()
    if r < 0.25:
        opener = rng.choice(OPENERS)
        fits = OPENER_LABEL.get(opener, label)
        if fits is None or fits == label:
            text = f"{opener} {s} {p}."
    elif r < 0.5:
        text = f"{text} {rng.choice(CLOSERS[label][group])}"
    return text


def build() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    rng = random.Random(SEED)
    need = TRAIN_PER_CLASS + DEV_PER_CLASS
    seen: set[str] = set()
    per_label: dict[int, list[str]] = {0: [], 1: []}
    while min(len(v) for v in per_label.values()) < need:
        label = 0 if len(per_label[0]) < len(per_label[1]) else 1
        text = sentence(rng, label)
        key = " ".join(text.lower().split())
        if key in seen:
            continue
        seen.add(key)
        per_label[label].append(text)
    train: list[tuple[str, int]] = []
    dev: list[tuple[str, int]] = []
    for label, texts in per_label.items():
        train += [(t, label) for t in texts[:TRAIN_PER_CLASS]]
        dev += [(t, label) for t in texts[TRAIN_PER_CLASS:need]]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def write(path: Path, rows: list[tuple[str, int]]) -> None:
    lines = ["sentence\tlabel"] + [f"{text}\t{label}" for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    here = Path(__file__).resolve().parent
    train, dev = build()
    write(here / "train.tsv", train)
    write(here / "dev.tsv", dev)
    print(f"wrote {len(train)} train and {len(dev)} dev rows to {here}")


if __name__ == "__main__":
    main()
