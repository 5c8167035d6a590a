"""Reads WordNet 3.0's database files (Debian package wordnet-base, /usr/share/wordnet).

The format is wndb(5WN): one synset a line in data.{noun,verb,adj,adv},

    offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [ptr ...] [frames] | gloss

with w_cnt in hex, p_cnt in decimal, each pointer `symbol offset pos source/target`, and the gloss
a definition followed by `; "example"` quotations. Lines starting with two spaces are the licence.
Standard library only; every list is returned in file order, so callers that shuffle with a
seeded random.Random get the same result on every machine.
"""

import os
import re

WORDNET_DIR = "/usr/share/wordnet"

# lexnames(5WN): the lexicographer file of each lex_filenum (the "supersense").
LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
]

POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_QUOTE = re.compile(r'"([^"]*)"')


class Synset:
    __slots__ = ("key", "pos", "lexname", "words", "hypernyms", "definition", "examples")

    def __init__(self, key, pos, lexname, words, hypernyms, definition, examples):
        self.key = key                # "n:02084071": unique across the four files
        self.pos = pos                # n, v, a (satellites s are folded into a), r
        self.lexname = lexname        # e.g. noun.animal
        self.words = words            # lemmas, underscores as spaces, in file order
        self.hypernyms = hypernyms    # keys of @ (hypernym) and @i (instance) pointers
        self.definition = definition  # the gloss without its examples
        self.examples = examples      # the quoted example sentences


def split_gloss(gloss):
    """(definition, [examples]): the examples are the double-quoted parts after the first ';'."""
    gloss = gloss.strip()
    semi = gloss.find('; "')
    if semi < 0:
        return gloss.rstrip(";").strip(), []
    definition = gloss[:semi].strip()
    examples = [e.strip() for e in _QUOTE.findall(gloss[semi:]) if e.strip()]
    return definition, examples


def parse_line(line, pos_file):
    head, _, gloss = line.partition(" | ")
    f = head.split()
    offset, lex_filenum, ss_type = f[0], int(f[1]), f[2]
    pos = "a" if ss_type == "s" else ss_type
    w_cnt = int(f[3], 16)
    words = [f[4 + 2 * i].replace("_", " ") for i in range(w_cnt)]
    # Adjectives may carry a syntactic marker, e.g. "galore(ip)".
    words = [re.sub(r"\((a|p|ip)\)$", "", w) for w in words]
    i = 4 + 2 * w_cnt
    p_cnt = int(f[i])
    hypernyms = []
    for j in range(p_cnt):
        symbol, target, target_pos = f[i + 1 + 4 * j], f[i + 2 + 4 * j], f[i + 3 + 4 * j]
        if symbol in ("@", "@i"):
            hypernyms.append(f"{'a' if target_pos == 's' else target_pos}:{target}")
    definition, examples = split_gloss(gloss)
    return Synset(f"{pos}:{offset}", pos, LEXNAMES[lex_filenum], words, hypernyms, definition, examples)


def read_synsets(wordnet_dir=WORDNET_DIR, parts=("n", "v", "a", "r")):
    """All synsets of the given parts of speech, in file order (noun, verb, adj, adv)."""
    out = []
    for pos in parts:
        path = os.path.join(wordnet_dir, "data." + POS_FILES[pos])
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("  ") or not line.strip():
                    continue  # the licence header
                out.append(parse_line(line.rstrip("\n"), pos))
    return out


def ancestors(key, by_key):
    """Every transitive hypernym of `key` (not `key` itself)."""
    seen, stack = set(), list(by_key[key].hypernyms)
    while stack:
        k = stack.pop()
        if k in seen or k not in by_key:
            continue
        seen.add(k)
        stack.extend(by_key[k].hypernyms)
    return seen


def noun_tag_counts(wordnet_dir=WORDNET_DIR):
    """lemma (spaces, lower case) -> how often its noun senses are tagged in the semantic
    concordance (cntlist.rev: `lemma%1:lex_filenum:... sense_number tag_cnt`): a frequency."""
    out = {}
    with open(os.path.join(wordnet_dir, "cntlist.rev"), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 3:
                continue
            lemma, _, rest = parts[0].partition("%")
            if rest.startswith("1:"):
                key = lemma.replace("_", " ").lower()
                out[key] = out.get(key, 0) + int(parts[2])
    return out
