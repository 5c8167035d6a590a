#!/usr/bin/env python3
"""Writes small but real tokenizer.json files that exercise Hugging Face tokenizers components
the three real files (llama3, llama2, qwen3) do not use.

    python3 make_synthetic_tokenizers.py OUT_DIR [CORPUS]

CORPUS (default: tests/data/tokenizer/corpus.txt of this repository) supplies the words from
which the vocabularies and BPE merges are built. Stdlib only and deterministic: the same corpus
gives byte-identical files. The vocabularies only have to be plausible, not optimal; the Python
pre-tokenization used here to collect words only approximates the library's, which is fine
because every file is self-consistent (every merge result is in its vocabulary).

Files (all loadable by Tokenizer.fromFile of HF tokenizers 0.22 / @anush008/tokenizers 0.6.0):
  bert-wordpiece.json          BertNormalizer(lowercase, strip_accents null) + BertPreTokenizer
                               + WordPiece + BertProcessing + WordPiece decoder
  bert-cased-stripaccents.json BertNormalizer(cased, strip_accents true) + WordPiece
                               + TemplateProcessing (single and pair)
  metaspace-bpe.json           NFKC, Replace(regex), Strip + Metaspace(prepend_scheme first)
                               + BPE(byte_fallback, unk, merges as "a b" strings)
                               + RobertaProcessing + Metaspace decoder
  whitespace-wordlevel.json    NFD, StripAccents, Lowercase + Whitespace, Digits, Punctuation
                               + WordLevel + TemplateProcessing(BOS) + no decoder
  split-bpe.json               NFKC, Lowercase + Split(String), Split(Regex), ByteLevel
                               + byte-level BPE (merges as pairs) + ByteLevel processor/decoder
  bpe-suffix.json              NFKD + WhitespaceSplit + BPE(end_of_word_suffix "</w>",
                               continuing_subword_prefix "##", unk fused) + BPEDecoder
Added tokens with lstrip/rstrip/single_word/normalized variations appear in bert-wordpiece,
metaspace-bpe, whitespace-wordlevel and split-bpe.
"""
import collections
import heapq
import json
import os
import re
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CORPUS = os.path.join(HERE, "..", "..", "data", "tokenizer", "corpus.txt")


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def read_corpus(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def ranked(counter, min_count=1, limit=None):
    """Items by descending count, then by string, for determinism."""
    items = sorted((kv for kv in counter.items() if kv[1] >= min_count), key=lambda kv: (-kv[1], kv[0]))
    if limit is not None:
        items = items[:limit]
    return [k for k, _ in items]


def added_token(id_, content, special, single_word=False, lstrip=False, rstrip=False, normalized=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


def template(single, pair, specials):
    """single/pair: lists like ["[CLS]", "$A", "[SEP]"] or with ":1" type ids."""
    def piece(p):
        name, _, type_id = p.partition(":")
        type_id = int(type_id) if type_id else 0
        if name.startswith("$"):
            return {"Sequence": {"id": name[1:] or "A", "type_id": type_id}}
        return {"SpecialToken": {"id": name, "type_id": type_id}}
    return {
        "type": "TemplateProcessing",
        "single": [piece(p) for p in single],
        "pair": [piece(p) for p in pair],
        "special_tokens": {name: {"id": name, "ids": [id_], "tokens": [name]} for name, id_ in specials},
    }


def tokenizer_json(added_tokens, normalizer, pre_tokenizer, post_processor, decoder, model):
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
            "normalizer": normalizer, "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor, "decoder": decoder, "model": model}


def write(out_dir, name, obj):
    path = os.path.join(out_dir, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    return path


def train_bpe(word_counts, alphabet, num_merges, join):
    """A tiny BPE trainer. word_counts: {tuple(symbols): count}; alphabet: symbols that may take
    part in merges (others are never merged); join(a, b) gives the merged token string.
    Each step merges the most frequent pair (ties: the smallest pair), left to right in each word.
    Returns (merges as (a, b) pairs, new tokens in creation order)."""
    words = [(list(w), c) for w, c in sorted(word_counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    known = set(alphabet)
    pair_count = collections.Counter()
    pair_words = collections.defaultdict(set)

    def account(idx, sign):
        syms, c = words[idx]
        for a, b in zip(syms, syms[1:]):
            if a in known and b in known:
                pair_count[(a, b)] += sign * c
                if sign > 0:
                    pair_words[(a, b)].add(idx)

    for idx in range(len(words)):
        account(idx, +1)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges, new_tokens = [], []
    while len(merges) < num_merges and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:
            continue                                  # stale entry
        if -neg < 2:
            break
        a, b = pair
        tok = join(a, b)
        merges.append(pair)
        if tok not in known:
            known.add(tok)
            new_tokens.append(tok)
        before = set()
        for idx in sorted(pair_words.pop(pair, ())):
            syms = words[idx][0]
            if not any(x == a and y == b for x, y in zip(syms, syms[1:])):
                continue
            before.update(zip(syms, syms[1:]))
            account(idx, -1)
            i = 0
            while i < len(syms) - 1:
                if syms[i] == a and syms[i + 1] == b:
                    syms[i:i + 2] = [tok]
                i += 1
            account(idx, +1)
            before.update(zip(syms, syms[1:]))
        for p in before:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
    return merges, new_tokens


def is_punct(ch):
    cp = ord(ch)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(ch):
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def strip_accents(s):
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


# ------------------------------------------------------------------------------------------------
# WordPiece (BERT)
# ------------------------------------------------------------------------------------------------

def bert_words(lines, lowercase, strip):
    """Approximates BertNormalizer + BertPreTokenizer."""
    counts = collections.Counter()
    for line in lines:
        s = "".join(" " if unicodedata.category(c) in ("Zs",) or c in "\t\r\n" else c
                    for c in line
                    if not (c == "\x00" or c == "\ufffd" or
                            (unicodedata.category(c) in ("Cc", "Cf") and c not in "\t\r\n")))
        s = "".join(f" {c} " if is_cjk(c) else c for c in s)
        if strip:
            s = strip_accents(s)
        if lowercase:
            s = s.lower()
        for chunk in s.split():
            word = ""
            for c in chunk:
                if is_punct(c):
                    if word:
                        counts[word] += 1
                        word = ""
                    counts[c] += 1
                else:
                    word += c
            if word:
                counts[word] += 1
    return counts


def wordpiece_vocab(counts, specials, max_chars=100):
    vocab = {}

    def put(tok):
        if tok not in vocab:
            vocab[tok] = len(vocab)

    for s in specials:
        put(s)
    chars = collections.Counter()
    for w, c in counts.items():
        for ch in w:
            chars[ch] += c
    # Characters seen at least twice (rarer ones become [UNK] words), as word start and as "##".
    for ch in ranked(chars, min_count=2):
        put(ch)
    for ch in ranked(chars, min_count=2):
        put("##" + ch)
    for w in ranked(counts, min_count=2, limit=1500):
        if len(w) <= max_chars:
            put(w)
    prefixes, suffixes = collections.Counter(), collections.Counter()
    for w, c in counts.items():
        if len(w) > max_chars:
            continue
        for n in range(2, 6):
            if len(w) > n:
                prefixes[w[:n]] += c
        for i in range(1, len(w)):
            for n in range(2, 5):
                if i + n <= len(w):
                    suffixes["##" + w[i:i + n]] += c
    for p in ranked(prefixes, min_count=3, limit=500):
        put(p)
    for p in ranked(suffixes, min_count=3, limit=900):
        put(p)
    return vocab


def make_bert(lines, lowercase, stripacc_json, post, extra_added):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    counts = bert_words(lines, lowercase=lowercase, strip=True)
    vocab = wordpiece_vocab(counts, specials)
    added = [added_token(vocab[s], s, True) for s in specials]
    for content, kw in extra_added:
        added.append(added_token(vocab.get(content, len(vocab) + len(added) - len(specials)), content, **kw))
    post_processor = post(vocab)
    return tokenizer_json(
        added,
        {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
         "strip_accents": stripacc_json, "lowercase": lowercase},
        {"type": "BertPreTokenizer"},
        post_processor,
        {"type": "WordPiece", "prefix": "##", "cleanup": True},
        {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
         "max_input_chars_per_word": 100, "vocab": vocab},
    )


# ------------------------------------------------------------------------------------------------
# Metaspace BPE with byte fallback
# ------------------------------------------------------------------------------------------------

def make_metaspace_bpe(lines):
    counts = collections.Counter()
    chars = collections.Counter()
    for line in lines:
        s = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", line)).strip()
        for w in s.split(" "):
            if w:
                counts["\u2581" + w] += 1
                for ch in w:
                    chars[ch] += 1
    vocab = {}

    def put(tok):
        if tok not in vocab:
            vocab[tok] = len(vocab)

    for s in ["<s>", "<pad>", "</s>", "<unk>"]:
        put(s)
    for b in range(256):
        put("<0x%02X>" % b)
    put("\u2581")
    # Characters seen at least 3 times; rarer ones go through byte fallback.
    alphabet = ["\u2581"] + ranked(chars, min_count=3)
    for ch in alphabet:
        put(ch)
    word_counts = {tuple(w): c for w, c in counts.items()}
    merges, new_tokens = train_bpe(word_counts, alphabet, 600, lambda a, b: a + b)
    for t in new_tokens:
        put(t)
    added = [added_token(0, "<s>", True), added_token(1, "<pad>", True), added_token(2, "</s>", True),
             added_token(3, "<unk>", True),
             # RoBERTa-style mask: eats the space on its left.
             added_token(len(vocab), "<mask>", True, lstrip=True),
             # Matched on normalized text, only as a whole word.
             added_token(len(vocab) + 1, "hello", False, single_word=True, normalized=True),
             # Eats the spaces on its right; matched on the raw text.
             added_token(len(vocab) + 2, "@@", False, rstrip=True, normalized=False)]
    return tokenizer_json(
        added,
        {"type": "Sequence", "normalizers": [
            {"type": "NFKC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Strip", "strip_left": True, "strip_right": True}]},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
        {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
         "trim_offsets": True, "add_prefix_space": True},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
        {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": True, "ignore_merges": False,
         "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    )


# ------------------------------------------------------------------------------------------------
# WordLevel
# ------------------------------------------------------------------------------------------------

def make_wordlevel(lines):
    counts = collections.Counter()
    for line in lines:
        s = strip_accents(line).lower()
        for chunk in re.findall(r"\w+|[^\w\s]+", s):
            for piece in re.findall(r"\d|\D+", chunk):
                if any(is_punct(c) for c in piece):
                    cur = ""
                    for c in piece:
                        if is_punct(c):
                            if cur:
                                counts[cur] += 1
                                cur = ""
                            counts[c] += 1
                        else:
                            cur += c
                    if cur:
                        counts[cur] += 1
                else:
                    counts[piece] += 1
    specials = ["[UNK]", "[BOS]", "[EOS]", "[PAD]"]
    vocab = {}
    for s in specials + ranked(counts, min_count=2, limit=3000):
        if s not in vocab:
            vocab[s] = len(vocab)
    n = len(vocab)
    added = [added_token(vocab[s], s, True) for s in specials]
    added += [
        added_token(n, "<mask>", True, lstrip=True, rstrip=True),
        added_token(n + 1, "Hello", False, single_word=True, normalized=True),
        added_token(n + 2, "[CLS]", True, single_word=True),
    ]
    return tokenizer_json(
        added,
        {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"}]},
        {"type": "Sequence", "pretokenizers": [
            {"type": "Whitespace"},
            {"type": "Digits", "individual_digits": True},
            {"type": "Punctuation", "behavior": "Isolated"}]},
        template(["[BOS]", "$A"], ["[BOS]", "$A", "$B:1"], [("[BOS]", vocab["[BOS]"])]),
        None,
        {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    )


# ------------------------------------------------------------------------------------------------
# Byte-level BPE behind Split pre-tokenizers
# ------------------------------------------------------------------------------------------------

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def make_split_bpe(lines):
    b2u = bytes_to_unicode()
    gpt2 = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+")
    counts = collections.Counter()
    for line in lines:
        s = unicodedata.normalize("NFKC", line).lower()
        for piece in re.split(r"(?= )", s):          # Split " " MergedWithNext
            for sub in re.split(r"(\d+)", piece):    # Split \p{N}+ Isolated
                if not sub:
                    continue
                if not sub.startswith(" "):
                    sub = " " + sub                  # ByteLevel add_prefix_space
                for w in gpt2.findall(sub):
                    counts["".join(b2u[b] for b in w.encode("utf-8"))] += 1
    alphabet = [b2u[b] for b in range(256)]
    vocab = {}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    word_counts = {tuple(w): c for w, c in counts.items()}
    merges, new_tokens = train_bpe(word_counts, alphabet, 800, lambda a, b: a + b)
    for t in new_tokens:
        vocab.setdefault(t, len(vocab))
    n = len(vocab)
    added = [
        added_token(n, "<|endoftext|>", True),
        added_token(n + 1, "<mask>", True, lstrip=True),
        added_token(n + 2, "HELLO", False, single_word=True, normalized=True),
        added_token(n + 3, "</s>", True, rstrip=True, lstrip=True),
    ]
    return tokenizer_json(
        added,
        {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]},
        {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
            {"type": "Split", "pattern": {"Regex": "\\p{N}+"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
         "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    )


# ------------------------------------------------------------------------------------------------
# BPE with end-of-word suffix and continuing-subword prefix
# ------------------------------------------------------------------------------------------------

def make_bpe_suffix(lines):
    prefix, suffix = "##", "</w>"
    counts = collections.Counter()
    chars = collections.Counter()
    for line in lines:
        for w in unicodedata.normalize("NFKD", line).split():
            counts[w] += 1
            for ch in w:
                chars[ch] += 1

    def symbols(w):
        out = []
        for i, ch in enumerate(w):
            s = ch if i == 0 else prefix + ch
            if i == len(w) - 1:
                s += suffix
            out.append(s)
        return tuple(out)

    vocab = {"<unk>": 0}
    alphabet = []
    for ch in ranked(chars, min_count=2):    # rarer characters become (fused) <unk>
        for s in (ch, prefix + ch, ch + suffix, prefix + ch + suffix):
            alphabet.append(s)
            vocab.setdefault(s, len(vocab))
    word_counts = {symbols(w): c for w, c in counts.items()}
    # The library forms a merge's token as a + b[len(prefix):]; b always carries the prefix here.
    merges, new_tokens = train_bpe(word_counts, alphabet, 500, lambda a, b: a + b[len(prefix):])
    for t in new_tokens:
        vocab.setdefault(t, len(vocab))
    return tokenizer_json(
        [added_token(0, "<unk>", True)],
        {"type": "NFKD"},
        {"type": "WhitespaceSplit"},
        None,
        {"type": "BPEDecoder", "suffix": suffix},
        {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": prefix,
         "end_of_word_suffix": suffix, "fuse_unk": True, "byte_fallback": False, "ignore_merges": False,
         "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    )


# ------------------------------------------------------------------------------------------------

def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write(__doc__)
        sys.exit(2)
    out_dir = sys.argv[1]
    lines = read_corpus(sys.argv[2] if len(sys.argv) == 3 else DEFAULT_CORPUS)
    os.makedirs(out_dir, exist_ok=True)

    bert_post = lambda v: {"type": "BertProcessing", "sep": ["[SEP]", v["[SEP]"]], "cls": ["[CLS]", v["[CLS]"]]}
    files = {
        "bert-wordpiece.json": make_bert(
            lines, lowercase=True, stripacc_json=None, post=bert_post,
            extra_added=[("<mask>", dict(special=True, lstrip=True)),
                         ("Hello", dict(special=False, single_word=True, normalized=True)),
                         ("[SPLIT]", dict(special=False, rstrip=True))]),
        "bert-cased-stripaccents.json": make_bert(
            lines, lowercase=False, stripacc_json=True,
            post=lambda v: template(["[CLS]", "$A", "[SEP]"], ["[CLS]", "$A", "[SEP]", "$B:1", "[SEP]:1"],
                                    [("[CLS]", v["[CLS]"]), ("[SEP]", v["[SEP]"])]),
            extra_added=[]),
        "metaspace-bpe.json": make_metaspace_bpe(lines),
        "whitespace-wordlevel.json": make_wordlevel(lines),
        "split-bpe.json": make_split_bpe(lines),
        "bpe-suffix.json": make_bpe_suffix(lines),
    }
    for name, obj in files.items():
        path = write(out_dir, name, obj)
        model = obj["model"]
        print(f"{path}: {model['type']}, vocab {len(model['vocab'])}, "
              f"merges {len(model.get('merges', []))}, added {len(obj['added_tokens'])}")


if __name__ == "__main__":
    main()
