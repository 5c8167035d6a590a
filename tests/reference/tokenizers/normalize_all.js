// node normalize_all.js: how Hugging Face's normalizers change every single code point of
// planes 0-2 and 14. Prints one line per changed code point: "<name> <hex code point> <JSON
// string of the result>", for NFC, NFD, NFKC, NFKD, Lowercase, StripAccents and
// BertNormalizer (BERT uncased defaults). Unchanged code points are not printed.
'use strict';
const tk = require('@anush008/tokenizers');

const normalizers = {
  NFC: tk.nfcNormalizer(),
  NFD: tk.nfdNormalizer(),
  NFKC: tk.nfkcNormalizer(),
  NFKD: tk.nfkdNormalizer(),
  Lowercase: tk.lowercase(),
  StripAccents: tk.stripAccentsNormalizer(),
  BertNormalizer: tk.bertNormalizer({cleanText: true, handleChineseChars: true,
                                     stripAccents: true, lowercase: true}),
};
const lines = [];
for (const [name, normalizer] of Object.entries(normalizers)) {
  for (let cp = 0; cp <= 0xE01EF; cp++) {
    if (cp === 0x30000) cp = 0xE0000;
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const text = String.fromCodePoint(cp);
    const result = normalizer.normalizeString(text);
    if (result !== text) lines.push(`${name} ${cp.toString(16)} ${JSON.stringify(result)}`);
  }
}
require('fs').writeSync(1, lines.join('\n') + '\n');
