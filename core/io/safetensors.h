// safetensors: the file format of checkpoints and weights (the one PyTorch and Hugging Face use).
//
// A file is three parts, back to back:
//
//   [8 bytes]  N, the length of the header, as a little-endian unsigned 64-bit integer
//   [N bytes]  the header: a JSON object, padded at the end with spaces
//                {"__metadata__": {"key": "value", ...},                      (optional)
//                 "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                 ...}
//   [rest]     the data buffer: each tensor's elements, row-major, little-endian, in the
//              byte range [begin, end) counted from the start of the buffer
//
// dtype strings map to mmg dtypes: F32 f32, F64 f64, BF16 bf16, F16 f16, I32 i32, I64 i64,
// U8 u8, BOOL bool (one byte, 0 or 1).
//
// The reader trusts nothing in the file: it checks every field and that the tensors tile the
// data buffer exactly (no overlaps, no gaps, nothing left over), as the reference
// implementation does, and throws an mmg::Error naming the file and what is wrong.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mmg {

struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in the order of the header
  std::map<std::string, std::string> metadata;          // the "__metadata__" object
};

// Writes `tensors` (in the given order, as contiguous CPU copies) and `metadata` to `path`.
// The header is padded with spaces so the data buffer starts at a multiple of 8 bytes.
// The file is written atomically: on any failure the old file (if any) is left as it was
// and no partial file remains. Throws on duplicate names, the reserved name "__metadata__",
// undefined tensors and names that are not valid UTF-8.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads and validates a whole file. Tensors are new CPU tensors that own their memory.
SafetensorsFile load_safetensors(const std::string& path);

// Validates and decodes the bytes of a file; `name_for_errors` (a path, usually) is what
// error messages call the file.
SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& name_for_errors);

// The tensors of a file by name (metadata dropped).
std::map<std::string, Tensor> load_tensors(const std::string& path);

// The safetensors dtype string of a dtype ("F32", "BF16", "BOOL", ...).
std::string safetensors_dtype_name(DType dtype);

}  // namespace mmg
