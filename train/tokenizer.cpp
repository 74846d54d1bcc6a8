// WordPiece tokenizer: normalisation, WordPiece cutting, encoding, vocab files, training.
// See train/tokenizer.h for what each step does and the Unicode coverage of the tables.
#include "train/tokenizer.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_set>

#include "core/error.h"
#include "core/io/atomic_file.h"

namespace mmg {

// ===================================================================== UTF-8 =====

namespace {

// Decodes the code point starting at s[i] and moves i past it. A malformed or truncated
// sequence, an overlong form or a surrogate gives U+FFFD and consumes one byte, so any byte
// string decodes (and the replacement character is later dropped as BERT drops it).
char32_t next_code_point(std::string_view s, size_t& i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    i += 1;
    return b0;
  }
  int len = (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    i += 1;
    return 0xFFFD;
  }
  char32_t c = b0 & (0x7F >> len);
  for (int k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      i += 1;
      return 0xFFFD;
    }
    c = (c << 6) | (byte(i + k) & 0x3F);
  }
  static const char32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < kMinForLength[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
    i += 1;
    return 0xFFFD;
  }
  i += len;
  return c;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Byte offsets of the code point starts of s, plus s.size() at the end.
std::vector<size_t> code_point_starts(std::string_view s) {
  std::vector<size_t> starts;
  size_t i = 0;
  while (i < s.size()) {
    starts.push_back(i);
    next_code_point(s, i);
  }
  starts.push_back(s.size());
  return starts;
}

// ========================================================= character classes =====

// BERT's _is_whitespace: space, tab, newline, CR and the space separators (Zs); the line and
// paragraph separators too, since Python's str.split() that BERT then uses splits on them.
bool is_whitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// BERT's _is_control (Unicode categories C*): controls, format characters, private use.
// Tab, newline and CR are whitespace instead. Vertical tab and form feed are controls and
// vanish (BERT does the same).
bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  if (c < 0x20 || (c >= 0x7F && c <= 0x9F)) return true;                        // Cc
  if (c == 0xAD || (c >= 0x600 && c <= 0x605) || c == 0x61C || c == 0x6DD || c == 0x70F ||
      c == 0x180E)
    return true;                                                                  // Cf
  if ((c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) || (c >= 0x2060 && c <= 0x206F))
    return true;                                                                  // zero-width, bidi
  if (c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB)) return true;                  // BOM, annotations
  if ((c >= 0xE000 && c <= 0xF8FF) || c >= 0xF0000) return true;                 // private use (Co)
  if (c >= 0xE0000 && c <= 0xE007F) return true;                                 // tags (Cf)
  return false;
}

// BERT's _is_punctuation: every ASCII non-alphanumeric printable character (so $ ^ ` are
// punctuation too), plus the Unicode punctuation of the blocks listed in tokenizer.h.
bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
    return true;
  switch (c) {
    case 0xA1: case 0xA7: case 0xAB: case 0xB6: case 0xB7: case 0xBB: case 0xBF:  // ¡ § « ¶ · » ¿
    case 0x3030: case 0x303D: case 0x30A0: case 0x30FB:
    case 0xFF3F: case 0xFF5B: case 0xFF5D:
      return true;
    default:
      break;
  }
  return (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x205E) ||             // General Punctuation
         (c >= 0x3001 && c <= 0x3003) || (c >= 0x3008 && c <= 0x3011) || (c >= 0x3014 && c <= 0x301F) ||
         (c >= 0xFF01 && c <= 0xFF03) || (c >= 0xFF05 && c <= 0xFF0A) || (c >= 0xFF0C && c <= 0xFF0F) ||
         (c >= 0xFF1A && c <= 0xFF1B) || (c >= 0xFF1F && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF3D) ||
         (c >= 0xFF5F && c <= 0xFF65);
}

// BERT's _is_chinese_char: the CJK Unified Ideographs blocks and their extensions and
// compatibility forms (not Hiragana, Katakana or Hangul, which are written with spaces).
bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_combining_mark(char32_t c) { return c >= 0x300 && c <= 0x36F; }

// Simple lower-case mapping for the scripts covered (see tokenizer.h).
char32_t to_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 0x20;  // À..Þ -> à..þ (× is not a letter)
  if (c >= 0x100 && c <= 0x17F) {                            // Latin Extended-A: case pairs
    if (c == 0x130) return 'i';  // İ: Python gives "i" + U+0307, whose dot accent stripping drops
    if (c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;  // ı ĸ ŉ ſ have no capital
    if (c == 0x178) return 0xFF;                                          // Ÿ -> ÿ
    bool even_capitals = c <= 0x137 || (c >= 0x14A && c <= 0x177);
    if (even_capitals) return c % 2 == 0 ? c + 1 : c;
    return c % 2 == 1 ? c + 1 : c;  // 0x139..0x148 and 0x179..0x17E: odd code points are capitals
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 0x20;  // Α..Ω
  if (c == 0x386) return 0x3AC;                                 // Ά
  if (c >= 0x388 && c <= 0x38A) return c + 0x25;                // Έ Ή Ί
  if (c == 0x38C) return 0x3CC;                                 // Ό
  if (c == 0x38E || c == 0x38F) return c + 0x3F;                // Ύ Ώ
  if (c >= 0x410 && c <= 0x42F) return c + 0x20;                // А..Я
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;                // Ѐ..Џ
  return c;
}

// The base letter of each code point U+00C0..U+017F under NFD ('?' where NFD leaves the letter
// whole: Æ Ð × Ø Þ ß, Đ Ħ ı Ĳ ĸ Ŀ Ł ŉ Ŋ Œ Ŧ ſ and their small forms). One row per 16 code points.
constexpr const char* kLatinBase[] = {
    "AAAAAA?CEEEEIIII",  // U+00C0  À Á Â Ã Ä Å Æ Ç È É Ê Ë Ì Í Î Ï
    "?NOOOOO??UUUUY??",  // U+00D0  Ð Ñ Ò Ó Ô Õ Ö × Ø Ù Ú Û Ü Ý Þ ß
    "aaaaaa?ceeeeiiii",  // U+00E0  à á â ã ä å æ ç è é ê ë ì í î ï
    "?nooooo??uuuuy?y",  // U+00F0  ð ñ ò ó ô õ ö ÷ ø ù ú û ü ý þ ÿ
    "AaAaAaCcCcCcCcDd",  // U+0100  Ā ā Ă ă Ą ą Ć ć Ĉ ĉ Ċ ċ Č č Ď ď
    "??EeEeEeEeEeGgGg",  // U+0110  Đ đ Ē ē Ĕ ĕ Ė ė Ę ę Ě ě Ĝ ĝ Ğ ğ
    "GgGgHh??IiIiIiIi",  // U+0120  Ġ ġ Ģ ģ Ĥ ĥ Ħ ħ Ĩ ĩ Ī ī Ĭ ĭ Į į
    "I???JjKk?LlLlLl?",  // U+0130  İ ı Ĳ ĳ Ĵ ĵ Ķ ķ ĸ Ĺ ĺ Ļ ļ Ľ ľ Ŀ
    "???NnNnNn???OoOo",  // U+0140  ŀ Ł ł Ń ń Ņ ņ Ň ň ŉ Ŋ ŋ Ō ō Ŏ ŏ
    "Oo??RrRrRrSsSsSs",  // U+0150  Ő ő Œ œ Ŕ ŕ Ŗ ŗ Ř ř Ś ś Ŝ ŝ Ş ş
    "SsTtTt??UuUuUuUu",  // U+0160  Š š Ţ ţ Ť ť Ŧ ŧ Ũ ũ Ū ū Ŭ ŭ Ů ů
    "UuUuWwYyYZzZzZz?",  // U+0170  Ű ű Ų ų Ŵ ŵ Ŷ ŷ Ÿ Ź ź Ż ż Ž ž ſ
};

// The letter without its accent (NFD base letter), or c itself when it has none.
char32_t strip_accent(char32_t c) {
  if (c >= 0xC0 && c <= 0x17F) {
    char base = kLatinBase[(c - 0xC0) / 16][(c - 0xC0) % 16];
    return base == '?' ? c : static_cast<char32_t>(base);
  }
  switch (c) {  // Greek with tonos / dialytika, Cyrillic with grave, acute, breve, diaeresis
    case 0x386: return 0x391;  case 0x388: return 0x395;  case 0x389: return 0x397;
    case 0x38A: return 0x399;  case 0x38C: return 0x39F;  case 0x38E: return 0x3A5;
    case 0x38F: return 0x3A9;  case 0x390: return 0x3B9;  case 0x3AA: return 0x399;
    case 0x3AB: return 0x3A5;  case 0x3AC: return 0x3B1;  case 0x3AD: return 0x3B5;
    case 0x3AE: return 0x3B7;  case 0x3AF: return 0x3B9;  case 0x3B0: return 0x3C5;
    case 0x3CA: return 0x3B9;  case 0x3CB: return 0x3C5;  case 0x3CC: return 0x3BF;
    case 0x3CD: return 0x3C5;  case 0x3CE: return 0x3C9;
    case 0x400: return 0x415;  case 0x401: return 0x415;  case 0x403: return 0x413;
    case 0x407: return 0x406;  case 0x40C: return 0x41A;  case 0x40D: return 0x418;
    case 0x40E: return 0x423;  case 0x419: return 0x418;  case 0x439: return 0x438;
    case 0x450: return 0x435;  case 0x451: return 0x435;  case 0x453: return 0x433;
    case 0x457: return 0x456;  case 0x45C: return 0x43A;  case 0x45D: return 0x438;
    case 0x45E: return 0x443;
    default: return c;
  }
}

}  // namespace

// ============================================================ basic tokenizer =====

// One pass over the code points does BERT's whole BasicTokenizer: _clean_text, the spaces
// around CJK, whitespace splitting, lower(), _run_strip_accents and _run_split_on_punc.
// (Lower-casing and accent stripping never make a letter into a space or a punctuation mark,
// so doing them per character, before the split, gives the same words.)
std::vector<std::string> basic_tokenize(std::string_view text, bool lowercase) {
  std::vector<std::string> words;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) words.push_back(std::move(word));
    word.clear();
  };
  auto single = [&](char32_t c) {
    flush();
    append_utf8(word, c);
    flush();
  };
  size_t i = 0;
  while (i < text.size()) {
    char32_t c = next_code_point(text, i);
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (is_whitespace(c)) {
      flush();
      continue;
    }
    if (is_cjk(c)) {
      single(c);
      continue;
    }
    if (lowercase) {  // uncased BERT: lower-case, then strip accents (drop combining marks)
      c = strip_accent(to_lower(c));
      if (is_combining_mark(c)) continue;
    }
    if (is_punctuation(c)) {
      single(c);
      continue;
    }
    append_utf8(word, c);
  }
  flush();
  return words;
}

std::string normalize_text(std::string_view text, bool lowercase) {
  std::string out;
  for (const std::string& w : basic_tokenize(text, lowercase)) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

// ================================================================ vocabulary =====

const std::vector<std::string>& special_tokens() {
  static const std::vector<std::string> specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  return specials;
}

WordPieceTokenizer::WordPieceTokenizer(std::vector<std::string> tokens, std::string source, bool lowercase)
    : tokens_(std::move(tokens)), lowercase_(lowercase) {
  ids_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const std::string& t = tokens_[i];
    MMG_CHECK(!t.empty(), "tokenizer: {}:{}: empty token (every line of a vocabulary holds one token)", source,
              i + 1);
    MMG_CHECK(t.find_first_of("\r\n") == std::string::npos, "tokenizer: {}:{}: token contains a line break",
              source, i + 1);
    auto [it, inserted] = ids_.emplace(t, static_cast<int64_t>(i));
    MMG_CHECK(inserted, "tokenizer: {}:{}: duplicate token '{}' (first on line {})", source, i + 1, t,
              it->second + 1);
  }
  int64_t* slots[] = {&pad_id_, &unk_id_, &cls_id_, &sep_id_, &mask_id_};
  for (size_t k = 0; k < special_tokens().size(); ++k) {
    auto it = ids_.find(special_tokens()[k]);
    MMG_CHECK(it != ids_.end(), "tokenizer: {}: the special token {} is missing ({} tokens; a vocabulary needs "
              "[PAD] [UNK] [CLS] [SEP] [MASK])", source, special_tokens()[k], tokens_.size());
    *slots[k] = it->second;
  }
}

WordPieceTokenizer WordPieceTokenizer::load(const std::string& vocab_path, bool lowercase) {
  std::string text = read_file(vocab_path);
  std::string_view rest(text);
  if (rest.substr(0, 3) == "\xEF\xBB\xBF") rest.remove_prefix(3);  // UTF-8 byte-order mark
  std::vector<std::string> tokens;
  while (!rest.empty()) {  // a final line break ends the last line; it does not start an empty one
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    tokens.emplace_back(line);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
  }
  return WordPieceTokenizer(std::move(tokens), vocab_path, lowercase);
}

void WordPieceTokenizer::save(const std::string& vocab_path) const {
  std::string text;
  for (const std::string& t : tokens_) {
    text += t;
    text += '\n';
  }
  write_file_atomic(vocab_path, text);
}

int64_t WordPieceTokenizer::token_to_id(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? unk_id_ : it->second;
}

const std::string& WordPieceTokenizer::id_to_token(int64_t id) const {
  MMG_CHECK(id >= 0 && id < size(), "tokenizer: id {} is out of range for a vocabulary of {} tokens", id, size());
  return tokens_[static_cast<size_t>(id)];
}

bool WordPieceTokenizer::is_special(int64_t id) const {
  return id == pad_id_ || id == unk_id_ || id == cls_id_ || id == sep_id_ || id == mask_id_;
}

// ================================================================= WordPiece =====

// Greedy longest-match-first (BERT's WordpieceTokenizer): from the current start, try the
// longest remaining substring, then shorter ones, until one is in the vocabulary ("##" in
// front unless at the word's start); take it and continue after it. If some start has no
// match the whole word is [UNK] (not just the rest), as in BERT.
std::vector<std::string> WordPieceTokenizer::wordpiece(std::string_view word) const {
  std::vector<size_t> starts = code_point_starts(word);
  size_t n = starts.size() - 1;  // characters
  if (n > static_cast<size_t>(kMaxCharsPerWord)) return {tokens_[unk_id_]};
  std::vector<std::string> pieces;
  size_t begin = 0;
  while (begin < n) {
    std::string found;
    size_t end = n;
    for (; end > begin; --end) {
      std::string candidate = begin > 0 ? "##" : "";
      candidate += word.substr(starts[begin], starts[end] - starts[begin]);
      if (ids_.count(candidate)) {
        found = std::move(candidate);
        break;
      }
    }
    if (found.empty()) return {tokens_[unk_id_]};
    pieces.push_back(std::move(found));
    begin = end;
  }
  return pieces;
}

std::vector<std::string> WordPieceTokenizer::tokenize(std::string_view text) const {
  std::vector<std::string> pieces;
  auto add_plain = [&](std::string_view part) {
    for (const std::string& w : basic_tokenize(part, lowercase_))
      for (std::string& p : wordpiece(w)) pieces.push_back(std::move(p));
  };
  // Special tokens written in the text ("a [MASK] dog") stay whole; the text between them is
  // tokenized as usual.
  size_t done = 0, pos = 0;
  while ((pos = text.find('[', pos)) != std::string_view::npos) {
    const std::string* hit = nullptr;
    for (const std::string& s : special_tokens())
      if (text.substr(pos, s.size()) == s) hit = &s;
    if (!hit) {
      ++pos;
      continue;
    }
    add_plain(text.substr(done, pos - done));
    pieces.push_back(*hit);
    pos += hit->size();
    done = pos;
  }
  add_plain(text.substr(done));
  return pieces;
}

std::vector<int64_t> WordPieceTokenizer::tokens_to_ids(const std::vector<std::string>& pieces) const {
  std::vector<int64_t> ids;
  ids.reserve(pieces.size());
  for (const std::string& p : pieces) ids.push_back(token_to_id(p));
  return ids;
}

std::vector<int64_t> WordPieceTokenizer::text_ids(std::string_view text) const {
  return tokens_to_ids(tokenize(text));
}

// ================================================================== encoding =====

int64_t Encoding::real_length() const {
  return std::count(attention_mask.begin(), attention_mask.end(), uint8_t{1});
}

Encoding WordPieceTokenizer::finish(std::vector<int64_t> ids, std::vector<int64_t> types, int64_t max_len,
                                    bool pad) const {
  Encoding e;
  e.attention_mask.assign(ids.size(), 1);
  e.ids = std::move(ids);
  e.token_type_ids = std::move(types);
  if (pad)
    while (static_cast<int64_t>(e.ids.size()) < max_len) {
      e.ids.push_back(pad_id_);
      e.attention_mask.push_back(0);
      e.token_type_ids.push_back(0);
    }
  return e;
}

Encoding WordPieceTokenizer::encode(std::string_view text, int64_t max_len, bool pad, bool truncate) const {
  MMG_CHECK(max_len >= 2, "tokenizer encode: max_len {} leaves no room for [CLS] and [SEP] (need at least 2)",
            max_len);
  std::vector<int64_t> body = text_ids(text);
  if (truncate && static_cast<int64_t>(body.size()) > max_len - 2) body.resize(static_cast<size_t>(max_len - 2));
  std::vector<int64_t> ids;
  ids.reserve(static_cast<size_t>(std::max<int64_t>(max_len, static_cast<int64_t>(body.size()) + 2)));
  ids.push_back(cls_id_);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(sep_id_);
  std::vector<int64_t> types(ids.size(), 0);
  return finish(std::move(ids), std::move(types), max_len, pad);
}

Encoding WordPieceTokenizer::encode_pair(std::string_view a, std::string_view b, int64_t max_len, bool pad,
                                         bool truncate) const {
  MMG_CHECK(max_len >= 3, "tokenizer encode_pair: max_len {} leaves no room for [CLS] [SEP] [SEP] (need at least 3)",
            max_len);
  std::vector<int64_t> ia = text_ids(a), ib = text_ids(b);
  if (truncate)  // "longest first": shorten the longer text (the second on a tie) one piece at a time
    while (static_cast<int64_t>(ia.size() + ib.size()) + 3 > max_len) {
      if (ia.size() > ib.size())
        ia.pop_back();
      else
        ib.pop_back();
    }
  std::vector<int64_t> ids{cls_id_};
  ids.insert(ids.end(), ia.begin(), ia.end());
  ids.push_back(sep_id_);
  std::vector<int64_t> types(ids.size(), 0);
  ids.insert(ids.end(), ib.begin(), ib.end());
  ids.push_back(sep_id_);
  types.resize(ids.size(), 1);
  return finish(std::move(ids), std::move(types), max_len, pad);
}

TokenBatch WordPieceTokenizer::encode_batch(const std::vector<std::string>& texts, int64_t max_len,
                                            bool truncate) const {
  std::vector<Encoding> rows;
  rows.reserve(texts.size());
  int64_t seq = max_len;
  for (const std::string& t : texts) {
    rows.push_back(encode(t, max_len, /*pad=*/false, truncate));
    seq = std::max(seq, static_cast<int64_t>(rows.back().ids.size()));
  }
  int64_t batch = static_cast<int64_t>(rows.size());
  std::vector<int64_t> ids(static_cast<size_t>(batch * seq), pad_id_);
  std::vector<bool> mask(static_cast<size_t>(batch * seq), false);
  for (int64_t r = 0; r < batch; ++r)
    for (size_t j = 0; j < rows[r].ids.size(); ++j) {
      ids[static_cast<size_t>(r * seq) + j] = rows[r].ids[j];
      mask[static_cast<size_t>(r * seq) + j] = true;
    }
  return {from_vector(ids, {batch, seq}), from_vector(mask, {batch, seq})};
}

// HF's decode: " ".join(tokens).replace(" ##", "") — a "##" piece glues to the one before it.
std::string WordPieceTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::string out;
  for (int64_t id : ids) {
    const std::string& t = id_to_token(id);
    if (skip_special && is_special(id)) continue;
    if (out.empty())
      out = t;
    else if (t.size() > 2 && t.compare(0, 2, "##") == 0)
      out.append(t, 2);
    else
      (out += ' ') += t;
  }
  return out;
}

// ================================================================== training =====

namespace {

// The training state: every distinct word as a sequence of unit ids with its corpus count,
// and the weighted counts of units and of adjacent unit pairs.
struct WordPieceTrainer {
  struct Word {
    std::vector<int32_t> units;
    int64_t count = 0;
  };
  std::vector<Word> words;
  std::vector<std::string> unit_text;
  std::unordered_map<std::string, int32_t> unit_index;
  std::vector<int64_t> unit_count;
  std::unordered_map<uint64_t, int64_t> pair_count;

  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  int32_t unit(const std::string& text) {
    auto [it, inserted] = unit_index.emplace(text, static_cast<int32_t>(unit_text.size()));
    if (inserted) {
      unit_text.push_back(text);
      unit_count.push_back(0);
    }
    return it->second;
  }

  // Adds (sign = +1) or removes (sign = -1) one word's contribution to the counts.
  void count_word(const Word& w, int64_t sign) {
    for (size_t j = 0; j < w.units.size(); ++j) {
      unit_count[w.units[j]] += sign * w.count;
      if (j + 1 < w.units.size()) {
        uint64_t k = key(w.units[j], w.units[j + 1]);
        int64_t& n = pair_count[k];
        n += sign * w.count;
        if (n == 0) pair_count.erase(k);
      }
    }
  }

  // The pair with the highest count(ab) / (count(a) count(b)) among pairs seen at least
  // min_frequency times; ties to the first (a, b) in byte order. Scores are compared exactly,
  // as n1 · (ca2 cb2) against n2 · (ca1 cb1) in 128-bit integers, so no rounding decides.
  bool best_pair(int64_t min_frequency, int32_t& best_a, int32_t& best_b) const {
    bool found = false;
    int64_t best_n = 0;
    unsigned __int128 best_denominator = 1;
    for (const auto& [k, n] : pair_count) {
      if (n < min_frequency) continue;
      int32_t a = static_cast<int32_t>(k >> 32), b = static_cast<int32_t>(k & 0xFFFFFFFFu);
      unsigned __int128 denominator = static_cast<unsigned __int128>(unit_count[a]) * unit_count[b];
      bool better = !found;
      if (found) {
        unsigned __int128 lhs = static_cast<unsigned __int128>(n) * best_denominator;
        unsigned __int128 rhs = static_cast<unsigned __int128>(best_n) * denominator;
        better = lhs > rhs ||
                 (lhs == rhs && std::tie(unit_text[a], unit_text[b]) < std::tie(unit_text[best_a], unit_text[best_b]));
      }
      if (better) {
        found = true;
        best_n = n;
        best_denominator = denominator;
        best_a = a;
        best_b = b;
      }
    }
    return found;
  }

  // Replaces every adjacent (a, b) by `merged`, left to right, updating the counts.
  void merge(int32_t a, int32_t b, int32_t merged) {
    for (Word& w : words) {
      bool has = false;
      for (size_t j = 0; j + 1 < w.units.size() && !has; ++j) has = w.units[j] == a && w.units[j + 1] == b;
      if (!has) continue;
      count_word(w, -1);
      std::vector<int32_t> out;
      out.reserve(w.units.size());
      for (size_t j = 0; j < w.units.size(); ++j) {
        if (j + 1 < w.units.size() && w.units[j] == a && w.units[j + 1] == b) {
          out.push_back(merged);
          ++j;
        } else {
          out.push_back(w.units[j]);
        }
      }
      w.units = std::move(out);
      count_word(w, +1);
    }
  }
};

}  // namespace

std::vector<std::string> train_wordpiece_vocab(const std::vector<std::string>& texts, int64_t vocab_size,
                                               int64_t min_frequency) {
  MMG_CHECK(vocab_size >= 1, "train_wordpiece: vocab_size {} must be positive", vocab_size);
  MMG_CHECK(min_frequency >= 1, "train_wordpiece: min_frequency {} must be at least 1", min_frequency);

  // 1. Count the words (an ordered map: the order of everything below is then fixed).
  //    Words too long for WordPiece would only ever be [UNK]; they do not vote.
  std::map<std::string, int64_t> word_counts;
  for (const std::string& text : texts)
    for (std::string& w : basic_tokenize(text))
      if (static_cast<int64_t>(code_point_starts(w).size()) - 1 <= WordPieceTokenizer::kMaxCharsPerWord)
        ++word_counts[std::move(w)];

  // 2. Split every word into characters: "dog" -> d ##o ##g; collect the alphabet.
  WordPieceTrainer tr;
  std::set<std::string> alphabet;  // UTF-8 byte order = code point order
  for (const auto& [text, count] : word_counts) {
    std::vector<size_t> starts = code_point_starts(text);
    WordPieceTrainer::Word w;
    w.count = count;
    for (size_t j = 0; j + 1 < starts.size(); ++j) {
      std::string ch = text.substr(starts[j], starts[j + 1] - starts[j]);
      alphabet.insert(ch);
      w.units.push_back(tr.unit(j == 0 ? ch : "##" + ch));
    }
    tr.words.push_back(std::move(w));
  }
  for (const auto& w : tr.words) tr.count_word(w, +1);

  std::vector<std::string> vocab = special_tokens();
  for (const std::string& ch : alphabet) vocab.push_back(ch);
  for (const std::string& ch : alphabet) vocab.push_back("##" + ch);
  std::unordered_set<std::string> in_vocab(vocab.begin(), vocab.end());

  // 3. Merge the best-scoring pair until the vocabulary is full or no pair is left. A merge
  //    whose result is already a token (two pairs can spell the same string) adds nothing
  //    but still removes the pair, so the loop always ends.
  int32_t a = 0, b = 0;
  while (static_cast<int64_t>(vocab.size()) < vocab_size && tr.best_pair(min_frequency, a, b)) {
    std::string merged = tr.unit_text[a] + tr.unit_text[b].substr(2);  // b is always a "##" unit
    int32_t m = tr.unit(merged);
    tr.merge(a, b, m);
    if (in_vocab.insert(merged).second) vocab.push_back(merged);
  }
  return vocab;
}

WordPieceTokenizer train_wordpiece(const std::vector<std::string>& texts, int64_t vocab_size, int64_t min_frequency) {
  return WordPieceTokenizer(train_wordpiece_vocab(texts, vocab_size, min_frequency), "<trained vocabulary>");
}

}  // namespace mmg
