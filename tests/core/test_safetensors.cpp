// safetensors: round trips of every dtype, a byte-for-byte check against the format, one test
// per rejection of a corrupt file, and atomic saves.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/mmgrad.h"
#include "tests/temp_dir.h"

using namespace mmg;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
// A temp folder named after this file's tests.
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("mmg_safetensors") {}
};

std::string u64le(uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

// A file from a header written by hand and the raw data buffer (no padding: the reader must not need it).
std::string file_bytes(const std::string& header, const std::string& data) { return u64le(header.size()) + header + data; }

// The raw bytes of a tensor's elements, row-major.
std::string raw_bytes(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
}

// A tensor of a 16-bit dtype holding exactly these bit patterns.
Tensor from_bits(const std::vector<uint16_t>& bits, DType dtype) {
  Tensor t = empty({static_cast<int64_t>(bits.size())}, {.dtype = dtype});
  std::memcpy(t.data_ptr(), bits.data(), bits.size() * 2);
  return t;
}

SafetensorsFile parse(const std::string& bytes) { return parse_safetensors(bytes, "bad.safetensors"); }

// Parses a one-tensor file: header entry `entry` for tensor "w" over `data`.
SafetensorsFile parse_entry(const std::string& entry, const std::string& data) {
  return parse(file_bytes("{\"w\":" + entry + "}", data));
}

std::string read_all(const std::string& path) { return read_file(path); }

// doctest::Contains of a message built at run time (doctest::Contains takes a doctest::String).
doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

}  // namespace

TEST_CASE("safetensors: every dtype round-trips bit for bit, in the given order") {
  TempDir dir;
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"z.f32", randn({3, 4})},
      {"y.f64", randn({2, 5}, {.dtype = DType::f64})},
      // bf16 / f16: +0, -0, 1, -2, inf, -inf, a NaN with payload, the smallest subnormal, the largest finite
      {"x.bf16", from_bits({0x0000, 0x8000, 0x3f80, 0xc000, 0x7f80, 0xff80, 0x7fc1, 0x0001, 0x7f7f}, DType::bf16)},
      {"w.f16", from_bits({0x0000, 0x8000, 0x3c00, 0xc000, 0x7c00, 0xfc00, 0x7e01, 0x0001, 0x7bff}, DType::f16)},
      {"v.i32", from_vector<int32_t>({std::numeric_limits<int32_t>::min(), -1, 0, 7, std::numeric_limits<int32_t>::max()})},
      {"u.i64", from_vector<int64_t>({std::numeric_limits<int64_t>::min(), -1, 0, std::numeric_limits<int64_t>::max()}, {2, 2})},
      {"t.u8", from_vector<uint8_t>({0, 1, 127, 128, 254, 255})},
      {"s.bool", from_vector<bool>({true, false, false, true, true}, {5, 1})},
      {"r.scalar", scalar_tensor(-3.25, {.dtype = DType::f64})},
      {"q.empty", zeros({0, 3})},
      {"p.empty_i64", zeros({2, 0, 4}, {.dtype = DType::i64})},
  };
  std::string path = dir.file("all.safetensors");
  save_safetensors(path, tensors);
  SafetensorsFile f = load_safetensors(path);

  REQUIRE(f.tensors.size() == tensors.size());
  CHECK(f.metadata.empty());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, expected] = tensors[i];
    const auto& [got_name, got] = f.tensors[i];
    CAPTURE(name);
    CHECK(got_name == name);
    CHECK(got.dtype() == expected.dtype());
    CHECK(got.shape() == expected.shape());
    CHECK(got.device() == Device::cpu());
    CHECK(!got.requires_grad());
    CHECK(raw_bytes(got) == raw_bytes(expected));
  }
  CHECK(f.tensors[8].second.dim() == 0);
  CHECK(f.tensors[8].second.item() == -3.25);
  CHECK(f.tensors[7].second.to_vector<bool>() == std::vector<bool>{true, false, false, true, true});

  std::map<std::string, Tensor> by_name = load_tensors(path);
  CHECK(by_name.size() == tensors.size());
  CHECK(raw_bytes(by_name.at("x.bf16")) == raw_bytes(tensors[2].second));
}

TEST_CASE("safetensors: non-contiguous tensors are saved as their row-major values") {
  TempDir dir;
  Tensor x = arange(0, 12, 1, {.dtype = DType::f32}).view({3, 4});
  Tensor t = x.transpose(0, 1);                                   // [4,3], strides (1,4)
  Tensor s = x.slice(1, 0, 4, 2);                                 // columns 0 and 2
  Tensor e = from_vector<int64_t>({5, 6, 7}).view({3, 1}).expand({3, 2});  // a stride-0 dim
  REQUIRE(!t.is_contiguous());
  REQUIRE(!s.is_contiguous());
  REQUIRE(!e.is_contiguous());
  std::string path = dir.file("views.safetensors");
  save_safetensors(path, {{"t", t}, {"s", s}, {"e", e}});
  auto loaded = load_tensors(path);

  // The expected values by index arithmetic on x = 0..11 laid out [3,4].
  std::vector<float> t_expected, s_expected;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) t_expected.push_back(static_cast<float>(j * 4 + i));
  for (int i = 0; i < 3; ++i)
    for (int j : {0, 2}) s_expected.push_back(static_cast<float>(i * 4 + j));
  CHECK(loaded.at("t").shape() == Shape{4, 3});
  CHECK(loaded.at("t").to_vector<float>() == t_expected);
  CHECK(loaded.at("s").shape() == Shape{3, 2});
  CHECK(loaded.at("s").to_vector<float>() == s_expected);
  CHECK(loaded.at("e").shape() == Shape{3, 2});
  CHECK(loaded.at("e").to_vector<int64_t>() == std::vector<int64_t>{5, 5, 6, 6, 7, 7});
  // The data buffer holds exactly 12*4 + 6*4 + 6*8 bytes: the copies, not the views' storages.
  std::string bytes = read_all(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  CHECK(bytes.size() - 8 - n == 12 * 4 + 6 * 4 + 6 * 8);
}

TEST_CASE("safetensors: metadata round-trips") {
  TempDir dir;
  std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"note", "quotes \" backslash \\ newline \n unicode \xc3\xa9"}, {"empty", ""}};
  std::string path = dir.file("meta.safetensors");
  save_safetensors(path, {{"a", ones({2})}}, metadata);
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata == metadata);
  REQUIRE(f.tensors.size() == 1);
  CHECK(f.tensors[0].second.to_vector<float>() == std::vector<float>{1, 1});

  // Metadata only, no tensors: a valid file with an empty data buffer.
  save_safetensors(path, {}, {{"k", "v"}});
  f = load_safetensors(path);
  CHECK(f.tensors.empty());
  CHECK(f.metadata == std::map<std::string, std::string>{{"k", "v"}});
}

TEST_CASE("safetensors: the written bytes match the format, byte for byte") {
  TempDir dir;
  std::string path = dir.file("exact.safetensors");
  save_safetensors(path, {{"b", from_vector<int32_t>({1, -2})}, {"a", scalar_tensor(1.5)}}, {{"k", "v"}});

  // 132 bytes of JSON, padded with 4 spaces to 136 (a multiple of 8).
  std::string header =
      "{\"__metadata__\":{\"k\":\"v\"},"
      "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}"
      "    ";
  REQUIRE(header.size() == 136);
  std::string expected = std::string("\x88\0\0\0\0\0\0\0", 8) + header +
                         std::string("\x01\x00\x00\x00"   // int32 1
                                     "\xfe\xff\xff\xff"   // int32 -2
                                     "\x00\x00\xc0\x3f",  // float 1.5 = 0x3fc00000
                                     12);
  CHECK(read_all(path) == expected);
}

TEST_CASE("safetensors: a hand-built file reads back the values it holds") {
  // Header order differs from buffer order; trailing spaces pad the header; one empty tensor.
  std::string header =
      "{\"h\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
      "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
      "\"n\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[12,12]},"
      "\"__metadata__\":{\"who\":\"test\"}}   ";
  std::string data = std::string("\x00\x00\x00\x00\x00\x00\xf8\x3f", 8)  // double 1.5 = 0x3ff8000000000000
                     + std::string("\x80\x3f\x00\xc0", 4);               // bf16 1.0 = 0x3f80, -2.0 = 0xc000
  SafetensorsFile f = parse(file_bytes(header, data));
  REQUIRE(f.tensors.size() == 3);
  CHECK(f.tensors[0].first == "h");
  CHECK(f.tensors[0].second.dtype() == DType::bf16);
  CHECK(f.tensors[0].second.to_vector<float>() == std::vector<float>{1.0f, -2.0f});
  CHECK(f.tensors[1].first == "d");
  CHECK(f.tensors[1].second.to_vector<double>() == std::vector<double>{1.5});
  CHECK(f.tensors[2].first == "n");
  CHECK(f.tensors[2].second.shape() == Shape{0});
  CHECK(f.tensors[2].second.dtype() == DType::u8);
  CHECK(f.metadata == std::map<std::string, std::string>{{"who", "test"}});

  // "__metadata__": null means no metadata, as in the reference reader.
  CHECK(parse(file_bytes("{\"__metadata__\":null}", "")).metadata.empty());
  // An empty header object is a file with no tensors.
  CHECK(parse(file_bytes("{}", "")).tensors.empty());
}

// ---- rejections: every corrupt file names itself and what is wrong ----

TEST_CASE("safetensors rejects a file shorter than the length prefix") {
  CHECK_THROWS_WITH_AS(parse("abc"),
                       doctest::Contains("safetensors bad.safetensors: file is 3 bytes, too short for the 8-byte header length"),
                       Error);
  CHECK_THROWS_WITH_AS(parse(""), doctest::Contains("file is 0 bytes"), Error);
}

TEST_CASE("safetensors rejects a header length larger than the file") {
  CHECK_THROWS_WITH_AS(parse(u64le(100) + "{}"),
                       doctest::Contains("safetensors bad.safetensors: header length 100 is larger than the 2 bytes after "
                                         "the length prefix"),
                       Error);
}

TEST_CASE("safetensors rejects an absurd header length") {
  CHECK_THROWS_WITH_AS(parse(u64le(200'000'000) + "{}"),
                       doctest::Contains("header length 200000000 is absurd (the limit is 100000000 bytes)"), Error);
  CHECK_THROWS_WITH_AS(parse(u64le(std::numeric_limits<uint64_t>::max()) + "{}"),
                       doctest::Contains("header length 18446744073709551615 is absurd"), Error);
}

TEST_CASE("safetensors rejects a header that is not JSON") {
  CHECK_THROWS_WITH_AS(parse(file_bytes("{\"w\": ", "")),
                       doctest::Contains("safetensors bad.safetensors: header is not valid JSON"), Error);
  CHECK_THROWS_WITH_AS(parse(file_bytes("", "")), doctest::Contains("header is not valid JSON"), Error);
  // Invalid UTF-8 inside a string.
  CHECK_THROWS_WITH_AS(parse(file_bytes("{\"\xff\":1}", "")), doctest::Contains("header is not valid JSON"), Error);
}

TEST_CASE("safetensors rejects a header that is not an object") {
  CHECK_THROWS_WITH_AS(parse(file_bytes("[1,2]", "")),
                       doctest::Contains("safetensors bad.safetensors: header is a JSON array, expected an object"), Error);
  CHECK_THROWS_WITH_AS(parse(file_bytes("\"x\"", "")), doctest::Contains("header is a JSON string, expected an object"),
                       Error);
}

TEST_CASE("safetensors rejects an entry that is not an object") {
  CHECK_THROWS_WITH_AS(parse_entry("3", ""),
                       doctest::Contains("safetensors bad.safetensors: entry \"w\" is a JSON number, expected an object "
                                         "with dtype, shape and data_offsets"),
                       Error);
}

TEST_CASE("safetensors rejects an entry without dtype, shape or data_offsets") {
  CHECK_THROWS_WITH_AS(parse_entry("{\"shape\":[1],\"data_offsets\":[0,4]}", "abcd"),
                       doctest::Contains("entry \"w\" has no \"dtype\""), Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"F32\",\"data_offsets\":[0,4]}", "abcd"),
                       doctest::Contains("entry \"w\" has no \"shape\""), Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"F32\",\"shape\":[1]}", "abcd"),
                       doctest::Contains("entry \"w\" has no \"data_offsets\""), Error);
}

TEST_CASE("safetensors rejects an unknown dtype") {
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}", "a"),
                       doctest::Contains("safetensors bad.safetensors: entry \"w\": unknown dtype \"F8_E4M3\" (expected "
                                         "F32, F64, BF16, F16, I32, I64, U8 or BOOL)"),
                       Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}", "abcd"),
                       doctest::Contains("unknown dtype \"f32\""), Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}", "abcd"),
                       doctest::Contains("entry \"w\": dtype is a JSON number, expected a string"), Error);
}

TEST_CASE("safetensors rejects negative or non-integer sizes in a shape") {
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"U8\",\"shape\":[2,-1],\"data_offsets\":[0,0]}", ""),
                       doctest::Contains("entry \"w\": shape [2,-1] has a negative size -1"), Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"U8\",\"shape\":[2,1.5],\"data_offsets\":[0,3]}", "abc"),
                       doctest::Contains("entry \"w\": shape [2,1.5] has a size that is not an integer: 1.5"), Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"U8\",\"shape\":[2.0],\"data_offsets\":[0,2]}", "ab"),
                       doctest::Contains("has a size that is not an integer: 2.0"), Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"U8\",\"shape\":[\"2\"],\"data_offsets\":[0,2]}", "ab"),
                       doctest::Contains("has a size that is not an integer: \"2\""), Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"U8\",\"shape\":2,\"data_offsets\":[0,2]}", "ab"),
                       doctest::Contains("entry \"w\": shape is a JSON number, expected an array of sizes"), Error);
  CHECK_THROWS_WITH_AS(
      parse_entry("{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,2]}", "ab"),
      doctest::Contains("shape [4294967296,4294967296,4] has more elements than fit in 64 bits"), Error);
}

TEST_CASE("safetensors rejects data_offsets that are not two ordered integers") {
  auto entry = [](const std::string& offsets) {
    return "{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":" + offsets + "}";
  };
  for (std::string bad : {"[0]", "[0,2,4]", "[0,-2]", "[0,2.0]", "\"0,2\"", "[null,2]"})
    CHECK_THROWS_WITH_AS(parse_entry(entry(bad), "ab"),
                         contains("entry \"w\": data_offsets " + bad + " must be two non-negative integers [begin, end]"),
                         Error);
  CHECK_THROWS_WITH_AS(parse_entry(entry("[2,0]"), "ab"),
                       doctest::Contains("safetensors bad.safetensors: entry \"w\": data_offsets [2,0] begin after end"),
                       Error);
}

TEST_CASE("safetensors rejects data_offsets that end beyond the data buffer") {
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", "abcd"),
                       doctest::Contains("entry \"w\": data_offsets [0,8] end beyond the data buffer of 4 bytes"), Error);
}

TEST_CASE("safetensors rejects a byte range whose size does not match the shape and dtype") {
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}", std::string(20, 'x')),
                       doctest::Contains("entry \"w\": data_offsets [0,20] hold 20 bytes, but F32 [2,3] needs 6 x 4 = 24 "
                                         "bytes"),
                       Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,4]}", "abcd"),
                       doctest::Contains("hold 4 bytes, but I64 [] needs 1 x 8 = 8 bytes"), Error);
  // numel fits in 64 bits but numel * 8 does not.
  CHECK_THROWS_WITH_AS(
      parse_entry("{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,2]}", "ab"),
      doctest::Contains("needs 4611686018427387904 x 8 = more than 2^64 bytes"), Error);
}

TEST_CASE("safetensors rejects overlapping tensors") {
  std::string header =
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}";
  CHECK_THROWS_WITH_AS(parse(file_bytes(header, std::string(12, 'x'))),
                       doctest::Contains("safetensors bad.safetensors: tensors \"a\" (bytes [0,8)) and \"b\" (bytes "
                                         "[4,12)) overlap"),
                       Error);
  // Two names for the same bytes.
  std::string same =
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
  CHECK_THROWS_WITH_AS(parse(file_bytes(same, "abcd")), doctest::Contains("bytes [0,4)) overlap"), Error);
  // An empty tensor placed inside another one's bytes.
  std::string inside =
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
      "\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}";
  CHECK_THROWS_WITH_AS(parse(file_bytes(inside, "abcd")),
                       doctest::Contains("tensors \"a\" (bytes [0,4)) and \"e\" (bytes [2,2)) overlap"), Error);
}

TEST_CASE("safetensors rejects bytes of the data buffer that belong to no tensor") {
  std::string gap =
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}";
  CHECK_THROWS_WITH_AS(parse(file_bytes(gap, std::string(12, 'x'))),
                       doctest::Contains("safetensors bad.safetensors: bytes [4,8) of the data buffer belong to no tensor"),
                       Error);
  // Leading and trailing bytes.
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}", std::string(8, 'x')),
                       doctest::Contains("bytes [0,4) of the data buffer belong to no tensor"), Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}", std::string(7, 'x')),
                       doctest::Contains("bytes [4,7) of the data buffer belong to no tensor"), Error);
  CHECK_THROWS_WITH_AS(parse(file_bytes("{}", "x")), doctest::Contains("bytes [0,1) of the data buffer belong to no tensor"),
                       Error);
}

TEST_CASE("safetensors rejects duplicate names and duplicate keys") {
  std::string dup =
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}";
  CHECK_THROWS_WITH_AS(parse(file_bytes(dup, "abcd")),
                       doctest::Contains("safetensors bad.safetensors: the name \"a\" appears twice in the header"), Error);
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"U8\",\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,2]}", "ab"),
                       doctest::Contains("the key \"dtype\" appears twice in \"w\""), Error);
  CHECK_THROWS_WITH_AS(parse(file_bytes("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", "")),
                       doctest::Contains("the key \"k\" appears twice in \"__metadata__\""), Error);
}

TEST_CASE("safetensors rejects __metadata__ that is not an object of strings") {
  CHECK_THROWS_WITH_AS(parse(file_bytes("{\"__metadata__\":[1]}", "")),
                       doctest::Contains("safetensors bad.safetensors: \"__metadata__\" is a JSON array, expected an "
                                         "object of strings"),
                       Error);
  CHECK_THROWS_WITH_AS(parse(file_bytes("{\"__metadata__\":{\"epoch\":3}}", "")),
                       doctest::Contains("\"__metadata__\" value of \"epoch\" is a JSON number, expected a string"), Error);
  CHECK_THROWS_WITH_AS(parse(file_bytes("{\"__metadata__\":{\"m\":{\"x\":\"y\"}}}", "")),
                       doctest::Contains("\"__metadata__\" value of \"m\" is a JSON object, expected a string"), Error);
}

TEST_CASE("safetensors rejects BOOL bytes other than 0 and 1") {
  CHECK_THROWS_WITH_AS(parse_entry("{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}", std::string("\x01\x02\x00", 3)),
                       doctest::Contains("entry \"w\": BOOL element 1 is the byte 2, expected 0 or 1"), Error);
}

TEST_CASE("load_safetensors names the path in its errors") {
  TempDir dir;
  std::string path = dir.file("short.safetensors");
  write_file_atomic(path, "1234");
  CHECK_THROWS_WITH_AS(load_safetensors(path), contains("safetensors " + path + ": file is 4 bytes"), Error);
  CHECK_THROWS_WITH_AS(load_safetensors(dir.file("missing.safetensors")),
                       contains(dir.file("missing.safetensors") + ": cannot open"), Error);
}

// ---- saving: argument errors, atomicity ----

TEST_CASE("save_safetensors rejects duplicate, reserved and invalid names and undefined tensors") {
  TempDir dir;
  std::string path = dir.file("out.safetensors");
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"a", ones({1})}, {"b", ones({1})}, {"a", zeros({2})}}),
                       contains("save_safetensors " + path + ": the name \"a\" is given twice"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"__metadata__", ones({1})}}),
                       doctest::Contains("\"__metadata__\" is reserved for metadata and cannot name a tensor"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"u", Tensor()}}), doctest::Contains("tensor \"u\" is undefined"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"bad\xff", ones({1})}}),
                       doctest::Contains("a tensor name or metadata string is not valid UTF-8"), Error);
  CHECK(dir.listing().empty());  // nothing was written by any failed save
}

TEST_CASE("save_safetensors into a missing directory fails and leaves nothing behind") {
  TempDir dir;
  std::string path = dir.file("no_such_dir/out.safetensors");
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"a", ones({3})}}),
                       contains("write " + path + ": cannot create temporary file"), Error);
  CHECK(dir.listing().empty());
  CHECK(!fs::exists(dir.path / "no_such_dir"));
}

TEST_CASE("a failed save does not clobber an existing file and leaves no temporary file") {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  save_safetensors(path, {{"w", arange(0, 6, 1, {.dtype = DType::f32}).view({2, 3})}}, {{"step", "1"}});
  std::string before = read_all(path);

  // Fails on its arguments, before writing.
  CHECK_THROWS_AS(save_safetensors(path, {{"w", ones({1})}, {"w", ones({1})}}), Error);
  CHECK(read_all(path) == before);
  CHECK(dir.listing() == std::vector<std::string>{"model.safetensors"});

  // Fails while writing: the target is a directory, so the temporary file cannot be renamed
  // over it; the temporary file must be removed and the directory left as it was.
  fs::create_directories(dir.path / "taken.safetensors");
  write_file_atomic(dir.file("taken.safetensors/inside"), "keep");
  CHECK_THROWS_WITH_AS(save_safetensors(dir.file("taken.safetensors"), {{"w", ones({4})}}),
                       doctest::Contains("cannot rename the temporary file into place"), Error);
  CHECK(dir.listing() == std::vector<std::string>{"model.safetensors", "taken.safetensors"});
  CHECK(read_all(dir.file("taken.safetensors/inside")) == "keep");

  // The original file still loads with its values.
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata.at("step") == "1");
  CHECK(f.tensors.at(0).second.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("save_safetensors overwrites an existing file atomically with the new contents") {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  save_safetensors(path, {{"a", ones({2})}});
  save_safetensors(path, {{"b", full({3}, 2.0, {.dtype = DType::f64})}});
  auto loaded = load_tensors(path);
  CHECK(loaded.size() == 1);
  CHECK(loaded.at("b").to_vector<double>() == std::vector<double>{2, 2, 2});
  CHECK(dir.listing() == std::vector<std::string>{"m.safetensors"});
}
