#pragma once
// Reads the golden records of tests/golden/data (written by tests/golden/generate.py).
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace reference_model::testing {

inline std::string golden_dir() { return REFERENCE_MODEL_GOLDEN_DIR; }

inline nlohmann::json read_golden(const std::string& name) {
  std::ifstream in(golden_dir() + "/" + name + ".json");
  if (!in.good()) return nullptr;
  return nlohmann::json::parse(in);
}

}  // namespace reference_model::testing
