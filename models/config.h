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
// A config lists its plain fields (int64_t, double, std::string, bool) once, in `fields()`, and
// both directions walk that list, so a field cannot be saved and then refused, or read and
// never saved. The order is the one the "valid keys" message gives.
//
//   struct ViTConfig {
//     int64_t dim = 128;
//     std::string pool = "cls";
//     template <class Self, class F> static void fields(Self& c, F&& f) {
//       f("dim", c.dim);
//       f("pool", c.pool);
//     }
//   };
//   json ViTConfig::to_json() const { return write_fields(*this, {{"family", "vit"}}); }
//   ViTConfig ViTConfig::from_json(const json& j) { return read_config<ViTConfig>(j, "ViTConfig", "vit"); }
//
// A config holding other configs writes and reads those by hand around the same two calls:
//
//   ConfigReader r(j, "DualEncoderConfig", "dual");
//   if (const json* v = r.object("vision")) c.vision = ViTConfig::from_json(*v);
//   read_fields(r, c);
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

// `j` with each of c's fields() added (`j` brings the keys that are not fields, e.g. "family").
template <class Config>
nlohmann::json write_fields(const Config& c, nlohmann::json j = nlohmann::json::object()) {
  Config::fields(c, [&](const char* key, const auto& value) { j[key] = value; });
  return j;
}

// Reads each of c's fields() that `r`'s JSON holds into `c`; the others keep their values.
template <class Config>
void read_fields(ConfigReader& r, Config& c) {
  Config::fields(c, [&](const char* key, auto& value) { r.read(key, value); });
}

// The keys of `j` read over `c` (absent keys keep c's values), no other key allowed; not
// validated (for a config whose caller has preset some fields and validates the whole later).
template <class Config>
void read_over(const nlohmann::json& j, const std::string& what, const std::string& family, Config& c) {
  ConfigReader r(j, what, family);
  read_fields(r, c);
  r.finish();
}

// from_json of a config that is fields() and nothing else: the defaults, overwritten by the
// keys of `j`, no other key allowed, then validated.
template <class Config>
Config read_config(const nlohmann::json& j, const std::string& what, const std::string& family) {
  Config c;
  read_over(j, what, family, c);
  c.validate();
  return c;
}

}  // namespace mmg::models
