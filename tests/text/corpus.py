"""Strings for tokenizer parity: the hard cases for a BERT tokenizer, written out here."""

HAND_WRITTEN = [
    "", " ", "   \t\n ", "Hello world!", "hello WORLD", "HeLLo, WoRLd?!", "The quick brown fox jumps over the lazy dog.",
    "Ünïcödé àccénts éèêë ÀÉÎÕÜ ñ ç ø å æ œ ß", "naïve café résumé coöperate façade jalapeño", "Straße STRASSE",
    "İstanbul ıi İI", "ΟΔΟΣ Σίσυφος ΣΣ σς", "Ελληνικά κείμενα με τόνους", "Привет, мир! ЁЖИК ёжик",
    "Ａｂｃ ＡＢＣ １２３ fullwidth", "ﬁne ﬂow ﬀ ligatures", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝 math letters", "½ ¼ ² ³ ™ ℃ №",
    "你好世界", "中文和English混合text", "日本語のテキストです。カタカナ ひらがな", "한국어 텍스트 입니다", "漢字かな交じり文",
    "emoji 😀🥰🤖👍🏽 👨‍👩‍👧 🇫🇷 ❤️", "🙂", "☃ ★ ✓ ✗ → ← ∞ ≠ ≤", "mixed😀inside🥰words",
    "punctuation!!! ??? ... --- ,,, ;;; :::", "(parens) [brackets] {braces} <angle>", "\"quotes\" 'single' `back`",
    "“curly” ‘quotes’ «guillemets» „low“", "dash – en — em ‐ hyphen", "a/b\\c|d_e~f^g", "email@example.com #hashtag $100",
    "100% 3.14159 1,000,000 -42 +7 1e-9 0x1F", "2024-01-31 12:34:56", "http://example.com/path?q=1&r=2#frag",
    "control\x00chars\x01here\x1f", "zero\u200bwidth\u200cjoin\u200dchars\ufeffbom", "soft\u00adhyphen",
    "tab\tseparated\tvalues", "line\nbreaks\r\nand\rreturns", "nbsp\u00a0space\u2003em\u3000ideographic",
    "line\u2028sep\u2029para", "vertical\x0btab\x0cfeed", "next\x85line", "replacement \ufffd char",
    "private \ue000 use \U000f0000", "bidi \u202e override \u202c", "variation\ufe0f selector",
    "combining e\u0301 a\u0300 n\u0303", "decomposed vs precomposed: e\u0301 é", "Hangul jamo \u1100\u1161 가",
    "thai ภาษาไทย", "arabic العربية مرحبا", "hebrew עברית", "hindi हिन्दी", "tamil தமிழ்", "armenian Հայերեն",
    "[CLS] literal special tokens [SEP] [MASK] [PAD] [UNK]", "lowercase [cls] [sep] are plain text",
    "glued[CLS]special[SEP]tokens[MASK]", "[[CLS]] [ CLS ] [CLS[SEP]]", "[UNK][UNK]", "[MASK]",
    "a" * 99, "b" * 100, "c" * 101, "supercalifragilisticexpialidocious" * 4, "x" * 300 + " tail",
    "é" * 60, "é" * 101, "日" * 150, "😀" * 120, "word " * 200, "antidisestablishmentarianism",
    "unbelievable unaffordable playing played plays", "don't can't won't it's o'clock rock'n'roll",
    "U.S.A. e.g. i.e. Mr. Dr. St.", "C++ C# F# .NET node.js", "snake_case camelCase PascalCase kebab-case",
    "numbers123mixed456 abc123 123abc", "   leading and trailing   ", "multiple     spaces",
    "ALL CAPS SENTENCE HERE", "Title Case Sentence Here", "¿Qué tal? ¡Muy bien!", "Ça va? Où êtes-vous?",
    "Zürich Köln München Göteborg Århus", "Ålesund Øresund Æsir", "Łódź Kraków Gdańsk", "Dvořák Škoda Čech",
    "Việt Nam Tiếng Việt", "Türkçe ğüşıöç ĞÜŞİÖÇ", "Română ăâîșț", "Íslenska þðæö", "Ŋ ŉ ſ ĸ",
    "ǅ ǈ ǋ titlecase digraphs", "ⓐⓑⓒ circled", "Ⅻ roman ⅻ", "µ micro Ω ohm Å angstrom K kelvin",
    "\u0130\u0307 dotted", "ﬃ ﬄ ﬅ ﬆ", "ǰ ΐ ΰ", "ẞ capital sharp s", "Ꭰ Cherokee ꭰ", "𐐀 Deseret 𐐨",
    "a\u0301\u0302\u0303 stacked marks", "\u0301 leading mark", "q\u0323\u0307 dot below above",
    "ṩ ḍ̇ ordering", "ﷺ arabic ligature", "ﬡ hebrew wide", "〇 ideographic zero", "𠀀 𪜀 𫝀 𫠠 𬺰 ext-b..f",
    "㐀 ext-a", "豈 compat", "丽 compat supplement", "ｶﾀｶﾅ halfwidth", "ｧ small", "¥ £ € ₹ ₽ ¢",
    "§ ¶ † ‡ • ‰ ′ ″", "@user: hi! #tag https://t.co/xyz", "...", "!", "?!", "a", "A", "1", ".",
    "The [SEP]", "[SEP] starts", "ends with [SEP]", "x[UNK]y", "hello\u0000world", "\x7f delete",
]

PAIRS = [
    ("How old are you?", "I am six years old."),
    ("", ""), ("", "only the second"), ("only the first", ""),
    ("short", "a much longer second segment that will need truncation " * 5),
    ("a much longer first segment that will need truncation " * 5, "short"),
    ("equal length words here now " * 4, "equal length words here now " * 4),
    ("one two three four five six seven", "eight nine ten eleven twelve thirteen fourteen"),
    ("Ünïcödé first", "second with [SEP] inside"), ("你好", "世界 hello"), ("😀" * 40, "x " * 40),
    ("odd " * 11, "even " * 12), ("odd " * 12, "even " * 11), ("a", "b " * 100), ("b " * 100, "a"),
]


def corpus() -> list[str]:
    """Hand-written strings, plus case and spacing variants of each (~4x)."""
    out = list(HAND_WRITTEN)
    out += [s.upper() for s in HAND_WRITTEN]
    out += [s.title() for s in HAND_WRITTEN]
    out += [f"  {s}  \t{s.swapcase()}" for s in HAND_WRITTEN]
    return out
