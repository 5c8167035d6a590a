// The reference side of tests/bench/tokenizer_throughput.sh: Hugging Face tokenizers (Rust,
// Node bindings) encoding every non-empty line of a file, loading not timed. Prints the same
// JSON as tokenizer_bench. encodeBatch in chunks amortises the Node <-> Rust call cost, which
// favours the reference; RAYON_NUM_THREADS (set by the script) fixes its thread count.
//
//   node tokenizer_bench.js TOKENIZER_JSON FILE
'use strict';
const path = require('path');
const fs = require('fs');
const { Tokenizer } = require(path.join(__dirname, '../reference/tokenizers/node_modules/@anush008/tokenizers'));

(async () => {
  const [tokenizerPath, inputPath] = process.argv.slice(2);
  const tokenizer = Tokenizer.fromFile(tokenizerPath);
  const buffer = fs.readFileSync(inputPath);
  const lines = buffer.toString('utf8').split('\n').filter((line) => line.length > 0);
  const start = process.hrtime.bigint();
  let tokens = 0;
  const chunk = 1024;
  for (let i = 0; i < lines.length; i += chunk) {
    const encodings = await tokenizer.encodeBatch(lines.slice(i, i + chunk), { addSpecialTokens: false });
    for (const encoding of encodings) tokens += encoding.getIds().length;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({ bytes: buffer.length, lines: lines.length, tokens, seconds,
                               mb_per_s: buffer.length / seconds / 1e6 }));
})();
