// WordPiece tokenizer: normalisation, WordPiece cutting, encoding, vocab files, training and
// the `mmg tokenizer` command. Expected values come from the BERT paper/README examples,
// from the Unicode character names (for the accent table), from hand traces, and — for
// training — from a naive re-implementation of the algorithm in this file.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "core/io/atomic_file.h"
#include "core/mmgrad.h"
#include "train/commands.h"
#include "train/tokenizer.h"
#include "tests/temp_dir.h"

using namespace mmg;
namespace fs = std::filesystem;

namespace {

using Strings = std::vector<std::string>;

// A temp folder named after this file's tests.
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("mmg_tokenizer") {}
};

doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The vocabulary of the BERT README's examples ("unaffable" -> un ##aff ##able,
// "John Johanson's house" -> john johan ##son ' s house), with the specials spread out so
// that no test can pass by assuming ids 0..4.
Strings bert_readme_tokens() {
  return {"john", "[PAD]", "un", "##aff", "##able", "[UNK]", "johan", "##son", "'", "s",
          "house", "[CLS]", "[SEP]", "a", "[MASK]", "!", ","};
}

}  // namespace

// ------------------------------------------------------------ normalisation -----

TEST_CASE("tokenizer: normalisation lower-cases, strips accents and splits punctuation") {
  CHECK(normalize_text("Café Déjà") == "cafe deja");
  CHECK(basic_tokenize("a,b!") == Strings{"a", ",", "b", "!"});
  CHECK(basic_tokenize("HELLO  World") == Strings{"hello", "world"});
  CHECK(basic_tokenize("Don't stop-me now...") ==
        Strings{"don", "'", "t", "stop", "-", "me", "now", ".", ".", "."});
  CHECK(basic_tokenize("$5^2`~") == Strings{"$", "5", "^", "2", "`", "~"});  // all ASCII symbols
  CHECK(basic_tokenize("") == Strings{});
  CHECK(basic_tokenize(" \t\n ") == Strings{});
}

TEST_CASE("tokenizer: accent table covers the accented letters of Latin-1 and Latin Extended-A") {
  // Every accented small letter of Latin-1 Supplement, then the capitals (same letters).
  CHECK(normalize_text("àáâãäåçèéêëìíîïñòóôõöùúûüýÿ") == "aaaaaaceeeeiiiinooooouuuuyy");
  CHECK(normalize_text("ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝŸ") == "aaaaaaceeeeiiiinooooouuuuyy");
  // Every letter of Latin Extended-A that NFD decomposes, small then capital.
  std::string expected = std::string("aaa") + "cccc" + "d" + "eeeee" + "gggg" + "h" + "iiii" + "j" + "k" + "lll" +
                         "nnn" + "ooo" + "rrr" + "ssss" + "tt" + "uuuuuu" + "w" + "y" + "zzz";
  CHECK(normalize_text("āăąćĉċčďēĕėęěĝğġģĥĩīĭįĵķĺļľńņňōŏőŕŗřśŝşšţťũūŭůűųŵŷźżž") == expected);
  CHECK(normalize_text("ĀĂĄĆĈĊČĎĒĔĖĘĚĜĞĠĢĤĨĪĬĮĴĶĹĻĽŃŅŇŌŎŐŔŖŘŚŜŞŠŢŤŨŪŬŮŰŲŴŶŹŻŽ") == expected);
  CHECK(normalize_text("İstanbul") == "istanbul");
  // Letters NFD does not decompose keep their form (lower-cased), as in BERT.
  CHECK(normalize_text("æøßðþđħłœŋı") == "æøßðþđħłœŋı");
  CHECK(normalize_text("ÆØÐÞĐĦŁŒŊ") == "æøðþđħłœŋ");
  CHECK(normalize_text("Łódź Škoda Ångström") == "łodz skoda angstrom");
  // Text already decomposed (e + U+0301 combining acute) loses the mark too.
  CHECK(normalize_text("Cafe\xCC\x81") == "cafe");
  // Greek and Cyrillic capitals and accents.
  CHECK(normalize_text("Άλφα ΕΛΛΆΔΑ") == "αλφα ελλαδα");
  CHECK(normalize_text("Ёжик Йогурт") == "ежик иогурт");
  // Outside the tables (Latin Extended Additional) letters keep their accents.
  CHECK(normalize_text("Việt") == "vi\xe1\xbb\x87t");
  // Cased mode keeps case and accents.
  CHECK(basic_tokenize("Café Déjà!", /*lowercase=*/false) == Strings{"Café", "Déjà", "!"});
}

TEST_CASE("tokenizer: whitespace, control characters and invalid UTF-8 are cleaned") {
  CHECK(basic_tokenize("a\tb\nc\r\nd") == Strings{"a", "b", "c", "d"});
  CHECK(basic_tokenize("a\xC2\xA0" "b\xE2\x80\x83" "c\xE3\x80\x80" "d") == Strings{"a", "b", "c", "d"});  // nbsp, em, ideographic space
  CHECK(basic_tokenize("a\x01" "b\x7F" "c\xE2\x80\x8B" "d\xC2\xAD" "e") == Strings{"abcde"});  // controls, ZWSP, soft hyphen
  CHECK(basic_tokenize("\xEF\xBB\xBFhi") == Strings{"hi"});                                    // byte-order mark
  CHECK(basic_tokenize("a\xFF" "b\xC3" "c") == Strings{"abc"});                                // invalid bytes
  CHECK(basic_tokenize("a\xEF\xBF\xBD" "b") == Strings{"ab"});                                 // U+FFFD itself
  CHECK(basic_tokenize("\xC0\xAF") == Strings{});  // overlong "/" is not punctuation, just invalid
}

TEST_CASE("tokenizer: Unicode punctuation and CJK ideographs are single tokens") {
  CHECK(basic_tokenize("wait\xE2\x80\x94what\xE2\x80\xA6") == Strings{"wait", "\xE2\x80\x94", "what", "\xE2\x80\xA6"});  // — …
  CHECK(basic_tokenize("\xE2\x80\x9Chi\xE2\x80\x9D") == Strings{"\xE2\x80\x9C", "hi", "\xE2\x80\x9D"});                // “hi”
  CHECK(basic_tokenize("\xC2\xBFqu\xC3\xA9?") == Strings{"\xC2\xBF", "que", "?"});                                    // ¿qué?
  CHECK(basic_tokenize("我爱ni好") == Strings{"我", "爱", "ni", "好"});
  CHECK(basic_tokenize("北京。") == Strings{"北", "京", "。"});
  // Hiragana is not in BERT's CJK ranges: it stays one word.
  CHECK(basic_tokenize("ひらがな") == Strings{"ひらがな"});
}

// --------------------------------------------------------------- WordPiece -----

TEST_CASE("tokenizer: WordPiece cuts words as in the BERT README") {
  WordPieceTokenizer tok(bert_readme_tokens());
  CHECK(tok.wordpiece("unaffable") == Strings{"un", "##aff", "##able"});
  CHECK(tok.tokenize("John Johanson's house") == Strings{"john", "johan", "##son", "'", "s", "house"});
  CHECK(tok.tokenize("UNAFFABLE!") == Strings{"un", "##aff", "##able", "!"});
  CHECK(tok.cls_id() == 11);
  CHECK(tok.sep_id() == 12);
  CHECK(tok.pad_id() == 1);
  CHECK(tok.unk_id() == 5);
  CHECK(tok.mask_id() == 14);
  CHECK(tok.tokens_to_ids(tok.tokenize("unaffable house")) == std::vector<int64_t>{2, 3, 4, 10});
}

TEST_CASE("tokenizer: WordPiece is greedy longest-match-first") {
  WordPieceTokenizer tok({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "ab", "abc", "##d", "##cd", "##b", "##c"});
  // Longest first piece wins even though ab ##cd would also cut the word.
  CHECK(tok.wordpiece("abcd") == Strings{"abc", "##d"});
  CHECK(tok.wordpiece("abd") == Strings{"ab", "##d"});
  CHECK(tok.wordpiece("abcbc") == Strings{"abc", "##b", "##c"});
}

TEST_CASE("tokenizer: words without a cut, and over-long words, become one [UNK]") {
  WordPieceTokenizer tok(bert_readme_tokens());
  CHECK(tok.wordpiece("unaffablez") == Strings{"[UNK]"});  // not un ##aff ##able [UNK]
  CHECK(tok.tokenize("john xyz house") == Strings{"john", "[UNK]", "house"});
  CHECK(tok.token_to_id("xyz") == tok.unk_id());

  WordPieceTokenizer as({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##a"});
  Strings hundred = as.wordpiece(std::string(100, 'a'));
  REQUIRE(hundred.size() == 100);
  CHECK(hundred[0] == "a");
  CHECK(std::all_of(hundred.begin() + 1, hundred.end(), [](const std::string& p) { return p == "##a"; }));
  CHECK(as.wordpiece(std::string(101, 'a')) == Strings{"[UNK]"});
  // The limit counts characters, not bytes: 60 two-byte "ß" (120 bytes) still get cut.
  WordPieceTokenizer eszett({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\xC3\x9F", "##\xC3\x9F"});
  std::string sharp_s;
  for (int i = 0; i < 60; ++i) sharp_s += "\xC3\x9F";
  CHECK(eszett.wordpiece(sharp_s).size() == 60);
}

TEST_CASE("tokenizer: special tokens written in the text stay whole") {
  WordPieceTokenizer tok(bert_readme_tokens());
  CHECK(tok.tokenize("john [MASK] house") == Strings{"john", "[MASK]", "house"});
  CHECK(tok.tokenize("[CLS]john[SEP]") == Strings{"[CLS]", "john", "[SEP]"});
  // Not a special token: the brackets are punctuation.
  CHECK(tok.tokenize("[mask]") == Strings{"[UNK]", "[UNK]", "[UNK]"});
}

// ---------------------------------------------------------------- encoding -----

TEST_CASE("tokenizer: encode adds [CLS]/[SEP], pads, truncates and masks") {
  WordPieceTokenizer tok(bert_readme_tokens());
  const int64_t C = 11, S = 12, P = 1, JOHN = 0, HOUSE = 10;

  Encoding e = tok.encode("John house", 6);
  CHECK(e.ids == std::vector<int64_t>{C, JOHN, HOUSE, S, P, P});
  CHECK(e.attention_mask == std::vector<uint8_t>{1, 1, 1, 1, 0, 0});
  CHECK(e.token_type_ids == std::vector<int64_t>(6, 0));
  CHECK(e.real_length() == 4);

  CHECK(tok.encode("John house", 6, /*pad=*/false).ids == std::vector<int64_t>{C, JOHN, HOUSE, S});
  Encoding cut = tok.encode("john house john house", 4);
  CHECK(cut.ids == std::vector<int64_t>{C, JOHN, HOUSE, S});
  CHECK(cut.attention_mask == std::vector<uint8_t>{1, 1, 1, 1});
  Encoding whole = tok.encode("john house john house", 4, /*pad=*/true, /*truncate=*/false);
  CHECK(whole.ids == std::vector<int64_t>{C, JOHN, HOUSE, JOHN, HOUSE, S});
  CHECK(whole.real_length() == 6);
  // Truncation may cut inside a word (as in BERT): the pieces, not the words, are counted.
  CHECK(tok.encode("unaffable", 4).ids == std::vector<int64_t>{C, 2, 3, S});
  CHECK(tok.encode("", 3).ids == std::vector<int64_t>{C, S, P});
  CHECK_THROWS_WITH_AS(tok.encode("john", 1), doctest::Contains("max_len 1 leaves no room for [CLS] and [SEP]"),
                       Error);
}

TEST_CASE("tokenizer: encode_pair types and longest-first truncation") {
  WordPieceTokenizer tok(bert_readme_tokens());
  const int64_t C = 11, S = 12, P = 1, JOHN = 0, HOUSE = 10;
  Encoding e = tok.encode_pair("john house", "unaffable", 10);
  CHECK(e.ids == std::vector<int64_t>{C, JOHN, HOUSE, S, 2, 3, 4, S, P, P});
  CHECK(e.token_type_ids == std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1, 0, 0});
  CHECK(e.attention_mask == std::vector<uint8_t>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0});
  // 4 + 1 pieces into 6 - 3 = 3 places: the longer first text loses two pieces.
  Encoding t = tok.encode_pair("john house john house", "house", 6);
  CHECK(t.ids == std::vector<int64_t>{C, JOHN, HOUSE, S, HOUSE, S});
  // Equal lengths: the second text gives way first.
  Encoding u = tok.encode_pair("john house", "house john", 6);
  CHECK(u.ids == std::vector<int64_t>{C, JOHN, HOUSE, S, HOUSE, S});
  CHECK_THROWS_WITH_AS(tok.encode_pair("a", "b", 2), doctest::Contains("max_len 2"), Error);
}

TEST_CASE("tokenizer: encode_batch gives [B,S] i64 ids and a bool mask") {
  WordPieceTokenizer tok(bert_readme_tokens());
  Strings texts = {"john house", "unaffable john's house!", ""};
  TokenBatch b = tok.encode_batch(texts, 7);
  REQUIRE(b.ids.shape() == Shape{3, 7});
  REQUIRE(b.attention_mask.shape() == Shape{3, 7});
  CHECK(b.ids.dtype() == DType::i64);
  CHECK(b.attention_mask.dtype() == DType::boolean);
  auto ids = b.ids.to_vector<int64_t>();
  auto mask = b.attention_mask.to_vector<int64_t>();
  // Row by row: [CLS] + pieces (cut to 5) + [SEP], then [PAD]s with mask 0.
  std::vector<std::vector<int64_t>> expected = {{11, 0, 10, 12, 1, 1, 1},
                                                {11, 2, 3, 4, 0, 8, 12},  // un ##aff ##able john ' (s house ! cut)
                                                {11, 12, 1, 1, 1, 1, 1}};
  std::vector<int64_t> real = {4, 7, 2};
  for (int r = 0; r < 3; ++r)
    for (int j = 0; j < 7; ++j) {
      CHECK(ids[r * 7 + j] == expected[r][j]);
      CHECK(mask[r * 7 + j] == (j < real[r] ? 1 : 0));
    }
  // Without truncation the batch widens to its longest text.
  TokenBatch wide = tok.encode_batch(texts, 4, /*truncate=*/false);
  CHECK(wide.ids.shape() == Shape{3, 10});
  CHECK(wide.attention_mask.to_vector<int64_t>()[9] == 0);
  CHECK(wide.attention_mask.to_vector<int64_t>()[19] == 1);
}

TEST_CASE("tokenizer: decode glues ## pieces and round-trips in-vocabulary text") {
  WordPieceTokenizer tok(bert_readme_tokens());
  std::string text = "John Johanson's house, unaffable!";
  Encoding e = tok.encode(text, 16);
  CHECK(tok.decode(e.ids) == "john johanson ' s house , unaffable !");
  CHECK(tok.decode(e.ids) == normalize_text(text));
  CHECK(tok.decode(tok.encode("john", 5).ids, /*skip_special=*/false) == "[CLS] john [SEP] [PAD] [PAD]");
  CHECK(tok.decode({3, 4}) == "##affable");  // a leading ## piece keeps its prefix, as in HF
  CHECK(tok.decode({}) == "");
  CHECK_THROWS_WITH_AS(tok.decode({0, 17}), doctest::Contains("id 17 is out of range for a vocabulary of 17"),
                       Error);
  CHECK_THROWS_WITH_AS(tok.decode({-1}), doctest::Contains("id -1 is out of range"), Error);
}

// ------------------------------------------------------------ vocab files -----

TEST_CASE("tokenizer: vocab.txt save/load round trip in the Hugging Face format") {
  TempDir dir;
  WordPieceTokenizer tok(bert_readme_tokens());
  std::string path = dir.file("vocab.txt");
  tok.save(path);
  // One token per line, line n holding id n-1, each line ended by a newline.
  std::string expected;
  for (const std::string& t : bert_readme_tokens()) expected += t + "\n";
  CHECK(read_file(path) == expected);
  CHECK(dir.listing() == Strings{"vocab.txt"});  // no temporary file left behind

  WordPieceTokenizer back = WordPieceTokenizer::load(path);
  CHECK(back.tokens() == bert_readme_tokens());
  CHECK(back.cls_id() == 11);
  CHECK(back.encode("unaffable", 8).ids == tok.encode("unaffable", 8).ids);

  // Windows line ends, a byte-order mark and a missing final newline are accepted.
  write_text(dir.file("crlf.txt"), "\xEF\xBB\xBF[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\ncat");
  WordPieceTokenizer crlf = WordPieceTokenizer::load(dir.file("crlf.txt"));
  CHECK(crlf.tokens() == Strings{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat"});
  CHECK(crlf.tokenize("Cat") == Strings{"cat"});

  // Saving over an existing file replaces it.
  WordPieceTokenizer(Strings{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}).save(path);
  CHECK(WordPieceTokenizer::load(path).size() == 5);
}

TEST_CASE("tokenizer: bad vocabulary files are reported with file and line") {
  TempDir dir;
  std::string dup = dir.file("dup.txt");
  write_text(dup, "[PAD]\n[UNK]\n[CLS]\ncat\n[SEP]\n[MASK]\ncat\n");
  CHECK_THROWS_WITH_AS(WordPieceTokenizer::load(dup),
                       contains(dup + ":7: duplicate token 'cat' (first on line 4)"), Error);

  std::string empty = dir.file("empty.txt");
  write_text(empty, "[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n[MASK]\n");
  CHECK_THROWS_WITH_AS(WordPieceTokenizer::load(empty), contains(empty + ":3: empty token"), Error);

  std::string trailing = dir.file("trailing.txt");  // a blank line at the end is an empty token too
  write_text(trailing, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n\n");
  CHECK_THROWS_WITH_AS(WordPieceTokenizer::load(trailing), contains(trailing + ":6: empty token"), Error);

  std::string nomask = dir.file("nomask.txt");
  write_text(nomask, "[PAD]\n[UNK]\n[CLS]\n[SEP]\ncat\n");
  CHECK_THROWS_WITH_AS(WordPieceTokenizer::load(nomask),
                       contains(nomask + ": the special token [MASK] is missing (5 tokens"), Error);

  std::string missing = dir.file("missing.txt");
  CHECK_THROWS_WITH_AS(WordPieceTokenizer::load(missing), contains("read " + missing + ": cannot open"),
                       Error);

  // In-memory vocabularies report the position the same way.
  CHECK_THROWS_WITH_AS(WordPieceTokenizer(Strings{"[PAD]", "[UNK]", "[PAD]"}),
                       doctest::Contains("<vocabulary>:3: duplicate token '[PAD]' (first on line 1)"), Error);
  CHECK_THROWS_WITH_AS(WordPieceTokenizer(Strings{"[PAD]", "a\nb"}), doctest::Contains(":2: token contains a line break"),
                       Error);

  // A failed save (no such directory) throws naming the path and leaves nothing behind.
  WordPieceTokenizer tok(bert_readme_tokens());
  std::string nowhere = dir.file("no/such/dir/vocab.txt");
  CHECK_THROWS_WITH_AS(tok.save(nowhere), contains("write " + nowhere), Error);
  CHECK(dir.listing() == Strings{"dup.txt", "empty.txt", "nomask.txt", "trailing.txt"});
}

// ---------------------------------------------------------------- training -----

namespace {

// The training algorithm written the slow, obvious way: every round recounts everything from
// the current splits, with string units and ordered maps; the best score is kept with a
// strict ">" while walking the pairs in (a, b) order, which is the tie-break.
Strings naive_train(const Strings& texts, size_t vocab_size, int64_t min_frequency) {
  std::map<std::string, int64_t> word_count;
  for (const auto& t : texts)
    for (const auto& w : basic_tokenize(t)) ++word_count[w];
  std::vector<std::pair<Strings, int64_t>> splits;
  std::set<std::string> chars;
  for (const auto& [w, n] : word_count) {  // ASCII corpus: a character is a byte
    Strings units;
    for (size_t j = 0; j < w.size(); ++j) {
      chars.insert(w.substr(j, 1));
      units.push_back(j == 0 ? w.substr(j, 1) : "##" + w.substr(j, 1));
    }
    splits.push_back({units, n});
  }
  Strings vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (const auto& c : chars) vocab.push_back(c);
  for (const auto& c : chars) vocab.push_back("##" + c);
  while (vocab.size() < vocab_size) {
    std::map<std::string, int64_t> unit;
    std::map<std::pair<std::string, std::string>, int64_t> pair;
    for (const auto& [units, n] : splits)
      for (size_t j = 0; j < units.size(); ++j) {
        unit[units[j]] += n;
        if (j + 1 < units.size()) pair[{units[j], units[j + 1]}] += n;
      }
    const std::pair<std::string, std::string>* best = nullptr;
    int64_t best_num = 0, best_den = 1;
    for (const auto& [p, n] : pair) {
      if (n < min_frequency) continue;
      int64_t den = unit[p.first] * unit[p.second];
      if (!best || n * best_den > best_num * den) {
        best = &p;
        best_num = n;
        best_den = den;
      }
    }
    if (!best) break;
    std::string merged = best->first + best->second.substr(2);
    for (auto& [units, n] : splits) {
      Strings out;
      for (size_t j = 0; j < units.size(); ++j) {
        if (j + 1 < units.size() && units[j] == best->first && units[j + 1] == best->second) {
          out.push_back(merged);
          ++j;
        } else {
          out.push_back(units[j]);
        }
      }
      units = out;
    }
    if (std::find(vocab.begin(), vocab.end(), merged) == vocab.end()) vocab.push_back(merged);
  }
  return vocab;
}

Strings caption_corpus() {
  Strings colours = {"red", "green", "blue", "yellow", "purple", "cyan"};
  Strings shapes = {"circle", "square", "triangle", "diamond"};
  Strings relations = {"left of", "right of", "above", "below"};
  Strings texts;
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    auto pick = [&](const Strings& v) { return v[rng() % v.size()]; };
    texts.push_back(fmt::format("A {} {} {} {} a {} {}.", rng() % 2 ? "small" : "large", pick(colours),
                                pick(shapes), pick(relations), pick(colours), pick(shapes)));
  }
  texts.push_back("How many circles are there? Three.");
  texts.push_back("Is the red square left of the triangle? Yes!");
  return texts;
}

}  // namespace

TEST_CASE("tokenizer: training matches a naive re-implementation of the WordPiece merges") {
  Strings texts = caption_corpus();
  for (int64_t size : {40, 60, 90, 150, 400})
    for (int64_t min_freq : {1, 3}) {
      CAPTURE(size);
      CAPTURE(min_freq);
      CHECK(train_wordpiece_vocab(texts, size, min_freq) == naive_train(texts, static_cast<size_t>(size), min_freq));
    }
  // Hand trace on {"ab" x2, "ac"}: units a(3) ##b(2) ##c(1); scores ab 2/(3*2)=1/3, ac 1/(3*1)=1/3:
  // a tie, broken by byte order: (a, ##b) first; then (a, ##c) is the only pair left.
  Strings v = train_wordpiece_vocab({"ab ab ac"}, 100);
  CHECK(v == Strings{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "##a", "##b", "##c", "ab", "ac"});
}

TEST_CASE("tokenizer: a trained vocabulary is deterministic and holds the frequent words") {
  Strings texts = caption_corpus();
  Strings v1 = train_wordpiece_vocab(texts, 120);
  Strings shuffled = texts;
  std::reverse(shuffled.begin(), shuffled.end());
  CHECK(train_wordpiece_vocab(shuffled, 120) == v1);  // depends on the counts only
  CHECK(v1.size() == 120);
  CHECK(Strings(v1.begin(), v1.begin() + 5) == special_tokens());

  // Given room, merging goes on until no pair is left: every word of the corpus, the frequent
  // ones (the colours, shapes, sizes, "a", "of", ".") included, is then a single token.
  std::map<std::string, int64_t> freq;
  for (const auto& t : texts)
    for (const auto& w : basic_tokenize(t)) ++freq[w];
  WordPieceTokenizer tok = train_wordpiece(texts, 300);
  CHECK(tok.size() < 300);  // merges ran out before the budget did
  int frequent = 0;
  for (const auto& [w, n] : freq) {
    CAPTURE(w);
    CHECK(tok.wordpiece(w) == Strings{w});
    frequent += n >= 100;
  }
  CHECK(frequent >= 10);
  // With little room, "of" (frequent, and its letters rare elsewhere) is among the first merges.
  CHECK(train_wordpiece(texts, 60).wordpiece("of") == Strings{"of"});

  // With merging blocked, the vocabulary is exactly specials + characters + ##characters.
  std::set<char> chars;
  for (const auto& [w, n] : freq) chars.insert(w.begin(), w.end());
  CHECK(train_wordpiece_vocab(texts, 1000, /*min_frequency=*/1000000).size() == 5 + 2 * chars.size());
}

TEST_CASE("tokenizer: every word of the training corpus encodes without [UNK]") {
  Strings texts = caption_corpus();
  texts.push_back("Crème brûlée, naïve façade — 東京!");  // non-ASCII characters join the alphabet
  for (int64_t size : {5, 50, 100, 250}) {
    CAPTURE(size);
    WordPieceTokenizer tok = train_wordpiece(texts, size);
    for (const auto& t : texts) {
      Encoding e = tok.encode(t, 64);
      CHECK(std::count(e.ids.begin(), e.ids.end(), tok.unk_id()) == 0);
      CHECK(tok.decode(e.ids) == normalize_text(t));  // and decodes back to the normalised text
    }
  }
  CHECK_THROWS_WITH_AS(train_wordpiece_vocab(texts, 0), doctest::Contains("vocab_size 0"), Error);
  CHECK_THROWS_WITH_AS(train_wordpiece_vocab(texts, 10, 0), doctest::Contains("min_frequency 0"), Error);
}

// ----------------------------------------------------------- mmg tokenizer -----

TEST_CASE("tokenizer: the train command reads .txt and .jsonl corpora and writes a loadable vocab.txt") {
  TempDir dir;
  write_text(dir.file("captions.txt"), "A red circle.\r\n\n  \nA blue square left of a red circle.\n");
  CHECK(read_tokenizer_corpus(dir.file("captions.txt")) ==
        Strings{"A red circle.", "A blue square left of a red circle."});

  write_text(dir.file("captions.jsonl"),
             "{\"image\": \"0.png\", \"caption\": \"A red circle.\"}\n"
             "\n"
             "{\"image\": \"1.png\", \"captions\": [\"two squares\", \"a pair of squares\"], \"label\": 3}\n"
             "{\"image\": \"2.png\", \"question\": \"What colour?\", \"answer\": \"blue\", \"label\": \"cat\"}\n");
  CHECK(read_tokenizer_corpus(dir.file("captions.jsonl")) ==
        Strings{"A red circle.", "two squares", "a pair of squares", "What colour?", "blue", "cat"});

  TokenizerTrainOptions opt;
  opt.input = dir.file("captions.jsonl");
  opt.out = dir.file("vocab.txt");
  opt.vocab_size = 60;
  CHECK(run_tokenizer_train(opt) == 0);
  WordPieceTokenizer tok = WordPieceTokenizer::load(opt.out);
  CHECK(tok.tokens() == train_wordpiece_vocab(read_tokenizer_corpus(opt.input), 60));
  Encoding e = tok.encode("What colour? A pair of red squares.", 32);
  CHECK(std::count(e.ids.begin(), e.ids.end(), tok.unk_id()) == 0);
}

TEST_CASE("tokenizer: corpus errors name the file and line") {
  TempDir dir;
  std::string bad = dir.file("bad.jsonl");
  write_text(bad, "{\"caption\": \"ok\"}\n{\"caption\": \"broken\"\n");
  CHECK_THROWS_WITH_AS(read_tokenizer_corpus(bad), contains(bad + ":2: not valid JSON"), Error);

  write_text(bad, "{\"caption\": \"ok\"}\n\n{\"image\": \"3.png\"}\n");
  CHECK_THROWS_WITH_AS(read_tokenizer_corpus(bad), contains(bad + ":3: no text field"), Error);

  write_text(bad, "{\"caption\": 5}\n");
  CHECK_THROWS_WITH_AS(read_tokenizer_corpus(bad),
                       contains(bad + ":1: field 'caption' must be a string or an array of strings"), Error);

  write_text(bad, "[\"caption\"]\n");
  CHECK_THROWS_WITH_AS(read_tokenizer_corpus(bad), contains(bad + ":1: a JSON line must be an object"),
                       Error);

  std::string blank = dir.file("blank.txt");
  write_text(blank, "\n \n");
  CHECK_THROWS_WITH_AS(read_tokenizer_corpus(blank), contains(blank + ": no text found"), Error);
}
