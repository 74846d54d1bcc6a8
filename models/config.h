// Reading model configs from JSON, strictly.
//
// Every model's config is a plain struct with `to_json()` and `from_json()`. A config file is
// written by people, so from_json is strict where a typo would otherwise pass silently:
//   - a key the struct does not have is an error naming the key and listing the valid ones
//     ("ViTConfig: unknown key 'dimm' (valid keys: family, image_size, ...)");
//   - a value of the wrong type is an error naming the key ("ViTConfig: key 'dim' must be an
//     integer, got string");
//   - a missing key keeps the struct's default, so a config may list only what it changes.
// Every config also carries a "family" key ("vit", "text", "dual", ...) saying which model it
// builds; from_json accepts it when it names the right family and refuses any other.
//
//   ConfigReader r(j, "ViTConfig", "vit");
//   r.read("dim", c.dim);
//   r.read("pool", c.pool);
//   r.finish();  // throws on keys nobody read
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace mmg::models {

class ConfigReader {
 public:
  // `what` names the struct in messages; `family` is the value the "family" key must have
  // ("" for a config nested in another, which then has no "family" key).
  ConfigReader(const nlohmann::json& j, std::string what, std::string family);

  void read(const char* key, int64_t& field);
  void read(const char* key, double& field);
  void read(const char* key, std::string& field);
  void read(const char* key, bool& field);
  // A nested object (another config), or nullptr when the key is absent.
  const nlohmann::json* object(const char* key);

  // Throws if the JSON holds a key that no read() asked for.
  void finish() const;

 private:
  const nlohmann::json* find(const char* key);
  [[noreturn]] void wrong_type(const char* key, const char* expected) const;

  const nlohmann::json& j_;
  std::string what_;
  std::vector<std::string> known_;  // in the order read, for the error message
};

// "<what>: <field> must be one of a, b, c, got 'x'" unless `value` is one of `allowed`.
void check_choice(const std::string& what, const char* field, const std::string& value,
                  const std::vector<std::string>& allowed);

}  // namespace mmg::models
