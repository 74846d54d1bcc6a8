#include "models/config.h"

#include <algorithm>

#include "core/error.h"

namespace mmg::models {

using nlohmann::json;

static const char* json_type(const json& v) { return v.type_name(); }

ConfigReader::ConfigReader(const json& j, std::string what, std::string family) : j_(j), what_(std::move(what)) {
  MMG_CHECK(j_.is_object(), "{}: a config must be a JSON object, got {}", what_, json_type(j_));
  if (family.empty()) return;  // a nested config: the outer config carries the family
  known_.push_back("family");
  if (const json* f = find("family")) {
    MMG_CHECK(f->is_string(), "{}: key 'family' must be a string, got {}", what_, json_type(*f));
    MMG_CHECK(f->get<std::string>() == family, "{}: family '{}' does not match this model (expected '{}')", what_,
              f->get<std::string>(), family);
  }
}

const json* ConfigReader::find(const char* key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.push_back(key);
  auto it = j_.find(key);
  return it == j_.end() ? nullptr : &*it;
}

void ConfigReader::wrong_type(const char* key, const char* expected) const {
  MMG_FAIL("{}: key '{}' must be {}, got {} {}", what_, key, expected, json_type(j_.at(key)), j_.at(key).dump());
}

void ConfigReader::read(const char* key, int64_t& field) {
  const json* v = find(key);
  if (!v) return;
  // 4.0 is accepted as 4; 4.5 is not.
  if (v->is_number_integer()) {
    field = v->get<int64_t>();
  } else if (v->is_number_float() && v->get<double>() == static_cast<double>(static_cast<int64_t>(v->get<double>()))) {
    field = static_cast<int64_t>(v->get<double>());
  } else {
    wrong_type(key, "an integer");
  }
}

void ConfigReader::read(const char* key, double& field) {
  const json* v = find(key);
  if (!v) return;
  if (!v->is_number()) wrong_type(key, "a number");
  field = v->get<double>();
}

void ConfigReader::read(const char* key, std::string& field) {
  const json* v = find(key);
  if (!v) return;
  if (!v->is_string()) wrong_type(key, "a string");
  field = v->get<std::string>();
}

void ConfigReader::read(const char* key, bool& field) {
  const json* v = find(key);
  if (!v) return;
  if (!v->is_boolean()) wrong_type(key, "true or false");
  field = v->get<bool>();
}

const json* ConfigReader::object(const char* key) {
  const json* v = find(key);
  if (v && !v->is_object()) wrong_type(key, "an object");
  return v;
}

void ConfigReader::finish() const {
  for (auto it = j_.begin(); it != j_.end(); ++it)
    MMG_CHECK(std::find(known_.begin(), known_.end(), it.key()) != known_.end(),
              "{}: unknown key '{}' (valid keys: {})", what_, it.key(), fmt::join(known_, ", "));
}

void check_choice(const std::string& what, const char* field, const std::string& value,
                  const std::vector<std::string>& allowed) {
  MMG_CHECK(std::find(allowed.begin(), allowed.end(), value) != allowed.end(), "{}: {} must be one of {}, got '{}'",
            what, field, fmt::join(allowed, ", "), value);
}

}  // namespace mmg::models
