// `mmg tokenizer train` and `mmg tokenizer encode`: learn a WordPiece vocabulary from
// captions, and show how a vocabulary cuts a text into tokens and ids.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "train/commands.h"
#include "train/tokenizer.h"

namespace mmg {

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_blank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

// The text fields of one JSON line: caption(s), text, question, answer, label; each a string
// or an array of strings.
void collect_json_texts(const nlohmann::json& obj, const std::string& where, std::vector<std::string>& out) {
  MMG_CHECK(obj.is_object(), "tokenizer train: {}: a JSON line must be an object, not {}", where, obj.type_name());
  size_t before = out.size();
  for (const char* field : {"caption", "captions", "text", "question", "answer", "label"}) {
    auto it = obj.find(field);
    if (it == obj.end()) continue;
    if (it->is_string()) {
      out.push_back(it->get<std::string>());
      continue;
    }
    if (it->is_number() && std::string(field) == "label") continue;  // a class index carries no words
    MMG_CHECK(it->is_array(), "tokenizer train: {}: field '{}' must be a string or an array of strings, not {}",
              where, field, it->type_name());
    for (const auto& v : *it) {
      MMG_CHECK(v.is_string(), "tokenizer train: {}: field '{}' holds a {}, not a string", where, field,
                v.type_name());
      out.push_back(v.get<std::string>());
    }
  }
  MMG_CHECK(out.size() > before || obj.contains("label"),
            "tokenizer train: {}: no text field (caption, captions, text, question, answer or label)", where);
}

}  // namespace

std::vector<std::string> read_tokenizer_corpus(const std::string& path) {
  std::string contents = read_file(path);
  bool jsonl = ends_with(path, ".jsonl") || ends_with(path, ".json");
  std::vector<std::string> texts;
  std::string_view rest(contents);
  for (size_t line_no = 1; !rest.empty(); ++line_no) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (is_blank(line)) continue;
    if (!jsonl) {
      texts.emplace_back(line);
      continue;
    }
    std::string where = fmt::format("{}:{}", path, line_no);
    nlohmann::json obj = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    MMG_CHECK(!obj.is_discarded(), "tokenizer train: {}: not valid JSON: {}", where,
              std::string(line.substr(0, 80)));
    collect_json_texts(obj, where, texts);
  }
  MMG_CHECK(!texts.empty(), "tokenizer train: {}: no text found", path);
  return texts;
}

int run_tokenizer_train(const TokenizerTrainOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> texts = read_tokenizer_corpus(options.input);
  std::vector<std::string> vocab = train_wordpiece_vocab(texts, options.vocab_size, options.min_frequency);
  WordPieceTokenizer tok(vocab, options.out);
  tok.save(options.out);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // How well the vocabulary covers its own corpus: pieces per word and [UNK]s (none expected,
  // except words longer than WordPiece's 100-character limit).
  int64_t words = 0, pieces = 0, unknown = 0;
  std::set<std::string> distinct;
  for (const std::string& t : texts)
    for (const std::string& w : basic_tokenize(t)) {
      ++words;
      distinct.insert(w);
      for (const std::string& p : tok.wordpiece(w)) {
        ++pieces;
        unknown += p == "[UNK]";
      }
    }
  std::printf("read %zu texts from %s: %lld words, %zu distinct\n", texts.size(), options.input.c_str(),
              static_cast<long long>(words), distinct.size());
  std::printf("wrote %s: %lld tokens (asked for %lld), %.2f pieces per word, %lld [UNK] (%.2f s)\n",
              options.out.c_str(), static_cast<long long>(tok.size()), static_cast<long long>(options.vocab_size),
              words ? double(pieces) / double(words) : 0.0, static_cast<long long>(unknown), secs);
  if (tok.size() > options.vocab_size)
    std::printf("note: the special tokens and the corpus's characters alone need %lld tokens\n",
                static_cast<long long>(tok.size()));
  return 0;
}

int run_tokenizer_encode(const TokenizerEncodeOptions& options) {
  WordPieceTokenizer tok = WordPieceTokenizer::load(options.vocab);
  for (const std::string& text : options.texts) {
    Encoding e = tok.encode(text, options.max_len, options.pad, /*truncate=*/true);
    std::string tokens, ids, mask;
    for (size_t j = 0; j < e.ids.size(); ++j) {
      const char* sep = j ? " " : "";
      tokens += sep + tok.id_to_token(e.ids[j]);
      ids += sep + std::to_string(e.ids[j]);
      mask += sep + std::to_string(int(e.attention_mask[j]));
    }
    std::printf("text:    %s\ntokens:  %s\nids:     %s\n", text.c_str(), tokens.c_str(), ids.c_str());
    if (options.pad) std::printf("mask:    %s\n", mask.c_str());
    std::printf("decoded: %s\n", tok.decode(e.ids).c_str());
  }
  return 0;
}

}  // namespace mmg
