#!/usr/bin/python3
"""Writes the experiment's three task families from WordNet 3.0, with train/dev/test splits.

    /usr/bin/python3 tests/experiment/make_tasks.py --out DIR [--base-model DIR] [--seed 0]
        [--supersense-labels 12 --supersense-train 1200 --supersense-eval 240]
        [--mc-train 1000 --mc-eval 200] [--math-train 1000 --math-eval 200 --math-max-operand 40]

Writes DIR/<task>/{train,dev,test}.jsonl for task in supersense, hypernym_mc, arithmetic, and
DIR/tasks.json (sizes, label set, seed). With --base-model, also DIR/specs/<task>-{dev,test}.yaml:
tests/experiment/specs/<task>.yaml with @BASE_MODEL@, @DATA@ and @EVAL@ filled in (eval on dev
to pick the learning rate, on test for the final seeds). Same arguments, same bytes.

  supersense   {"text": gloss, "label": "noun.animal"}: the lexicographer file of a noun
               synset from its definition; the --supersense-labels most frequent noun files
               (noun.Tops excluded), the same number of synsets per label in each split
               (balanced), no synset in two splits.
  hypernym_mc  {"prompt": "A dog is a kind of", "choices": [4 lemmas], "answer": i}: the
               true choice is the first lemma of the word's direct hypernym; the three
               distractors are other hypernym lemmas that are neither an ancestor of any noun
               sense of the word nor share a lemma with the answer. Words are single-sense,
               lower-case nouns, no word in two splits. Choices have no leading space: the
               Llama 2 tokenizer (SentencePiece) starts every encoded completion with a word
               boundary itself.
  arithmetic   {"prompt": "...", "completion": "12"}: templated one-step word problems
               (+, -, x) over WordNet nouns, exact match; no (a, op, b) fact in two splits.
"""

import argparse
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wordnet  # noqa: E402

TASKS = ("supersense", "hypernym_mc", "arithmetic")
SPLITS = ("train", "dev", "test")

# Given names for the word problems (common English first names, not from WordNet, whose
# person names are mostly surnames of famous people).
NAMES = ["Alice", "Ben", "Carla", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack",
         "Kate", "Leo", "Maria", "Nick", "Olga", "Paul", "Rosa", "Sam", "Tina", "Victor"]


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------ supersense

def supersense(nouns, rng, num_labels, n_train, n_eval):
    by_label = {}
    for s in nouns:
        if s.lexname == "noun.Tops" or len(s.definition) < 10:
            continue
        by_label.setdefault(s.lexname, []).append(s)
    # Most frequent first; ties by name so that the order is total.
    labels = sorted(by_label, key=lambda k: (-len(by_label[k]), k))[:num_labels]
    labels.sort()
    per = {split: n // len(labels) for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval))}
    splits = {split: [] for split in SPLITS}
    for label in labels:
        pool = list(by_label[label])
        rng.shuffle(pool)
        need = sum(per.values())
        if len(pool) < need:
            raise SystemExit(f"supersense: {label} has {len(pool)} synsets, {need} needed")
        start = 0
        for split in SPLITS:
            for s in pool[start:start + per[split]]:
                splits[split].append({"text": s.definition, "label": label, "id": s.key})
            start += per[split]
    for split in SPLITS:
        rng.shuffle(splits[split])
    return splits, labels


# ------------------------------------------------------------------------------ multiple choice

def article(word):
    return "An" if word[0].lower() in "aeiou" else "A"


LEMMA = re.compile(r"[a-z][a-z' -]*")  # lower case: no capitalisation cue among the choices


def hypernym_mc(nouns, rng, n_train, n_eval):
    by_key = {s.key: s for s in nouns}
    senses = {}  # lower-case lemma -> noun synsets that have it
    for s in nouns:
        for w in s.words:
            senses.setdefault(w.lower(), []).append(s.key)
    # Candidate items: a single-sense lower-case word (1-2 tokens of text) with one hypernym.
    items = []
    for s in nouns:
        word = s.words[0]
        if (word != word.lower() or not re.fullmatch(r"[a-z]+( [a-z]+)?", word)
                or len(senses[word]) != 1 or len(s.hypernyms) != 1 or s.hypernyms[0] not in by_key):
            continue
        answer = by_key[s.hypernyms[0]].words[0]
        # "somatic delusion" -> "delusion" would be answered by copying a word of the prompt.
        if (not LEMMA.fullmatch(answer) or set(answer.split()) & set(word.split())
                or answer in word or word in answer):
            continue
        items.append((word, s.key, answer))
    # Distractors come from the same pool as the answers (concepts that are some noun's
    # hypernym), so that "looks like a category name" does not give the answer away.
    pool = sorted({by_key[s.hypernyms[0]].words[0] for s in nouns
                   if s.hypernyms and s.hypernyms[0] in by_key and len(s.hypernyms) == 1})
    pool = [p for p in pool if LEMMA.fullmatch(p)]
    rng.shuffle(items)
    need = n_train + 2 * n_eval
    if len(items) < need:
        raise SystemExit(f"hypernym_mc: {len(items)} candidate words, {need} needed")
    rows = []
    for word, key, answer in items[:need]:
        # Every lemma of every ancestor of every noun sense of the word is a true "kind of".
        true_lemmas = set()
        for k in senses[word]:
            for a in wordnet.ancestors(k, by_key) | {k}:
                true_lemmas.update(w.lower() for w in by_key[a].words)
        distractors = []
        while len(distractors) < 3:
            d = pool[rng.randrange(len(pool))]
            if d.lower() in true_lemmas or d.lower() == word or d in distractors:
                continue
            distractors.append(d)
        choices = distractors + [answer]
        rng.shuffle(choices)
        rows.append({"prompt": f"{article(word)} {word} is a kind of", "choices": choices,
                     "answer": choices.index(answer), "id": key})
    return {"train": rows[:n_train], "dev": rows[n_train:n_train + n_eval],
            "test": rows[n_train + n_eval:]}


# ------------------------------------------------------------------------------ arithmetic

def read_plural_exceptions(wordnet_dir):
    """noun.exc maps irregular plural -> singular; we need singular -> plural."""
    out = {}
    with open(os.path.join(wordnet_dir, "noun.exc"), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1] not in out:
                out[parts[1]] = parts[0]
    return out


def plural(word, exceptions):
    if word in exceptions:
        return exceptions[word]
    if re.search(r"(s|x|z|ch|sh)$", word):
        return word + "es"
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    return word + "s"


MIN_TAG_COUNT = 3
TEMPLATES = {
    "+": ["{name} has {a_things}. {name} gets {b} more. How many {things} does {name} have now?",
          "There are {a_things} in a box and {b_things} on the table. How many {things} are there in all?"],
    "-": ["{name} has {a_things} and gives {b} away. How many {things} does {name} have left?",
          "A shop had {a_things}. It sold {b}. How many {things} does the shop have now?"],
    "*": ["{name} has {a} bags with {b_things} in each bag. How many {things} does {name} have?",
          "There are {a} rows with {b_things} in each row. How many {things} are there?"],
}


def arithmetic(nouns, rng, n_train, n_eval, max_operand, wordnet_dir):
    exceptions = read_plural_exceptions(wordnet_dir)
    counts = wordnet.noun_tag_counts(wordnet_dir)
    # Countable everyday things: concrete noun files, one plain word, seen at least
    # MIN_TAG_COUNT times in the semantic concordance (so "apple", not "cushaw").
    things = sorted({s.words[0] for s in nouns
                     if s.lexname in ("noun.artifact", "noun.food", "noun.animal", "noun.plant")
                     and re.fullmatch(r"[a-z]{3,10}", s.words[0])
                     and counts.get(s.words[0], 0) >= MIN_TAG_COUNT})
    facts = [("+", a, b) for a in range(1, max_operand + 1) for b in range(1, max_operand + 1)]
    facts += [("-", a, b) for a in range(1, max_operand + 1) for b in range(1, a + 1)]
    facts += [("*", a, b) for a in range(2, 13) for b in range(2, 13)]
    rng.shuffle(facts)
    need = n_train + 2 * n_eval
    if len(facts) < need:
        raise SystemExit(f"arithmetic: {len(facts)} facts with --math-max-operand {max_operand}, {need} needed")
    rows = []
    for op, a, b in facts[:need]:
        thing = things[rng.randrange(len(things))]
        template = TEMPLATES[op][rng.randrange(len(TEMPLATES[op]))]
        many = plural(thing, exceptions)
        prompt = template.format(name=NAMES[rng.randrange(len(NAMES))], things=many,
                                 a_things=f"{a} {thing if a == 1 else many}",
                                 b_things=f"{b} {thing if b == 1 else many}", a=a, b=b) + " Answer:"
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        rows.append({"prompt": prompt, "completion": str(value), "id": f"{a}{op}{b}"})
    return {"train": rows[:n_train], "dev": rows[n_train:n_train + n_eval],
            "test": rows[n_train + n_eval:]}


# ------------------------------------------------------------------------------ specs

def render_specs(out, base_model):
    for task in TASKS:
        with open(os.path.join(HERE, "specs", task + ".yaml"), encoding="utf-8") as f:
            template = f.read()
        for split in ("dev", "test"):
            text = (template.replace("@BASE_MODEL@", os.path.abspath(base_model))
                    .replace("@DATA@", os.path.abspath(os.path.join(out, task)))
                    .replace("@EVAL@", split))
            path = os.path.join(out, "specs", f"{task}-{split}.yaml")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-model", help="model dir to write into DIR/specs/*.yaml")
    p.add_argument("--wordnet-dir", default=wordnet.WORDNET_DIR)
    p.add_argument("--supersense-labels", type=int, default=12)
    p.add_argument("--supersense-train", type=int, default=1200)
    p.add_argument("--supersense-eval", type=int, default=240, help="dev and test size each")
    p.add_argument("--mc-train", type=int, default=1000)
    p.add_argument("--mc-eval", type=int, default=200)
    p.add_argument("--math-train", type=int, default=1000)
    p.add_argument("--math-eval", type=int, default=200)
    p.add_argument("--math-max-operand", type=int, default=40)
    args = p.parse_args(argv)
    if args.supersense_labels < 2:
        p.error("--supersense-labels must be >= 2")
    for flag in ("supersense_train", "supersense_eval", "mc_train", "mc_eval", "math_train", "math_eval"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")

    nouns = wordnet.read_synsets(args.wordnet_dir, parts=("n",))
    # One generator per task, seeded from --seed and the task's name, so that changing one
    # task's sizes does not change the others' files.
    rngs = {t: random.Random(f"{args.seed}:{t}") for t in TASKS}
    ss, labels = supersense(nouns, rngs["supersense"], args.supersense_labels,
                            args.supersense_train, args.supersense_eval)
    data = {
        "supersense": ss,
        "hypernym_mc": hypernym_mc(nouns, rngs["hypernym_mc"], args.mc_train, args.mc_eval),
        "arithmetic": arithmetic(nouns, rngs["arithmetic"], args.math_train, args.math_eval,
                                 args.math_max_operand, args.wordnet_dir),
    }
    summary = {"seed": args.seed, "supersense_labels": labels, "sizes": {}}
    for task, splits in data.items():
        for split, rows in splits.items():
            write_jsonl(os.path.join(args.out, task, split + ".jsonl"), rows)
        summary["sizes"][task] = {split: len(rows) for split, rows in splits.items()}
    with open(os.path.join(args.out, "tasks.json"), "w") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if args.base_model:
        render_specs(args.out, args.base_model)
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
