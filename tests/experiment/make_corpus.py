#!/usr/bin/python3
"""Writes the pretraining corpus: English text from Debian packages, one document a line.

    /usr/bin/python3 tests/experiment/make_corpus.py --out DIR [--max-chars N] [--seed S]

Sources (README.md lists packages, versions and licences):
  wordnet  every synset of WordNet 3.0 (wordnet-base): "lemma, synonym (noun): definition.
           "example." "example.""
  gcide    the GCIDE dictionary (dict-gcide): each entry's headword, part of speech and
           senses, markup removed ([1913 Webster] tags, pronunciations, {cross-reference} braces)
  fortunes every fortune of fortunes and fortunes-min (/usr/share/games/fortunes, without
           ascii-art and translate-me, which are pictures and non-English text)

Writes DIR/train.txt and DIR/heldout.txt (UTF-8, one document a line, no line breaks inside
a document, each at most --max-doc-chars, cut at a word) and DIR/corpus.json (counts per
source and split). Deterministic: a document is held out when the sha256 of its source and
its text falls below --heldout-fraction, whatever else is chosen, so the held-out set never
depends on --max-chars; the training documents are a seeded shuffle cut to --max-chars.
"""

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wordnet  # noqa: E402

GCIDE = "/usr/share/dictd/gcide.dict.dz"
FORTUNES_DIR = "/usr/share/games/fortunes"
FORTUNES_SKIP = {"ascii-art", "translate-me"}
POS_WORDS = {"n": "noun", "v": "verb", "a": "adjective", "r": "adverb"}

_SPACE = re.compile(r"\s+")


def clean(text):
    return _SPACE.sub(" ", text).strip()


def cut(text, limit):
    """`text` cut to at most `limit` characters at a word boundary."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit // 2 else head


def wordnet_docs(wordnet_dir):
    for s in wordnet.read_synsets(wordnet_dir):
        text = f"{', '.join(s.words)} ({POS_WORDS[s.pos]}): {s.definition}."
        if s.examples:
            text += " " + " ".join(f'"{e}."' if e[-1] not in ".!?" else f'"{e}"' for e in s.examples)
        yield clean(text)


_GCIDE_HEAD = re.compile(r"^(\S[^\\]*?) \\[^\\]*\\,?\s*(.*)$")
_TAG = re.compile(r"\[[^\]]*\]")


def gcide_docs(path):
    """Entries of the dictd database: blank-line separated blocks, an entry starts with
    `Headword \\Pro*nun"ci*a`tion\\, pos. [etymology]`."""
    with gzip.open(path) as f:  # dictzip is gzip with a random-access table in the header
        data = f.read().decode("utf-8", "replace")
    entry = []

    def flush():
        if entry:
            # Source and usage tags ([1913 Webster], [Obs.], etymologies) are markup, not prose.
            text = _TAG.sub(" ", " ".join(entry))
            text = text.replace("{", "").replace("}", "").replace("--", " -- ")
            text = clean(text)
            if len(text) > 20:
                yield text

    for block in data.split("\n\n"):
        lines = block.split("\n")
        first = lines[0] if lines else ""
        m = _GCIDE_HEAD.match(first)
        if m:
            yield from flush()
            entry = [f"{m.group(1)}, {m.group(2)}"] if m.group(2) else [m.group(1) + "."]
            rest = lines[1:]
        else:
            rest = lines
        if not entry:
            continue  # the database's own header entries
        entry.append("\n".join(rest))
    yield from flush()


def fortune_docs(directory):
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name in FORTUNES_SKIP or "." in name or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for block in f.read().split("\n%\n"):
                text = clean(block.strip("%\n"))
                if len(text) > 10:
                    yield text


def held_out(source, text, fraction):
    digest = hashlib.sha256(f"{source}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2.0 ** 64


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--max-chars", type=int, default=0,
                   help="training documents: stop after this many characters (0: all)")
    p.add_argument("--max-heldout-docs", type=int, default=1000)
    p.add_argument("--heldout-fraction", type=float, default=0.01)
    p.add_argument("--max-doc-chars", type=int, default=600)
    p.add_argument("--sources", default="wordnet,gcide,fortunes")
    p.add_argument("--wordnet-dir", default=wordnet.WORDNET_DIR)
    p.add_argument("--gcide", default=GCIDE)
    p.add_argument("--fortunes-dir", default=FORTUNES_DIR)
    args = p.parse_args(argv)

    readers = {"wordnet": lambda: wordnet_docs(args.wordnet_dir),
               "gcide": lambda: gcide_docs(args.gcide),
               "fortunes": lambda: fortune_docs(args.fortunes_dir)}
    sources = args.sources.split(",")
    for s in sources:
        if s not in readers:
            p.error(f"--sources: unknown source {s!r} (known: {', '.join(readers)})")

    train, heldout, seen = [], [], set()
    for source in sources:
        for text in readers[source]():
            text = cut(text, args.max_doc_chars)
            if text in seen:
                continue  # duplicates (GCIDE repeats entries) would leak into the held-out set
            seen.add(text)
            (heldout if held_out(source, text, args.heldout_fraction) else train).append((source, text))

    rng = random.Random(args.seed)
    rng.shuffle(train)
    rng.shuffle(heldout)
    heldout = heldout[:args.max_heldout_docs]
    if args.max_chars > 0:
        kept, total = [], 0
        for doc in train:
            if total >= args.max_chars:
                break
            kept.append(doc)
            total += len(doc[1])
        train = kept

    os.makedirs(args.out, exist_ok=True)
    stats = {"seed": args.seed, "max_chars": args.max_chars, "sources": sources, "splits": {}}
    for split, docs in (("train", train), ("heldout", heldout)):
        with open(os.path.join(args.out, split + ".txt"), "w", encoding="utf-8", newline="\n") as f:
            for _, text in docs:
                f.write(text + "\n")
        per = {}
        for source, text in docs:
            d = per.setdefault(source, {"docs": 0, "chars": 0})
            d["docs"] += 1
            d["chars"] += len(text)
        stats["splits"][split] = per
    with open(os.path.join(args.out, "corpus.json"), "w") as f:
        f.write(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    print(json.dumps(stats["splits"], sort_keys=True))


if __name__ == "__main__":
    main()
