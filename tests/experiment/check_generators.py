#!/usr/bin/python3
"""Checks make_tasks.py and make_corpus.py (ctest experiment_generators).

    /usr/bin/python3 tests/experiment/check_generators.py

Same seed → byte-identical files; another seed → different files; no synset, word or
arithmetic fact in two splits; labels from the chosen set, balanced; four distinct choices, the
answer index in range and pointing at the word's hypernym, no distractor that is a true "kind
of"; math answers that are the value of the fact; rendered specs with every placeholder filled.
The corpus: deterministic, held-out documents not in train, one document a line.
Exit 77 (ctest: skipped) when wordnet-base is missing, unless LORATRF_REQUIRE_REFERENCE is set.
"""

import filecmp
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wordnet  # noqa: E402

FAILURES = []


def check(cond, message):
    if not cond:
        FAILURES.append(message)


def read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def run(script, *args):
    subprocess.run([sys.executable, os.path.join(HERE, script), *args], check=True,
                   stdout=subprocess.DEVNULL)


def same_tree(a, b, ignore=()):
    cmp = filecmp.dircmp(a, b, ignore=list(ignore))
    stack, ok = [cmp], True
    while stack:
        c = stack.pop()
        if c.left_only or c.right_only:
            return False
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        ok = ok and not mismatch and not errors
        stack.extend(c.subdirs.values())
    return ok


def check_tasks(tmp):
    sizes = ["--supersense-labels", "6", "--supersense-train", "120", "--supersense-eval", "30",
             "--mc-train", "100", "--mc-eval", "30", "--math-train", "100", "--math-eval", "30"]
    model = os.path.join(tmp, "some model")
    a, b, c = (os.path.join(tmp, n) for n in ("a", "b", "c"))
    run("make_tasks.py", "--out", a, "--base-model", model, *sizes)
    run("make_tasks.py", "--out", b, "--base-model", model, *sizes)
    run("make_tasks.py", "--out", c, "--base-model", model, "--seed", "1", *sizes)
    # specs/ differ by design: they name their own output directory.
    check(same_tree(a, b, ignore=["specs"]), "make_tasks.py: the same seed wrote different files")
    check(not filecmp.cmp(os.path.join(a, "hypernym_mc", "train.jsonl"),
                          os.path.join(c, "hypernym_mc", "train.jsonl"), shallow=False),
          "make_tasks.py: --seed 1 wrote the same hypernym_mc/train.jsonl as --seed 0")

    summary = json.load(open(os.path.join(a, "tasks.json")))
    data = {t: {s: read(os.path.join(a, t, s + ".jsonl")) for s in ("train", "dev", "test")}
            for t in ("supersense", "hypernym_mc", "arithmetic")}
    expected = {"supersense": (120, 30), "hypernym_mc": (100, 30), "arithmetic": (100, 30)}
    for task, (n_train, n_eval) in expected.items():
        got = {s: len(rows) for s, rows in data[task].items()}
        check(got == {"train": n_train, "dev": n_eval, "test": n_eval}, f"{task}: split sizes {got}")
        ids = [set(r["id"] for r in rows) for rows in data[task].values()]
        check(all(len(ids[i] & ids[j]) == 0 for i in range(3) for j in range(i + 1, 3)),
              f"{task}: an item id is in two splits")
        check(sum(len(s) for s in ids) == sum(got.values()), f"{task}: an item id repeats within a split")

    nouns = wordnet.read_synsets(parts=("n",))
    by_key = {s.key: s for s in nouns}

    labels = summary["supersense_labels"]
    check(len(labels) == 6 and "noun.Tops" not in labels, f"supersense labels {labels}")
    for split, rows in data["supersense"].items():
        counts = {}
        for r in rows:
            check(r["label"] in labels, f"supersense {split}: label {r['label']} not in the set")
            check(by_key[r["id"]].lexname == r["label"] and by_key[r["id"]].definition == r["text"],
                  f"supersense {split}: {r['id']} is not its synset's gloss and lexname")
            counts[r["label"]] = counts.get(r["label"], 0) + 1
        check(len(set(counts.values())) == 1, f"supersense {split}: unbalanced {counts}")

    words = {}
    for split, rows in data["hypernym_mc"].items():
        for r in rows:
            choices, answer = r["choices"], r["answer"]
            check(len(choices) == 4 and len(set(choices)) == 4, f"mc: choices {choices}")
            check(isinstance(answer, int) and 0 <= answer < 4, f"mc: answer {answer}")
            s = by_key[r["id"]]
            check(choices[answer] == by_key[s.hypernyms[0]].words[0], f"mc: {r} answer is not the hypernym")
            word = r["prompt"].split(" ", 1)[1].rsplit(" is a kind of", 1)[0]
            words.setdefault(word, set()).add(split)
            true = {w.lower() for k in wordnet.ancestors(s.key, by_key) for w in by_key[k].words}
            for i, choice in enumerate(choices):
                check(i == answer or choice.lower() not in true, f"mc: distractor {choice!r} is a hypernym of {word!r}")
    check(all(len(v) == 1 for v in words.values()), "mc: a word is in two splits")

    for split, rows in data["arithmetic"].items():
        for r in rows:
            x, op, y = re.fullmatch(r"(\d+)([-+*])(\d+)", r["id"]).groups()
            value = {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y)}[op]
            check(r["completion"] == str(value) and x in r["prompt"] and y in r["prompt"],
                  f"arithmetic: {r}")
            check(r["prompt"].endswith(" Answer:") and not r["completion"].startswith(" "),
                  f"arithmetic: prompt/completion form {r}")

    for task in ("supersense", "hypernym_mc", "arithmetic"):
        for split in ("dev", "test"):
            text = open(os.path.join(a, "specs", f"{task}-{split}.yaml")).read()
            check("@BASE_MODEL@" not in text and "@DATA@" not in text and "@EVAL@" not in text,
                  f"specs/{task}-{split}.yaml: a placeholder is left")
            check(os.path.abspath(model) in text and f"/{task}/{split}.jsonl" in text,
                  f"specs/{task}-{split}.yaml: model or eval path missing")


def check_corpus(tmp):
    args = ["--sources", "wordnet", "--max-chars", "200000", "--heldout-fraction", "0.05",
            "--max-heldout-docs", "100"]
    a, b = os.path.join(tmp, "corpus-a"), os.path.join(tmp, "corpus-b")
    run("make_corpus.py", "--out", a, *args)
    run("make_corpus.py", "--out", b, *args)
    check(same_tree(a, b), "make_corpus.py: the same seed wrote different files")
    train = open(os.path.join(a, "train.txt"), encoding="utf-8").read().split("\n")
    heldout = open(os.path.join(a, "heldout.txt"), encoding="utf-8").read().split("\n")
    check(train[-1] == "" and heldout[-1] == "", "corpus: files must end with a newline")
    train, heldout = train[:-1], heldout[:-1]
    check(len(heldout) == 100 and 200000 <= sum(map(len, train)) < 201000,
          f"corpus: {len(heldout)} held-out docs, {sum(map(len, train))} train chars")
    check(not set(train) & set(heldout), "corpus: a held-out document is also in train")
    check(all(d and d == d.strip() and "\r" not in d for d in train + heldout), "corpus: a blank or padded line")


def main():
    if not os.path.isfile(os.path.join(wordnet.WORDNET_DIR, "data.noun")):
        message = f"{wordnet.WORDNET_DIR} is missing: apt-get install wordnet-base"
        if os.environ.get("LORATRF_REQUIRE_REFERENCE"):
            print("FAIL: " + message, file=sys.stderr)
            return 1
        print("SKIP: " + message)
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        check_tasks(tmp)
        check_corpus(tmp)
    for f in FAILURES[:20]:
        print("FAIL: " + f, file=sys.stderr)
    if FAILURES:
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
