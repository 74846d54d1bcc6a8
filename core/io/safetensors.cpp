// safetensors reading and writing. The format is described in core/io/safetensors.h.
//
// Writing: build the JSON header (tensors in the caller's order, offsets packed back to back),
// pad it with spaces to a multiple of 8 bytes, append the raw bytes of every tensor, and hand
// the whole file to write_file_atomic.
//
// Reading: check the length prefix, parse the header, check every entry on its own (dtype,
// shape, offsets, byte count), then check that the entries tile the data buffer exactly, and
// only then copy the bytes into new tensors.
#include "core/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tuple>

#include "core/io/atomic_file.h"

namespace mmg {

// The data buffer holds little-endian values and tensors are filled with memcpy, which is only
// right on a little-endian host (x86-64, ARM64 in its usual mode).
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// ordered_json keeps the keys of an object in file order, so tensors load in the order they
// were saved.
using Json = nlohmann::ordered_json;

// The reference implementation refuses headers above 100 MB: no real header comes near it,
// and a corrupt length prefix must not make us allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

constexpr const char* kMetadataKey = "__metadata__";

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {
    {DType::f32, "F32"}, {DType::f64, "F64"}, {DType::bf16, "BF16"}, {DType::f16, "F16"},
    {DType::i32, "I32"}, {DType::i64, "I64"}, {DType::u8, "U8"},     {DType::boolean, "BOOL"},
};

std::optional<DType> dtype_from_safetensors(const std::string& name) {
  for (const DTypeName& d : kDTypeNames)
    if (name == d.name) return d.dtype;
  return std::nullopt;
}

uint64_t read_u64_le(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

void append_u64_le(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

// a * b, or nullopt when it does not fit in 64 bits.
std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// ---- writing ----

std::string build_header(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                         const std::vector<Tensor>& data, const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = data[i];
    uint64_t nbytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    Json entry = Json::object();
    entry["dtype"] = safetensors_dtype_name(t.dtype());
    entry["shape"] = t.shape();
    entry["data_offsets"] = Json::array({offset, offset + nbytes});
    header[tensors[i].first] = std::move(entry);
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();  // compact, as the reference writer does
  } catch (const Json::type_error& e) {
    MMG_FAIL("save_safetensors {}: a tensor name or metadata string is not valid UTF-8 ({})", path, e.what());
  }
  // Pad with spaces so the data buffer starts 8-byte aligned (8 + N is a multiple of 8).
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// ---- reading ----

// nlohmann keeps only the last of duplicate keys, silently. A parser callback sees every key
// as it is read, so it can notice a name given twice before the information is lost.
struct DuplicateKeyFinder {
  struct Frame {
    std::string owner;  // the key whose value this object is ("" for the header itself)
    std::string last_key;
    std::set<std::string> keys;
  };
  std::vector<Frame> open;
  std::optional<std::pair<std::string, std::string>> found;  // (owner, key) of the first duplicate

  bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      open.push_back({open.empty() ? std::string() : open.back().last_key, {}, {}});
    } else if (event == Json::parse_event_t::object_end) {
      if (!open.empty()) open.pop_back();
    } else if (event == Json::parse_event_t::key && !open.empty()) {
      std::string key = parsed.get<std::string>();
      if (!open.back().keys.insert(key).second && !found) found = {{open.back().owner, key}};
      open.back().last_key = key;
    }
    return true;  // keep every value
  }
};

Json parse_header(std::string_view text, const std::string& file) {
  DuplicateKeyFinder finder;
  Json header;
  try {
    header = Json::parse(text.begin(), text.end(),
                         [&finder](int depth, Json::parse_event_t event, Json& parsed) {
                           return finder(depth, event, parsed);
                         });
  } catch (const Json::parse_error& e) {
    MMG_FAIL("safetensors {}: header is not valid JSON: {}", file, e.what());
  }
  MMG_CHECK(header.is_object(), "safetensors {}: header is a JSON {}, expected an object", file, header.type_name());
  if (finder.found) {
    const auto& [owner, key] = *finder.found;
    if (owner.empty()) MMG_FAIL("safetensors {}: the name \"{}\" appears twice in the header", file, key);
    MMG_FAIL("safetensors {}: the key \"{}\" appears twice in \"{}\"", file, key, owner);
  }
  return header;
}

std::map<std::string, std::string> parse_metadata(const Json& j, const std::string& file) {
  std::map<std::string, std::string> metadata;
  if (j.is_null()) return metadata;  // the reference reader accepts null as "no metadata"
  MMG_CHECK(j.is_object(), "safetensors {}: \"__metadata__\" is a JSON {}, expected an object of strings", file,
            j.type_name());
  for (const auto& [key, value] : j.items()) {
    MMG_CHECK(value.is_string(), "safetensors {}: \"__metadata__\" value of \"{}\" is a JSON {}, expected a string",
              file, key, value.type_name());
    metadata[key] = value.get<std::string>();
  }
  return metadata;
}

// One header entry, checked on its own.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& name, const Json& j, uint64_t buffer_size, const std::string& file) {
  MMG_CHECK(j.is_object(), "safetensors {}: entry \"{}\" is a JSON {}, expected an object with dtype, shape and data_offsets",
            file, name, j.type_name());
  for (const char* field : {"dtype", "shape", "data_offsets"})
    MMG_CHECK(j.contains(field), "safetensors {}: entry \"{}\" has no \"{}\"", file, name, field);

  Entry e{name, DType::f32, {}, 0, 0};
  const Json& dtype = j.at("dtype");
  MMG_CHECK(dtype.is_string(), "safetensors {}: entry \"{}\": dtype is a JSON {}, expected a string", file, name,
            dtype.type_name());
  std::optional<DType> dt = dtype_from_safetensors(dtype.get<std::string>());
  MMG_CHECK(dt.has_value(), "safetensors {}: entry \"{}\": unknown dtype \"{}\" (expected F32, F64, BF16, F16, I32, I64, U8 or BOOL)",
            file, name, dtype.get<std::string>());
  e.dtype = *dt;

  // Sizes: non-negative integers. nlohmann reads "3" as unsigned, "-3" as signed and "3.0" as float.
  const Json& shape = j.at("shape");
  MMG_CHECK(shape.is_array(), "safetensors {}: entry \"{}\": shape is a JSON {}, expected an array of sizes", file, name,
            shape.type_name());
  uint64_t numel = 1;
  for (const Json& s : shape) {
    MMG_CHECK(!s.is_number_integer() || s.is_number_unsigned(), "safetensors {}: entry \"{}\": shape {} has a negative size {}",
              file, name, shape.dump(), s.dump());
    MMG_CHECK(s.is_number_unsigned(), "safetensors {}: entry \"{}\": shape {} has a size that is not an integer: {}", file,
              name, shape.dump(), s.dump());
    uint64_t size = s.get<uint64_t>();
    std::optional<uint64_t> n = checked_mul(numel, size);
    MMG_CHECK(size <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) && n.has_value(),
              "safetensors {}: entry \"{}\": shape {} has more elements than fit in 64 bits", file, name, shape.dump());
    numel = *n;
    e.shape.push_back(static_cast<int64_t>(size));
  }

  const Json& offsets = j.at("data_offsets");
  MMG_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned(),
            "safetensors {}: entry \"{}\": data_offsets {} must be two non-negative integers [begin, end]", file, name,
            offsets.dump());
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  MMG_CHECK(e.begin <= e.end, "safetensors {}: entry \"{}\": data_offsets [{},{}] begin after end", file, name, e.begin,
            e.end);
  MMG_CHECK(e.end <= buffer_size, "safetensors {}: entry \"{}\": data_offsets [{},{}] end beyond the data buffer of {} bytes",
            file, name, e.begin, e.end, buffer_size);
  std::optional<uint64_t> nbytes = checked_mul(numel, dtype_size(e.dtype));
  MMG_CHECK(nbytes.has_value() && *nbytes == e.end - e.begin,
            "safetensors {}: entry \"{}\": data_offsets [{},{}] hold {} bytes, but {} {} needs {} x {} = {} bytes", file, name,
            e.begin, e.end, e.end - e.begin, dtype.get<std::string>(), shape_str(e.shape), numel, dtype_size(e.dtype),
            nbytes ? fmt::format("{}", *nbytes) : std::string("more than 2^64"));
  return e;
}

// The entries must tile [0, buffer_size) exactly: sorted by offset, each starts where the
// previous one ended. (Empty tensors take no bytes and may sit at any tile boundary.)
void check_tiling(const std::vector<Entry>& entries, uint64_t buffer_size, const std::string& file) {
  std::vector<const Entry*> sorted;
  for (const Entry& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](const Entry* a, const Entry* b) { return std::tie(a->begin, a->end) < std::tie(b->begin, b->end); });
  uint64_t cursor = 0;
  const Entry* previous = nullptr;  // the entry that ends at `cursor`
  for (const Entry* e : sorted) {
    MMG_CHECK(e->begin >= cursor, "safetensors {}: tensors \"{}\" (bytes [{},{})) and \"{}\" (bytes [{},{})) overlap", file,
              previous->name, previous->begin, previous->end, e->name, e->begin, e->end);
    MMG_CHECK(e->begin == cursor, "safetensors {}: bytes [{},{}) of the data buffer belong to no tensor", file, cursor,
              e->begin);
    cursor = e->end;
    previous = e;
  }
  MMG_CHECK(cursor == buffer_size, "safetensors {}: bytes [{},{}) of the data buffer belong to no tensor", file, cursor,
            buffer_size);
}

// A C++ bool holding anything but 0 or 1 is undefined behaviour, so BOOL bytes are checked.
void check_bool_bytes(const Entry& e, std::string_view bytes, const std::string& file) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto b = static_cast<unsigned char>(bytes[i]);
    MMG_CHECK(b <= 1, "safetensors {}: entry \"{}\": BOOL element {} is the byte {}, expected 0 or 1", file, e.name, i, b);
  }
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  for (const DTypeName& d : kDTypeNames)
    if (d.dtype == dtype) return d.name;
  MMG_FAIL("safetensors: dtype {} has no safetensors name", dtype_name(dtype));
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  std::vector<Tensor> data;  // contiguous CPU copies (or the tensors themselves when already so)
  for (const auto& [name, t] : tensors) {
    MMG_CHECK(name != kMetadataKey, "save_safetensors {}: \"__metadata__\" is reserved for metadata and cannot name a tensor",
              path);
    MMG_CHECK(names.insert(name).second, "save_safetensors {}: the name \"{}\" is given twice", path, name);
    MMG_CHECK(t.defined(), "save_safetensors {}: tensor \"{}\" is undefined", path, name);
    data.push_back(t.detach().to(Device::cpu()).contiguous());
  }

  std::string header = build_header(path, tensors, data, metadata);
  size_t data_bytes = 0;
  for (const Tensor& t : data) data_bytes += static_cast<size_t>(t.numel()) * dtype_size(t.dtype());

  std::string file;
  file.reserve(8 + header.size() + data_bytes);
  append_u64_le(file, header.size());
  file += header;
  for (const Tensor& t : data)
    file.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
  write_file_atomic(path, file);
}

SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& file) {
  MMG_CHECK(bytes.size() >= 8, "safetensors {}: file is {} bytes, too short for the 8-byte header length", file,
            bytes.size());
  uint64_t n = read_u64_le(bytes.data());
  MMG_CHECK(n <= kMaxHeaderBytes, "safetensors {}: header length {} is absurd (the limit is {} bytes); the file is corrupt",
            file, n, kMaxHeaderBytes);
  MMG_CHECK(n <= bytes.size() - 8, "safetensors {}: header length {} is larger than the {} bytes after the length prefix",
            file, n, bytes.size() - 8);
  std::string_view header_text = bytes.substr(8, n);
  std::string_view buffer = bytes.substr(8 + n);

  Json header = parse_header(header_text, file);
  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey)
      out.metadata = parse_metadata(value, file);
    else
      entries.push_back(parse_entry(key, value, buffer.size(), file));
  }
  check_tiling(entries, buffer.size(), file);

  for (const Entry& e : entries) {
    std::string_view src = buffer.substr(e.begin, e.end - e.begin);
    if (e.dtype == DType::boolean) check_bool_bytes(e, src, file);
    Tensor t = empty(e.shape, {.dtype = e.dtype});
    if (!src.empty()) std::memcpy(t.data_ptr(), src.data(), src.size());
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

SafetensorsFile load_safetensors(const std::string& path) { return parse_safetensors(read_file(path), path); }

std::map<std::string, Tensor> load_tensors(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : f.tensors) out.emplace(name, std::move(t));
  return out;
}

}  // namespace mmg
