#include "train/folder_dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "core/error.h"
#include "kernels/philox.h"

namespace mmg {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// What one line of the captions file says about one image.
struct Entry {
  std::string where;  // "dir/captions.jsonl:7", for messages
  std::string image;
  std::vector<std::string> captions;
  std::vector<QuestionAnswer> questions;
  std::optional<std::string> label, split;
};

const std::set<std::string> kSplits = {"train", "val", "test"};

void check_split(const Entry& e) {
  if (e.split)
    MMG_CHECK(kSplits.count(*e.split), "{}: unknown split '{}' (valid: train, val, test)", e.where, *e.split);
}

void check_image_path(const Entry& e) {
  MMG_CHECK(!e.image.empty(), "{}: the image path is empty", e.where);
  MMG_CHECK(fs::path(e.image).is_relative(), "{}: image '{}' must be a path relative to the folder", e.where,
            e.image);
}

// ---- captions.jsonl ----

std::string json_string(const json& v, const std::string& key, const std::string& where) {
  MMG_CHECK(v.is_string(), "{}: \"{}\" must be a string, not {}", where, key, v.type_name());
  return v.get<std::string>();
}

QuestionAnswer json_question(const json& q, const std::string& where) {
  MMG_CHECK(q.is_object(), "{}: each of \"questions\" must be an object with \"question\" and \"answer\", not {}",
            where, q.type_name());
  for (const auto& [key, value] : q.items())
    MMG_CHECK(key == "question" || key == "answer" || key == "type",
              "{}: unknown key '{}' in a question (known: question, answer, type)", where, key);
  MMG_CHECK(q.contains("question") && q.contains("answer"), "{}: a question needs both \"question\" and \"answer\"",
            where);
  QuestionAnswer qa;
  qa.question = json_string(q["question"], "question", where);
  qa.answer = json_string(q["answer"], "answer", where);
  if (q.contains("type")) qa.type = json_string(q["type"], "type", where);
  return qa;
}

Entry parse_json_line(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    MMG_FAIL("{}: bad JSON line ({})", where, e.what());
  }
  MMG_CHECK(j.is_object(), "{}: a line must be a JSON object, not {}", where, j.type_name());
  static const std::set<std::string> known = {"image",    "caption", "captions", "question", "answer",
                                              "type",     "questions", "label",  "split"};
  for (const auto& [key, value] : j.items())
    MMG_CHECK(known.count(key), "{}: unknown key '{}' (known: image, caption, captions, question, answer, type, "
              "questions, label, split)", where, key);
  MMG_CHECK(j.contains("image"), "{}: missing the \"image\" key", where);
  Entry e;
  e.where = where;
  e.image = json_string(j["image"], "image", where);
  if (j.contains("caption")) e.captions.push_back(json_string(j["caption"], "caption", where));
  if (j.contains("captions")) {
    MMG_CHECK(j["captions"].is_array(), "{}: \"captions\" must be a list of strings, not {}", where,
              j["captions"].type_name());
    for (const json& c : j["captions"]) e.captions.push_back(json_string(c, "captions", where));
  }
  if (j.contains("question") || j.contains("answer") || j.contains("type")) {
    json q = json::object();
    for (const char* key : {"question", "answer", "type"})
      if (j.contains(key)) q[key] = j[key];
    e.questions.push_back(json_question(q, where));
  }
  if (j.contains("questions")) {
    MMG_CHECK(j["questions"].is_array(), "{}: \"questions\" must be a list of objects, not {}", where,
              j["questions"].type_name());
    for (const json& q : j["questions"]) e.questions.push_back(json_question(q, where));
  }
  if (j.contains("label")) e.label = json_string(j["label"], "label", where);
  if (j.contains("split")) e.split = json_string(j["split"], "split", where);
  return e;
}

// ---- captions.tsv ----

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  for (;;) {
    size_t tab = line.find('\t', start);
    fields.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) return fields;
    start = tab + 1;
  }
}

std::vector<std::string> parse_tsv_header(const std::string& line, const std::string& where) {
  static const std::set<std::string> known = {"image", "caption", "question", "answer", "type", "label", "split"};
  std::vector<std::string> columns = split_tabs(line);
  std::set<std::string> seen;
  for (const std::string& c : columns) {
    MMG_CHECK(known.count(c), "{}: unknown column '{}' in the header (known: image, caption, question, answer, "
              "type, label, split)", where, c);
    MMG_CHECK(seen.insert(c).second, "{}: column '{}' appears twice in the header", where, c);
  }
  MMG_CHECK(seen.count("image"), "{}: the header has no 'image' column", where);
  return columns;
}

Entry parse_tsv_row(const std::string& line, const std::vector<std::string>& columns, const std::string& where) {
  std::vector<std::string> fields = split_tabs(line);
  MMG_CHECK(fields.size() == columns.size(), "{}: {} tab-separated fields, but the header names {} columns", where,
            fields.size(), columns.size());
  std::map<std::string, std::string> f;
  for (size_t i = 0; i < columns.size(); ++i)
    if (!fields[i].empty()) f[columns[i]] = fields[i];
  Entry e;
  e.where = where;
  e.image = f.count("image") ? f["image"] : "";
  if (f.count("caption")) e.captions.push_back(f["caption"]);
  if (f.count("question") || f.count("answer") || f.count("type")) {
    MMG_CHECK(f.count("question") && f.count("answer"), "{}: a question needs both a question and an answer", where);
    e.questions.push_back({f["question"], f["answer"], f.count("type") ? f["type"] : ""});
  }
  if (f.count("label")) e.label = f["label"];
  if (f.count("split")) e.split = f["split"];
  return e;
}

// ---- reading the captions file ----

std::vector<Entry> read_entries(const std::string& path, bool tsv) {
  std::ifstream in(path, std::ios::binary);
  MMG_CHECK(in, "load_image_text_folder: cannot open '{}'", path);
  std::vector<Entry> entries;
  std::vector<std::string> columns;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // files written on Windows
    const std::string where = fmt::format("{}:{}", path, number);
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (tsv && columns.empty()) {
      columns = parse_tsv_header(line, where);
      continue;
    }
    Entry e = tsv ? parse_tsv_row(line, columns, where) : parse_json_line(line, where);
    check_image_path(e);
    check_split(e);
    entries.push_back(std::move(e));
  }
  return entries;
}

// The lines about one image, merged.
struct Record {
  Entry merged;  // merged.where: the first line naming the image
  std::string label_where, split_where;
};

std::vector<Record> merge_entries(std::vector<Entry>& entries) {
  std::vector<Record> records;
  std::map<std::string, size_t> index;
  for (Entry& e : entries) {
    auto [it, fresh] = index.emplace(e.image, records.size());
    if (fresh) {
      Record r;
      r.label_where = r.split_where = e.where;
      r.merged = std::move(e);
      records.push_back(std::move(r));
      continue;
    }
    Record& r = records[it->second];
    Entry& m = r.merged;
    m.captions.insert(m.captions.end(), e.captions.begin(), e.captions.end());
    m.questions.insert(m.questions.end(), e.questions.begin(), e.questions.end());
    if (e.label) {
      MMG_CHECK(!m.label || *m.label == *e.label, "{}: image '{}' has label '{}' here but '{}' at {}", e.where,
                e.image, *e.label, *m.label, r.label_where);
      if (!m.label) m.label = e.label, r.label_where = e.where;
    }
    if (e.split) {
      MMG_CHECK(!m.split || *m.split == *e.split, "{}: image '{}' is in split '{}' here but '{}' at {}", e.where,
                e.image, *e.split, *m.split, r.split_where);
      if (!m.split) m.split = e.split, r.split_where = e.where;
    }
  }
  return records;
}

Image load_entry_image(const std::string& dir, const Entry& e, const FolderOptions& o) {
  const fs::path path = fs::path(dir) / e.image;
  MMG_CHECK(fs::is_regular_file(path), "{}: image '{}' not found", e.where, e.image);
  Image img;
  try {
    img = load_image(path.string(), o.channels);
  } catch (const Error& err) {
    MMG_FAIL("{}: image '{}' cannot be decoded ({})", e.where, e.image, err.what());
  }
  return o.image_size > 0 ? resize_and_center_crop(img, o.image_size) : img;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

std::string assign_split(const std::string& image_name, uint64_t seed, double val_fraction, double test_fraction) {
  const double u = philox_uniform_f64(seed, fnv1a(image_name));
  return u < test_fraction ? "test" : u < test_fraction + val_fraction ? "val" : "train";
}

Dataset load_image_text_folder(const std::string& dir, const FolderOptions& o) {
  MMG_CHECK(o.channels == 1 || o.channels == 3 || o.channels == 4,
            "load_image_text_folder: channels = {} must be 1, 3 or 4", o.channels);
  MMG_CHECK(o.image_size >= 0, "load_image_text_folder: image size {} must be positive (or 0 to keep it)",
            o.image_size);
  MMG_CHECK(o.val_fraction >= 0 && o.test_fraction >= 0 && o.val_fraction + o.test_fraction <= 1,
            "load_image_text_folder: val fraction {} and test fraction {} must be non-negative and sum to at most 1",
            o.val_fraction, o.test_fraction);
  MMG_CHECK(fs::is_directory(dir), "load_image_text_folder: folder '{}' does not exist", dir);
  const fs::path jsonl = fs::path(dir) / "captions.jsonl", tsv = fs::path(dir) / "captions.tsv";
  const bool has_jsonl = fs::is_regular_file(jsonl), has_tsv = fs::is_regular_file(tsv);
  MMG_CHECK(has_jsonl || has_tsv, "load_image_text_folder: folder '{}' has no captions.jsonl or captions.tsv", dir);
  MMG_CHECK(!(has_jsonl && has_tsv),
            "load_image_text_folder: folder '{}' has both captions.jsonl and captions.tsv; keep one", dir);
  const std::string path = (has_jsonl ? jsonl : tsv).string();

  std::vector<Entry> entries = read_entries(path, has_tsv);
  MMG_CHECK(!entries.empty(), "load_image_text_folder: '{}' names no images (folder '{}')", path, dir);
  std::vector<Record> records = merge_entries(entries);

  Dataset ds;
  ds.name = dir;
  std::set<std::string> labels;
  for (const Record& r : records)
    if (r.merged.label) labels.insert(*r.merged.label);
  ds.class_names.assign(labels.begin(), labels.end());  // sorted: ids do not depend on line order

  for (const Record& r : records) {
    const Entry& e = r.merged;
    Sample s;
    s.image = load_entry_image(dir, e, o);
    s.captions = e.captions;
    s.negatives.resize(s.captions.size());
    s.questions = e.questions;
    if (e.label) s.label = std::lower_bound(ds.class_names.begin(), ds.class_names.end(), *e.label) - ds.class_names.begin();
    s.source = e.image;
    const std::string split = e.split ? *e.split : assign_split(e.image, o.seed, o.val_fraction, o.test_fraction);
    (split == "train" ? ds.train : split == "val" ? ds.val : ds.test).push_back(std::move(s));
  }
  return ds;
}

}  // namespace mmg
