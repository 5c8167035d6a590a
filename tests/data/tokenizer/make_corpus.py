#!/usr/bin/env python3
"""Writes corpus.txt and multiline.json, the tokenizer test corpus (stdlib only, deterministic).

    python3 tests/data/tokenizer/make_corpus.py [OUT_DIR]   (default: this script's folder)

corpus.txt: one text per line, lines separated by '\\n' only. A line may hold '\\r', vertical
tab, form feed, U+0085, U+2028/U+2029 and other characters that some line splitters treat as
line breaks: readers must split on '\\n' alone. Every line is valid UTF-8.
multiline.json: a JSON array of texts that contain '\\n'.
Exotic characters are written as explicit escapes so the bytes are reviewable here.
"""
import json
import os
import sys
import unicodedata


def lcg(seed):
    """A tiny deterministic generator (independent of Python's random module versions)."""
    state = seed
    while True:
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        yield state >> 33


LINES = []


def add(*texts):
    for t in texts:
        assert '\n' not in t, repr(t)
        LINES.append(t)


# --- English prose, casing, contractions -------------------------------------------------------
add(
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
    "tHe QuIcK bRoWn FoX jUmPs OvEr ThE lAzY dOg?",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.",
    "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse, I thought I would sail about a little.",
    "She said, \"I don't know; they'll see.\" Then she left — quietly.",
    "DON'T STOP! I'M SERIOUS. THEY'LL NEVER KNOW. WE'VE GOT IT. YOU'RE RIGHT. HE'D GO. IT'S FINE.",
    "don't stop! i'm serious. they'll never know. we've got it. you're right. he'd go. it's fine.",
    "Don'T, I'm, It'S, they'Ll, We'Ve, you'RE, She'D — mixed-case contractions.",
    "'s 't 're 've 'm 'll 'd 'S 'T 'RE 'VE 'M 'LL 'D",
    "rock 'n' roll, 'tis, 'twas, o'clock, y'all, ma'am, the '90s, Jones' house, James's car",
    "It’s a curly apostrophe: don’t, won’t, they’ll, I’m, we’re.",
    "Hello",
    "hello",
    "HELLO",
    " hello",
    "hello ",
    "a",
    "I",
    ".",
    "Mr. Smith Jr. met Dr. Jones at 5 p.m. on Jan. 3rd, e.g. i.e. etc.",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "A well-known, state-of-the-art, easy-to-use, up-to-date, mother-in-law's twenty-one co-operative re-entry.",
    "  Leading spaces and trailing spaces  ",
    "\tLeading tab, trailing tab\t",
    "Multiple   spaces    between     words      here.",
    "Tabs\tbetween\t\twords\t\t\tand\t \tmixed \t whitespace.",
    "Ünïcödé ïñ Éñglïsh: naïve café résumé coöperate façade jalapeño piñata Zoë Brontë.",
    "Straße, Maße, Fußball, GROSS, groß, ẞ (capital sharp s), Æsir, Œuvre, Øresund, Ångström.",
)

# --- Many scripts --------------------------------------------------------------------------------
add(
    "中文：我爱自然语言处理。今天天气很好，我们去公园散步吧！",
    "汉字测试：龍、龘、齉、𠀀、𪚥（扩展区字符）以及标点符号「」『』《》【】。",
    "日本語の文章：東京は日本の首都です。ひらがな、カタカナ、漢字が混ざっています。",
    "カタカナ：コンピューター、プログラミング、トークナイザー。半角ｶﾀｶﾅ：ｺﾝﾋﾟｭｰﾀｰ",
    "ひらがなだけのぶんしょうです。ゆっくりよんでください。",
    "한국어 문장입니다. 안녕하세요! 자연어 처리는 재미있습니다.",
    "한글 자모: ㄱㄴㄷㄹ ㅏㅑㅓㅕ, 조합형 \u1100\u1161\u11a8 (conjoining jamo).",
    "العربية: مرحبا بالعالم! هذه جملة باللغة العربية مع تشكيل: مَرْحَبًا.",
    "عربي مع أرقام: ١٢٣٤٥٦٧٨٩٠ و ۱۲۳۴۵ (فارسی) و 12345.",
    "עברית: שלום עולם! זהו משפט בעברית עם ניקוד: שָׁלוֹם.",
    "Mixed bidi: The word שלום means peace, and مرحبا means hello.",
    "हिन्दी: नमस्ते दुनिया! यह एक हिंदी वाक्य है। संख्याएँ: ०१२३४५६७८९",
    "संस्कृतम्: धर्मक्षेत्रे कुरुक्षेत्रे समवेता युयुत्सवः।",
    "ภาษาไทย: สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "РУССКИЙ ВЕРХНИЙ РЕГИСТР и нижний регистр; Ёё Йй Щщ Ъъ.",
    "Українська: Гей, хлопці, їжте ґудзики! Білоруська: Ўў.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΟΔΟΣ → οδος, ΣΊΣΥΦΟΣ → σίσυφος.",
    "Greek final sigma: ΌΣΟΣ ΚΑΙ ΑΝ ΣΟΦΟΣ; ὅσος, σοφός, Σ at end ΑΣ, ς alone, ΣΣ.",
    "Greek accents: ά έ ή ί ό ύ ώ ΐ ΰ ϊ ϋ Ά Έ Ή Ί Ό Ύ Ώ, polytonic ἀἁἂἃἄἅἆἇ ᾶ ῆ ῶ.",
    "Tiếng Việt (NFC): Tôi yêu tiếng Việt. Người ta nói rằng học tiếng Việt rất khó.",
    unicodedata.normalize("NFD", "Tiếng Việt (NFD): Tôi yêu tiếng Việt. Người ta nói rằng học tiếng Việt rất khó."),
    "Combining marks: e\u0301 a\u0300 o\u0302\u0301 u\u031b\u0303 n\u0303 A\u030a, stacked z\u0336\u0337\u0338a\u0300\u0301\u0302l\u0303g\u0308o\u030c.",
    "Türkçe: İstanbul, ıspanak, IĞDIR, iğne, İİİ ııı Iİıi, KIŞ kış.",
    "Türkçe NFD: I\u0307stanbul (I + combining dot above).",
    "Georgian: ქართული ენა. Armenian: Հայերեն լեզու. Amharic: አማርኛ ቋንቋ.",
    "Tamil: தமிழ் மொழி. Bengali: বাংলা ভাষা. Gujarati: ગુજરાતી. Punjabi: ਪੰਜਾਬੀ.",
    "Khmer: ភាសាខ្មែរ. Lao: ພາສາລາວ. Myanmar: မြန်မာဘာသာ. Tibetan: བོད་ཡིག",
    "Sinhala: සිංහල. Mongolian: ᠮᠣᠩᠭᠣᠯ. Cherokee: ᏣᎳᎩ. Inuktitut: ᐃᓄᒃᑎᑐᑦ.",
    "Math alphanumerics: \U0001d400\U0001d401\U0001d402 \U0001d44e\U0001d44f \U0001d7ce\U0001d7cf\U0001d7d0 (bold/italic/digits).",
    "Gothic and old scripts: \U00010330\U00010331\U00010332 Linear B: \U00010000\U00010001 Cuneiform: \U00012000\U00012001",
)

# --- Emoji -----------------------------------------------------------------------------------------
add(
    "Emoji: 😀 😃 😄 😁 😆 😅 😂 🤣 ☺️ 😊 🙂 🙃",
    "ZWJ family: 👨\u200d👩\u200d👧\u200d👦 and couple 👩\u200d❤\ufe0f\u200d💋\u200d👨 and technologist 🧑\u200d💻",
    "Skin tones: 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿 🤝🏽 👋🏿 and combined 🧑🏽\u200d🤝\u200d🧑🏻",
    "Flags: 🇺🇸 🇩🇪 🇯🇵 🇧🇷 🇺🇦 🇮🇳 and subdivision 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "Keycaps: 1\ufe0f\u20e3 #\ufe0f\u20e3 *\ufe0f\u20e3 and variation selectors: ❤ ❤\ufe0f ☀\ufe0e ☀\ufe0f",
    "🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥",
    "text😀text😀😀text 🏳\ufe0f\u200d🌈 🏳\ufe0f\u200d⚧\ufe0f 🐈\u200d⬛",
)

# --- Code --------------------------------------------------------------------------------------------
add(
    "#include <iostream>",
    "int main(int argc, char** argv) { std::cout << \"Hello, \" << argv[0] << std::endl; return 0; }",
    "template <typename T> constexpr auto max(const T& a, const T& b) -> T { return a < b ? b : a; }",
    "    for (size_t i = 0; i < v.size(); ++i) { sum += v[i] * 0x1F; } // accumulate",
    "std::unordered_map<std::string, std::vector<int64_t>> m{{\"a\", {1, 2, 3}}}; m[\"b\"].push_back(-42);",
    "/* block comment */ #define MAX(a,b) ((a)>(b)?(a):(b)) && || != == <= >= -> :: <<= >>=",
    "def fibonacci(n: int) -> int:",
    "    if n < 2:",
    "        return n",
    "    return fibonacci(n - 1) + fibonacci(n - 2)",
    "\tdef tabbed(self):",
    "\t\treturn [x**2 for x in range(10) if x % 2 == 0]",
    " \t mixed_indent = {'key': \"value\", 'n': None, 'ok': True}",
    "class Foo(Bar, metaclass=ABCMeta):  # noqa: E501",
    "print(f\"{name!r:>10} = {value:.3f}\")  ;  lambda x, *args, **kwargs: x",
    "{\"name\": \"loratrf\", \"version\": 1.5, \"tags\": [\"a\", \"b\"], \"nested\": {\"x\": null, \"y\": false}}",
    "[{\"id\":1,\"text\":\"\\u00e9\\n\\t\"},{\"id\":2,\"text\":\"\\\"quoted\\\"\"}]",
    "$ ls -la /usr/local/bin | grep -E '^-rwx' | awk '{print $9}' > out.txt 2>&1 && echo \"done\"",
    "for f in *.txt; do sed -i 's/foo/bar/g' \"$f\"; done; export PATH=\"$HOME/.local/bin:$PATH\"",
    "SELECT u.id, COUNT(*) AS n FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.age >= 18 GROUP BY u.id;",
    "fn main() { let v: Vec<u8> = vec![0; 16]; println!(\"{:?}\", v.iter().map(|x| x + 1).collect::<Vec<_>>()); }",
    "const f = async (a, b = {}) => { await Promise.all([a, b]); return a ?? b?.c; }; // ES2020",
    "x = y ** 2 // 3 % 4 ^ 5 & 6 | ~7 << 8 >> 9",
    "if (a&&b||!c) {x+=1;y-=2;z*=3;w/=4;}",
    "    ",
    "\t",
    "",
    "",
    " ",
    "\t\t\t",
    " \t \t ",
)

# --- Whitespace runs of 1..20 spaces, odd whitespace and control characters -----------------------------
for n in range(1, 21):
    add("x" + " " * n + "y" + " " * n + "z")
add(
    " " * 7,
    " " * 20,
    "end with spaces" + " " * 13,
    " " * 13 + "start with spaces",
    "carriage return inside\rthe line",
    "carriage return at the end\r",
    "\r",
    "\r\r\r",
    "windows line ending\r",
    "  \r  ",
    "vertical\x0btab and form\x0cfeed and both \x0b\x0c together",
    "\x0c",
    "next line\u0085character (NEL U+0085) here",
    "no-break\u00a0space and narrow\u202fno-break and figure\u2007space",
    "line\u2028separator and paragraph\u2029separator",
    "ideographic\u3000space\u3000\u3000here、日本語\u3000テキスト",
    "zero\u200bwidth\u200bspace, zero\u200cwidth\u200cnon-joiner, zero\u200dwidth\u200djoiner, word\u2060joiner",
    "\ufeffBOM at the start of a line",
    "BOM\ufeffin the middle and at the end\ufeff",
    "en\u2002em\u2003thin\u2009hair\u200a six-per-em\u2006 spaces",
    "soft\u00adhyphen in hy\u00adphen\u00adat\u00adion",
    "C0 controls: \x01\x02\x03\x07\x08\x1b[31mred\x1b[0m \x1f\x7f end",
    "NUL-free but with DEL\x7f and C1\u0080\u009f controls",
    "bidi controls: \u202aLRE\u202c \u202bRLE\u202c \u202eRLO\u202c \u2066LRI\u2069 \u200eLRM \u200fRLM",
    "private use: \ue000\ue001\uf8ff and noncharacter-free specials: \ufffc\ufffd",
)

# --- Numbers ---------------------------------------------------------------------------------------
add(
    "0",
    "7",
    "12",
    "123",
    "1234",
    "12345678901234567890123456789012345678901234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "-0.000001 +1e-10 6.022e23 1,234,567.89 1.234.567,89 1 234 567",
    "Phone: +1 (555) 123-4567, +44 20 7946 0958, 555.123.4567, 0049-30-123456",
    "Dates: 2024-01-15, 15/01/2024, 01.15.2024, 2024年1月15日, 12:34:56.789Z",
    "Full-width digits: １２３４５６７８９０ and ＡＢＣ ａｂｃ ＋－＝",
    "Arabic-Indic: ٠١٢٣٤٥٦٧٨٩ Extended: ۰۱۲۳۴۵۶۷۸۹ Devanagari: ०१२३४५६७८९ Thai: ๐๑๒๓๔๕๖๗๘๙",
    "Mixed: abc123def456 v1.2.3-rc.4 x86_64 i18n l10n 3D 4K 5G COVID-19 A4 B2B",
    "Version 10.0.19041.1234, IPv4 192.168.0.1, IPv6 2001:0db8:85a3::8a2e:0370:7334",
    "$1,000,000.00 €99,99 £5 ¥1000 ₹500 ₩10000 ₿0.001 50% 3½ ¼ ¾ ⅓ 10°C 98.6°F",
    "Roman: Ⅰ Ⅱ Ⅲ Ⅳ Ⅻ ⅰ ⅱ ⅻ; circled: ① ② ⑳ ㉑ ㊿; superscript x² y³ H₂O",
)

# --- Special-token strings inside normal text ---------------------------------------------------------
add(
    "<|begin_of_text|>Hello<|end_of_text|>",
    "text before <|begin_of_text|> text after <|eot_id|> and <|start_header_id|>user<|end_header_id|>",
    "<|im_start|>system\\nYou are helpful.<|im_end|><|im_start|>user hi<|im_end|>",
    "Qwen end: <|endoftext|>, again<|endoftext|>and glued<|endoftext|><|endoftext|>",
    "<s>[INST] What is 2+2? [/INST] 4</s>",
    "<s> spaced </s> and<s>glued</s>and <unk> and <pad>",
    "[CLS] the first sentence [SEP] the second sentence [SEP] [MASK] [PAD] [UNK]",
    "[cls] lowercase variants [sep] [mask] <S> </S> <|IM_START|>",
    "Partial tokens: <|im_sta <|begin_of_ <|endoftext| |> <| [CL S] </ s>",
    "<mask> at start, middle <mask> here, and end <mask>",
    "Hello hello HELLO hellohello hello, world! say hello",
    "rstrip/lstrip tokens: a [SPLIT]   b @@    c@@d [SPLIT]x  <mask>   <mask>z   </s>   end",
    "<tool_call>{\"name\": \"f\"}</tool_call> <think>reasoning</think> <|fim_prefix|>code<|fim_suffix|>",
)

# --- Markup, URLs, e-mail, Markdown, math -------------------------------------------------------------
add(
    "<html><head><title>Test &amp; Demo</title></head><body class=\"main\" id='x'><p>Hi&nbsp;there &lt;3</p></body></html>",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><root xmlns:a=\"urn:x\"><a:item key=\"1\"/><![CDATA[raw <data>]]></root>",
    "<div style=\"color: red; margin: 0 auto;\"><img src=\"a.png\" alt=\"\"/><br><!-- comment --></div>",
    "https://www.example.com/path/to/page?query=value&other=123#section-2",
    "http://user:pass@sub.domain.co.uk:8080/a%20b/c?d=%E2%9C%93 ftp://ftp.example.org/file.tar.gz",
    "Visit https://huggingface.co/docs/tokenizers/index or git@github.com:org/repo.git",
    "Emails: john.doe@example.com, jane_doe+tag@mail.co.uk, \"quoted name\"@example.org, ü@例え.jp",
    "# Heading 1",
    "## Heading 2 with `inline code` and **bold** and *italic* and ~~strike~~",
    "- [ ] todo item\u3000- [x] done item",
    "1. First item 2. Second item > quote >> nested quote",
    "| col1 | col2 | col3 |",
    "|------|:----:|-----:|",
    "```python",
    "```",
    "![image](http://x.y/z.png \"title\") [link](https://example.com) <https://autolink.org>",
    "∀x ∈ ℝ: ∃y ∈ ℕ, x² + y² ≤ z² ⇒ ∑ᵢ aᵢ ≠ ∏ⱼ bⱼ; ∫₀^∞ e^{-x} dx = 1; √2 ≈ 1.414",
    "LaTeX: $\\frac{a}{b} + \\sqrt{x^2 + y^2} = \\alpha\\beta\\gamma$ and \\begin{equation}E=mc^2\\end{equation}",
    "Arrows and symbols: ← ↑ → ↓ ↔ ⇐ ⇒ ⇔ ∞ ∂ ∇ ⊂ ⊃ ∩ ∪ ∧ ∨ ¬ ⊕ ⊗ ⟨x|y⟩ ‖v‖",
    "Box drawing: ┌──┬──┐ │ab│cd│ └──┴──┘ ░▒▓█ ▲△▼▽ ◆◇○●",
    "Quotes: “double” ‘single’ «guillemets» „German“ 「corner」 ‹angle› ‚low‘",
    "Dashes and dots: - – — ― ‒ … ‥ · • ‧ ∙",
)

# --- Punctuation repeats ---------------------------------------------------------------------------
add(
    "!!!???...",
    "What?!?! No way!!! Really??? Hmm... ...and then.....",
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    "????????????????????????????????????????",
    "........................................",
    "----------------------------------------",
    "========================================",
    "****************************************",
    "########################################",
    "__init__ __main__ ___triple___ _a_b_c_",
    "~!@#$%^&*()_+`-={}|[]\\:\";'<>?,./",
    "''''' \"\"\"\"\" ``` ''' \"\"\"",
    ",,,;;;:::",
    "(((nested))) [[[brackets]]] {{{braces}}} <<<angles>>>",
)

# --- Compatibility characters and ligatures (NFKC / NFKD targets) -------------------------------------
add(
    "Ligatures: ﬁnance ﬂow ﬀ ﬃ ﬄ ﬅ ﬆ Ĳ ĳ ǆ Ǆ ǅ",
    "Compatibility: ① ㎏ ㎞ ㎡ ℃ ℉ № ™ ℡ ㏍ ㍻ ㋿ Ⅻ ⅻ ½ ¹²³ ₁₂₃ µ Å K Ω",
    "Full-width Latin: Ｈｅｌｌｏ，Ｗｏｒｌｄ！ＡＢＣＤＥＦ ｘｙｚ （ｐａｒｅｎｓ）",
    "Half-width katakana: ｱｲｳｴｵ ｶﾞｷﾞｸﾞ ﾊﾟﾋﾟﾌﾟ and full-width: アイウエオ ガギグ パピプ",
    "Hangul compatibility jamo: ㄱㅏ ㅎㅏㄴ and halfwidth ﾡﾤ",
    "Enclosed: ⓐⓑⓒ ⒜⒝⒞ ⑴⑵⑶ ⒈⒉⒊ 🄰🄱🄲 Ⓐ Ⓩ",
    "Mixed case for lowercasing: HeLLo WoRLD ÀÉÎÕÜ àéîõü ΑΒΓ αβγ АБВ абв ǅungla",
    "Special casing: ß ẞ İ ı ǰ ŉ ﬀ ΐ and Cherokee ᏣᎳᎩ ꮳꮃꭹ",
    "Accent stripping: Crème brûlée, São Paulo, Øre, Łódź, Dvořák, Ärger, Ñandú, Ǖ Ḉ ṩ",
)

# --- Very long words (each < 4 KB) ---------------------------------------------------------------
gen = lcg(20240917)
hexdigits = "0123456789abcdef"
add(
    "a" * 500,
    "A" * 100 + "b" * 100,
    # A ~300-character German compound.
    "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaftsversicherungs"
    "kassenverwaltungsvorsitzenderstellvertreterstelleneinrichtungsgesetzgebungszuständigkeits"
    "übertragungsverordnungsentwurfsbearbeitungsrichtlinienkommissionsmitgliederversammlungs"
    "protokollführerin",
    "sha256: " + "".join(hexdigits[next(gen) % 16] for _ in range(256)),
    "0x" + "".join(hexdigits[next(gen) % 16].upper() for _ in range(128)),
    "base64: " + "".join("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[next(gen) % 64]
                         for _ in range(400)) + "==",
    "ab" * 150,
    "的" * 200,
    "ñ" * 150 + "e\u0301" * 50,
    "😀" * 100,
    "1" * 300,
    "x y " * 200,
    "   a" * 100,
)

# --- More ordinary prose so common words recur (vocabulary for the synthetic tokenizers) -----------
add(
    "Tokenization is the process of splitting text into smaller units called tokens.",
    "Byte-pair encoding starts from characters and repeatedly merges the most frequent adjacent pair.",
    "WordPiece uses a greedy longest-match-first algorithm with a special prefix for continuations.",
    "The model was trained on a large corpus of web pages, books, and source code for many weeks.",
    "Fine-tuning with low-rank adapters updates only a small number of parameters in each layer.",
    "Please submit your job with the command line client and watch its progress in real time.",
    "When the worker loses its lease, the coordinator requeues the job and starts a new attempt.",
    "Checkpoints are written by rank zero and committed only after every shard has been flushed.",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong said: \"That's one small step for man.\"",
    "Water boils at 100 degrees Celsius at sea level, but at a lower temperature on a mountain.",
    "The committee meets every Tuesday at 10:30 AM in room 4B, unless it's a public holiday.",
    "We can't guarantee that the results will be identical across different hardware platforms.",
    "Numbers such as 42, 3.5, and 1,000,000 appear often; so do dates like 2023-12-31.",
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.",
    "All happy families are alike; each unhappy family is unhappy in its own way.",
    "In the beginning God created the heaven and the earth. And the earth was without form, and void.",
    "Four score and seven years ago our fathers brought forth on this continent a new nation.",
    "The rain in Spain stays mainly in the plain. How now, brown cow? She sells sea shells.",
    "Peter Piper picked a peck of pickled peppers; how many pickled peppers did Peter Piper pick?",
    "A journey of a thousand miles begins with a single step. Knowledge is power. Time is money.",
    "Machine learning models learn patterns from data, and tokenizers turn text into numbers.",
    "This sentence has    irregular     spacing, \ttabs,\tand trailing whitespace.   ",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore.",
    "Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo.",
    "Français : « Où est la bibliothèque ? » — « Elle est là-bas, près de l'hôpital. » L'été, c'est l'été.",
    "Español: ¿Dónde está el baño? ¡Qué día tan bonito! El niño comió piña y jalapeños.",
    "Deutsch: Die Bücher liegen auf dem Tisch. Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "Português: Ação, coração, não, pão, avô, avó; você está aí? Olá, tudo bem?",
    "Polski: Zażółć gęślą jaźń. Čeština: Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Italiano: Perché così? Più caffè, per favore. Nederlands: Het ijsje is lekker. Svenska: Åäö räksmörgås.",
    "Română: Știință și țară. Magyar: Árvíztűrő tükörfúrógép. Íslenska: Þetta er ðæ.",
)

# --- Deliberately long lines (each between 4 KB and 20 KB) -----------------------------------------
words = ["the", "of", "and", "tokenizer", "model", "token", "text", "data", "is", "a", "to", "in",
         "with", "for", "on", "that", "this", "worker", "job", "gradient", "Hello", "world", "naïve",
         "日本語", "中文", "русский", "😀", "123", "4567", "-", ",", ".", "don't", "it's"]
long1 = " ".join(words[next(gen) % len(words)] for _ in range(2200))
add("LONG1 " + long1)
long2 = "".join(
    ["漢字", "かな", "カナ", "한글", "abc", " ", "  ", "\t", "1", "22", "333", "!", "é", "e\u0301",
     "👍🏽", "🇯🇵", "\u00a0", "\u3000"][next(gen) % 18] for _ in range(3000))
add("LONG2 " + long2)
long3 = ("def f(x):\\n    return x * 2  # " + "comment " * 5) * 150
add("LONG3 " + long3)

# --- Final odds and ends ---------------------------------------------------------------------------
add(
    "single char lines follow:",
    "é",
    "e\u0301",
    "中",
    "😀",
    "\u200d",
    "\ufeff",
    "\u00a0",
    "\u3000",
    "\u0085",
    "\u2028",
    "'",
    "\"",
    "\\",
    "last line without anything special",
)

MULTILINE = [
    "First paragraph.\n\nSecond paragraph.",
    "line one\nline two\nline three",
    "\n\n\n",
    "\n",
    " \n ",
    "text\n\n\nmore text",
    "windows\r\nline\r\nendings\r\n",
    "mixed\r\nendings\nand\rcarriage returns\n",
    "trailing newline\n",
    "two trailing newlines\n\n",
    "\nleading newline",
    "  indented\n    more indented\n\tand a tab\n",
    "def f(x):\n    y = x + 1\n\n    return y\n\n\nprint(f(1))\n",
    "int main() {\n\tint x = 0;\n\n\treturn x;\n}\n",
    "```python\nimport os\n\nprint(os.getcwd())\n```\n",
    "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null\n  ]\n}",
    "# Title\n\nSome *markdown* text.\n\n- item 1\n- item 2\n\n> quote\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>",
    "<s>[INST] Write a haiku. [/INST]\nAn old silent pond\nA frog jumps into the pond\nSplash! Silence again.</s>",
    "中文第一段。\n\n中文第二段。\n日本語の行\n한국어 줄",
    "Emoji\n👨\u200d👩\u200d👧\n🇺🇸\n",
    "spaces before newline   \n   spaces after newline",
    "tabs\t\n\t\ttabs",
    "a\nb\nc\nd\ne\nf\ng\nh\ni\nj",
    "   \n\n   \n",
    "\r\n\r\n",
    "Numbers\n123\n4567\n89.0\n",
    "[CLS] first [SEP]\n[CLS] second [SEP]\n",
    "Paragraph with NEL\u0085and LS\u2028and PS\u2029and a real\nnewline.",
    "end with space and newline \n",
]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for i, line in enumerate(LINES):
        n = len(line.encode("utf-8"))
        if line.startswith("LONG"):
            assert 4096 < n <= 20480, (i, n)
        else:
            assert n <= 4096, (i, n)
    data = "\n".join(LINES) + "\n"
    with open(os.path.join(out_dir, "corpus.txt"), "wb") as f:
        f.write(data.encode("utf-8"))
    for t in MULTILINE:
        assert "\n" in t, repr(t)
    with open(os.path.join(out_dir, "multiline.json"), "wb") as f:
        f.write((json.dumps(MULTILINE, ensure_ascii=True, indent=1) + "\n").encode("ascii"))
    print(f"corpus.txt: {len(LINES)} lines, {len(data.encode('utf-8'))} bytes; "
          f"multiline.json: {len(MULTILINE)} texts")


if __name__ == "__main__":
    main()
