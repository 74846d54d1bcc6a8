// WordPiece tokenizer, compatible with BERT's uncased `vocab.txt` files.
//
// Text becomes ids in two stages, as in BERT (Devlin et al. 2018, google-research/bert
// tokenization.py, and Hugging Face's BertTokenizer):
//
//   1. basic tokenization (normalisation): drop control characters, turn every kind of
//      whitespace into a space, put spaces around CJK ideographs, lower-case, strip accents,
//      split off punctuation. "Café, Déjà-vu!" -> [cafe] [,] [deja] [-] [vu] [!]
//   2. WordPiece: each word is cut into the longest vocabulary pieces from the left; a piece
//      that continues a word carries the prefix "##".  "unaffable" -> un ##aff ##able.
//      A word with no such cut (or longer than 100 characters) becomes [UNK].
//
// Unicode coverage (there is no ICU here; these small tables are the whole story):
//   - lower-casing: ASCII, Latin-1 Supplement, Latin Extended-A, Greek and Cyrillic
//     capitals; other scripts are left as they are.
//   - accent stripping (NFD, then drop the combining marks): the accented letters of Latin-1
//     Supplement (À..ÿ) and Latin Extended-A (Ā..ž), Greek letters with tonos/dialytika, the
//     common Cyrillic letters with a breve or diaeresis (й ё ї ў ...), and any combining
//     mark U+0300..U+036F already present in the text. Letters that NFD does not decompose
//     (æ ø ß ð þ đ ł œ ı ...) stay as they are, as in BERT. Latin Extended Additional
//     (Vietnamese ệ, ...) is not covered: such letters keep their accents.
//   - control characters (removed): C0/C1 controls except tab/newline/CR, the format
//     characters (soft hyphen, zero-width spaces and joiners, bidi marks, BOM, ...) and the
//     private-use area; invalid UTF-8 bytes count as U+FFFD and are removed too.
//   - whitespace: space, tab, newline, CR, no-break space, the U+2000..U+200A spaces,
//     U+2028/U+2029, U+202F, U+205F, U+3000.
//   - punctuation (each one its own token): all ASCII symbols (!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~),
//     Latin-1 ¡ § « ¶ · » ¿, the visible characters of General Punctuation U+2010..U+205E
//     (dashes, quotes, …, ‰, ...), CJK punctuation (、。「」...) and full-width punctuation.
//   - CJK ideographs (each one its own token): the ranges of BERT's _is_chinese_char.
//
// Special tokens [PAD] [UNK] [CLS] [SEP] [MASK] take their ids from the vocabulary. They are
// never split when they appear literally in a text ("a [MASK] dog" keeps [MASK] whole),
// as in Hugging Face's tokenizer.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace mmg {

// ---- stage 1: normalisation and basic tokenization ----

// Lower-cases (when `lowercase`) and strips accents (when `lowercase`, as BERT uncased
// does), removes control characters and collapses whitespace; the words and punctuation
// marks of the result are separated by single spaces.  "Café  Déjà!" -> "cafe deja !"
std::string normalize_text(std::string_view text, bool lowercase = true);

// The words and punctuation marks of the text, normalised (BERT's BasicTokenizer).
std::vector<std::string> basic_tokenize(std::string_view text, bool lowercase = true);

// ---- stage 2: WordPiece over a vocabulary ----

// One encoded sequence. All three vectors have the same length.
struct Encoding {
  std::vector<int64_t> ids;             // [CLS] pieces... [SEP] [PAD]...
  std::vector<uint8_t> attention_mask;  // 1 for a real token, 0 for padding
  std::vector<int64_t> token_type_ids;  // 0 for the first text, 1 for the second of a pair
  int64_t real_length() const;          // number of non-padding tokens
};

// A batch of encodings as tensors, ready for a text encoder.
struct TokenBatch {
  Tensor ids;             // [B,S] i64
  Tensor attention_mask;  // [B,S] bool, true for a real token
};

class WordPieceTokenizer {
 public:
  static constexpr int64_t kMaxCharsPerWord = 100;  // longer words become [UNK], as in BERT

  // `tokens[i]` gets id i. `source` names where the tokens came from (a file path) in error
  // messages, which give the line (i + 1) of the fault: an empty token, a duplicate, a line
  // break inside a token, or a missing special token.
  explicit WordPieceTokenizer(std::vector<std::string> tokens, std::string source = "<vocabulary>",
                              bool lowercase = true);

  // A Hugging Face `vocab.txt`: one token per line, id = line number - 1 (CRLF line ends and
  // a UTF-8 byte-order mark are accepted).
  static WordPieceTokenizer load(const std::string& vocab_path, bool lowercase = true);
  // Writes the vocabulary in the same format, atomically (a crash leaves no half file).
  void save(const std::string& vocab_path) const;

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  const std::vector<std::string>& tokens() const { return tokens_; }
  bool contains(const std::string& token) const { return ids_.count(token) != 0; }
  int64_t token_to_id(const std::string& token) const;  // the [UNK] id for an unknown token
  const std::string& id_to_token(int64_t id) const;     // throws on an id out of range

  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  int64_t cls_id() const { return cls_id_; }
  int64_t sep_id() const { return sep_id_; }
  int64_t mask_id() const { return mask_id_; }
  bool is_special(int64_t id) const;

  // WordPiece pieces of one normalised word: greedy longest match first, "##" on every piece
  // after the first; {"[UNK]"} when no cut exists or the word has more than 100 characters.
  std::vector<std::string> wordpiece(std::string_view word) const;
  // Normalise, split into words, cut each into pieces (special tokens in the text stay whole).
  std::vector<std::string> tokenize(std::string_view text) const;
  std::vector<int64_t> tokens_to_ids(const std::vector<std::string>& pieces) const;

  // [CLS] pieces [SEP], then [PAD] up to max_len when `pad`. With `truncate`, the pieces are
  // cut to fit max_len; without it a longer text keeps all its pieces (and is not padded).
  Encoding encode(std::string_view text, int64_t max_len, bool pad = true, bool truncate = true) const;
  // [CLS] a [SEP] b [SEP] with token types 0 (a, its [CLS] and [SEP]) and 1 (b and its [SEP]).
  // Truncation removes pieces from the end of the longer text first, one at a time.
  Encoding encode_pair(std::string_view a, std::string_view b, int64_t max_len, bool pad = true,
                       bool truncate = true) const;
  // Every text padded to the same length S: max_len, or the longest text when it is longer
  // and `truncate` is off.
  TokenBatch encode_batch(const std::vector<std::string>& texts, int64_t max_len, bool truncate = true) const;

  // Tokens joined by spaces, "##" pieces glued to the piece before them; special tokens
  // (including [PAD] and [UNK]) left out when `skip_special`, as in Hugging Face:
  // the ids of [CLS] un ##aff ##able ! [SEP] decode to "unaffable !".
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = true) const;

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
  bool lowercase_ = true;
  int64_t pad_id_ = 0, unk_id_ = 0, cls_id_ = 0, sep_id_ = 0, mask_id_ = 0;

  std::vector<int64_t> text_ids(std::string_view text) const;
  Encoding finish(std::vector<int64_t> ids, std::vector<int64_t> types, int64_t max_len, bool pad) const;
};

// ---- training a vocabulary ----

// The special tokens, in the order a trained vocabulary lists them (ids 0..4).
const std::vector<std::string>& special_tokens();

// Learns a WordPiece vocabulary from texts (Schuster & Nakajima 2012, as described for BERT):
//   1. the texts are basic-tokenized and their words counted;
//   2. the vocabulary starts with the special tokens, then every character seen, both as a
//      word start "c" and as a continuation "##c" (so every word of the corpus can be cut);
//   3. each word is split into characters ("dog" -> d ##o ##g), and then, repeatedly, the
//      adjacent pair (a, b) with the highest likelihood score
//          score(a, b) = count(a b) / (count(a) · count(b))
//      (counts weighted by word frequency) is merged into one unit and added to the
//      vocabulary, among pairs seen at least `min_frequency` times; ties go to the pair
//      whose (a, b) is first in byte order, so the result is deterministic.
// Stops at `vocab_size` tokens or when no pair is left. The specials and the alphabet are
// always kept, so a vocabulary can be larger than `vocab_size` if the corpus has more
// characters than that.
std::vector<std::string> train_wordpiece_vocab(const std::vector<std::string>& texts, int64_t vocab_size,
                                               int64_t min_frequency = 1);
WordPieceTokenizer train_wordpiece(const std::vector<std::string>& texts, int64_t vocab_size,
                                   int64_t min_frequency = 1);

}  // namespace mmg
