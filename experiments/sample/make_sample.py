"""Write the bundled sample: small synthetic GLUE-layout files for the smoke run and the demo.

The sentences are made up from a fixed vocabulary (no GLUE text is copied) so that the tasks are
learnable by a tiny model in seconds: SST-2 (sentiment from positive/negative words), MRPC
(paraphrase = same content words, reordered), STS-B (similarity = shared content words, 0-5).
Run `python experiments/sample/make_sample.py` to regenerate; the output is deterministic.
"""

from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).resolve().parent / "glue"
POSITIVE = "good great funny brilliant charming wonderful excellent beautiful fun nice".split()
NEGATIVE = "bad boring dull stupid awful terrible horrible ugly flat poor".split()
NOUNS = "film movie story plot script acting performance scene music drama comedy".split()
FILLER = "the a this that very too so really just also".split()
SUBJECTS = "john mary the man the woman the company the government the director".split(" ")
VERBS = "said made found gave took saw played wrote read sang".split()
OBJECTS = "book song game car house market price story film music".split()


def sentiment_sentence(rng: random.Random, positive: bool) -> str:
    words = rng.sample(NOUNS, 1) + rng.sample(FILLER, 2)
    words += rng.sample(POSITIVE if positive else NEGATIVE, rng.randint(1, 2))
    if rng.random() < 0.3:  # a distractor of the other polarity keeps it from being trivial
        words += rng.sample(NEGATIVE if positive else POSITIVE, 1)
    rng.shuffle(words)
    return " ".join(words)


def clause(rng: random.Random) -> list[str]:
    return [rng.choice(SUBJECTS), rng.choice(VERBS), "the", rng.choice(OBJECTS)]


def write_tsv(path: Path, header: list[str] | None, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def sst2(rng: random.Random, n: int, test: bool = False) -> list[list[str]]:
    rows = []
    for i in range(n):
        label = rng.random() < 0.5
        text = sentiment_sentence(rng, label)
        rows.append([str(i), text] if test else [text, str(int(label))])
    return rows


def mrpc(rng: random.Random, n: int) -> list[list[str]]:
    rows = []
    for i in range(n):
        a = clause(rng) + ["and"] + clause(rng)
        same = rng.random() < 0.6
        b = a[5:] + ["and"] + a[:4] if same else clause(rng) + ["and"] + a[5:]
        rows.append([str(int(same)), str(2 * i), str(2 * i + 1), " ".join(a), " ".join(b)])
    return rows


def stsb(rng: random.Random, n: int) -> list[list[str]]:
    rows = []
    for i in range(n):
        a = rng.sample(NOUNS + OBJECTS, 5)
        shared = rng.randint(0, 5)
        b = a[:shared] + rng.sample([w for w in NOUNS + OBJECTS if w not in a], 5 - shared)
        rng.shuffle(b)
        score = f"{shared:.3f}"
        rows.append(
            [
                "main-captions",
                "MSRvid",
                "2012test",
                f"{i:04d}",
                "none",
                "none",
                " ".join(a),
                " ".join(b),
                score,
            ]
        )
    return rows


def main() -> None:
    rng = random.Random(20221011)
    write_tsv(HERE / "SST-2" / "train.tsv", ["sentence", "label"], sst2(rng, 240))
    write_tsv(HERE / "SST-2" / "dev.tsv", ["sentence", "label"], sst2(rng, 80))
    write_tsv(HERE / "SST-2" / "test.tsv", ["index", "sentence"], sst2(rng, 20, test=True))
    mrpc_header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    write_tsv(HERE / "MRPC" / "train.tsv", mrpc_header, mrpc(rng, 200))
    write_tsv(HERE / "MRPC" / "dev.tsv", mrpc_header, mrpc(rng, 64))
    sts_header = [
        "index",
        "genre",
        "filename",
        "year",
        "old_index",
        "source1",
        "source2",
        "sentence1",
        "sentence2",
        "score",
    ]
    write_tsv(
        HERE / "STS-B" / "train.tsv",
        sts_header,
        [[str(i), *r[:8], r[8]] for i, r in enumerate(stsb(rng, 200))],
    )
    write_tsv(
        HERE / "STS-B" / "dev.tsv",
        sts_header,
        [[str(i), *r[:8], r[8]] for i, r in enumerate(stsb(rng, 64))],
    )


if __name__ == "__main__":
    main()
