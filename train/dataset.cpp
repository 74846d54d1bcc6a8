#include "train/dataset.h"

#include "core/error.h"

namespace mmg {

const std::vector<Sample>& Dataset::split(const std::string& name) const {
  if (name == "train") return train;
  if (name == "val") return val;
  if (name == "test") return test;
  MMG_FAIL("dataset {}: unknown split '{}' (valid: train, val, test)", this->name, name);
}

}  // namespace mmg
