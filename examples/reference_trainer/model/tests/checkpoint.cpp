// Checkpoints: BF16 / F16 files convert on load; save → load is bit-exact; config.json round
// trips; truncated, mis-sized, wrong-dtype, missing-tensor and extra-tensor files are refused with
// an error naming the tensor; a failed write leaves no file behind.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "checkpoint.hpp"
#include "golden.hpp"

namespace rm = reference_model;
namespace fs = std::filesystem;
using rm::index_t;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() /
                     ("reference_model_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

rm::model_config small(rm::architecture arch, bool tied) {
  rm::model_config c;
  c.arch = arch;
  c.vocab_size = 17;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.tie_word_embeddings = tied;
  c.rope_theta = 12345.0;
  c.rms_norm_eps = 3e-6;
  c.eos_token_id = 3;
  return c;
}

// Writes a safetensors file with one tensor "w" and a hand-made header, for the defect tests.
void write_raw(const fs::path& p, const std::string& header, std::size_t data_bytes) {
  std::ofstream out(p, std::ios::binary);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header;
  out << std::string(data_bytes, '\0');
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const posttrain::error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(ReferenceModelCheckpoint, HalfPrecisionFilesConvertOnLoad) {
  const std::string dir = rm::testing::golden_dir();
  const auto f32 = rm::load_checkpoint<float>(dir + "/llama");
  const auto bf16 = rm::load_checkpoint<float>(dir + "/llama_bf16");
  const auto f16 = rm::load_checkpoint<float>(dir + "/llama_f16");
  ASSERT_EQ(f32.parameters().size(), bf16.parameters().size());
  std::size_t differ_bf16 = 0, differ_f16 = 0;
  for (std::size_t i = 0; i < f32.parameters().size(); ++i) {
    const float x = f32.parameters()[i];
    // torch rounds to nearest even: the same as our float → bf16 rounding, bit for bit.
    EXPECT_EQ(bf16.parameters()[i], rm::bf16_to_float(rm::float_to_bf16(x))) << i;
    EXPECT_NEAR(f16.parameters()[i], x, 1e-3 * std::abs(x) + 1e-7) << i;
    differ_bf16 += bf16.parameters()[i] != x;
    differ_f16 += f16.parameters()[i] != x;
  }
  EXPECT_GT(differ_bf16, f32.parameters().size() / 2) << "the BF16 file must really be rounded";
  EXPECT_GT(differ_f16, f32.parameters().size() / 2);
}

TEST(ReferenceModelCheckpoint, HalfConversionsOfSpecialValues) {
  EXPECT_EQ(rm::f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(rm::f16_to_float(0xc000), -2.0f);
  EXPECT_EQ(rm::f16_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(rm::f16_to_float(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(rm::f16_to_float(0x7c00)));
  EXPECT_TRUE(std::isnan(rm::f16_to_float(0x7e00)));
  EXPECT_EQ(rm::bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(rm::float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie → even
  EXPECT_EQ(rm::float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
}

class SaveLoad : public ::testing::TestWithParam<std::pair<rm::architecture, bool>> {};

TEST_P(SaveLoad, RoundTripIsBitExact) {
  const auto [arch, tied] = GetParam();
  rm::transformer<float> m(small(arch, tied));
  m.init_random(7);
  const fs::path dir = scratch("roundtrip");
  rm::save_checkpoint(m, dir);
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "left " << e.path();
  const auto back = rm::load_checkpoint<float>(dir);
  EXPECT_TRUE(std::equal(m.parameters().begin(), m.parameters().end(),
                         back.parameters().begin(), back.parameters().end()));
  const auto& c = back.config();
  EXPECT_EQ(c.arch, arch);
  EXPECT_EQ(c.tie_word_embeddings, tied);
  EXPECT_EQ(c.rope_theta, 12345.0);
  EXPECT_EQ(c.rms_norm_eps, 3e-6);
  EXPECT_EQ(c.num_key_value_heads, 1);
  EXPECT_EQ(c.eos_token_id, 3);
  EXPECT_EQ(c.qkv_bias(), arch == rm::architecture::qwen2);
  // Tied: no lm_head.weight in the file, as transformers writes it.
  rm::safetensors_file f(dir / "model.safetensors");
  EXPECT_EQ(f.tensors().contains("lm_head.weight"), !tied);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Archs, SaveLoad,
                         ::testing::Values(std::pair{rm::architecture::llama, false},
                                           std::pair{rm::architecture::qwen2, true}));

TEST(ReferenceModelCheckpoint, DefectiveFilesNameTheTensor) {
  const fs::path dir = scratch("defects");
  const fs::path p = dir / "x.safetensors";
  // Truncated: the tensor's range runs past the end of the data.
  write_raw(p, R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", 20);
  EXPECT_NE(error_of([&] { rm::safetensors_file f(p); }).find("tensor w spans"), std::string::npos);
  // Mis-sized: 24 bytes for a [2, 2] F32 tensor.
  write_raw(p, R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,24]}})", 24);
  EXPECT_NE(error_of([&] { rm::safetensors_file f(p); }).find("tensor w has 24 bytes, expected 16"),
            std::string::npos);
  // Unsupported dtype.
  write_raw(p, R"({"w":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})", 4);
  EXPECT_NE(error_of([&] { rm::safetensors_file f(p); }).find("tensor w has dtype I8"),
            std::string::npos);
  // A field of the wrong JSON type.
  write_raw(p, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":["0",4]}})", 4);
  EXPECT_NE(error_of([&] { rm::safetensors_file f(p); }).find("tensor w has a malformed entry"),
            std::string::npos);
  // Header length beyond the file.
  {
    std::ofstream out(p, std::ios::binary);
    out << std::string("\xff\x00\x00\x00\x00\x00\x00\x00", 8) << "{}";
  }
  EXPECT_NE(error_of([&] { rm::safetensors_file f(p); }).find("exceeds the file"),
            std::string::npos);
  // Shorter than the length prefix; a header that is not JSON.
  { std::ofstream(p, std::ios::binary) << "abc"; }
  EXPECT_NE(error_of([&] { rm::safetensors_file f(p); }).find("truncated"), std::string::npos);
  write_raw(p, "{not json", 0);
  EXPECT_NE(error_of([&] { rm::safetensors_file f(p); }).find("not valid JSON"), std::string::npos);
  fs::remove_all(dir);
}

TEST(ReferenceModelCheckpoint, CheckpointMismatchesAreRefused) {
  rm::transformer<float> m(small(rm::architecture::llama, false));
  m.init_random(8);
  const fs::path dir = scratch("mismatch");
  rm::save_checkpoint(m, dir);
  const std::string cfg = (dir / "config.json").string();
  auto entries = [&](auto drop, auto rename) {
    std::vector<rm::st_write_entry<float>> e;
    for (const auto& t : m.layout().tensors) {
      if (t.name == drop) continue;
      std::vector<index_t> shape = t.shape;
      std::string name = t.name == rename ? std::string("model.layers.0.mlp.up_proj.bias") : t.name;
      e.push_back({name, shape, std::span<const float>(m.parameters()).subspan(t.offset, t.numel())});
    }
    return e;
  };
  // Missing tensor.
  rm::write_safetensors<float>(dir / "model.safetensors",
                               entries("model.layers.1.mlp.up_proj.weight", ""));
  EXPECT_NE(error_of([&] { rm::load_checkpoint<float>(dir); })
                .find("tensor model.layers.1.mlp.up_proj.weight is missing"),
            std::string::npos);
  // A tensor this architecture does not have (an MLP bias).
  rm::write_safetensors<float>(dir / "model.safetensors",
                               entries("", "model.layers.0.mlp.up_proj.weight"));
  EXPECT_NE(error_of([&] { rm::load_checkpoint<float>(dir); })
                .find("tensor model.layers.0.mlp.up_proj.bias is not a parameter"),
            std::string::npos);
  // Shape disagreeing with config.json: a checkpoint of a wider model.
  rm::model_config wide = small(rm::architecture::llama, false);
  wide.intermediate_size = 16;
  rm::transformer<float> w(wide);
  rm::save_checkpoint(w, dir);
  {
    std::ofstream out(cfg);
    out << rm::config_to_json(small(rm::architecture::llama, false)).dump();
  }
  EXPECT_NE(error_of([&] { rm::load_checkpoint<float>(dir); })
                .find("tensor model.layers.0.mlp.gate_proj.weight has shape [16,8], expected [12,8]"),
            std::string::npos);
  // Unsupported configurations are refused, not approximated.
  auto j = rm::config_to_json(small(rm::architecture::qwen2, false));
  j["rope_parameters"]["rope_type"] = "yarn";
  EXPECT_THROW(rm::config_from_json(j, "test"), posttrain::error);
  j = rm::config_to_json(small(rm::architecture::llama, false));
  j["model_type"] = "mistral";
  EXPECT_THROW(rm::config_from_json(j, "test"), posttrain::error);
  j = rm::config_to_json(small(rm::architecture::llama, false));
  j["rms_norm_eps"] = "small";
  EXPECT_THROW(rm::config_from_json(j, "test"), posttrain::error);
  j = rm::config_to_json(small(rm::architecture::llama, false));
  j.erase("hidden_size");
  EXPECT_THROW(rm::config_from_json(j, "test"), posttrain::error);
  fs::remove_all(dir);
}

TEST(ReferenceModelCheckpoint, FailedWriteLeavesNothing) {
  const fs::path dir = scratch("nowrite") / "absent_subdir";
  std::vector<float> v = {1, 2, 3};
  std::vector<rm::st_write_entry<float>> e = {{"v", {3}, v}};
  EXPECT_THROW(rm::write_safetensors<float>(dir / "m.safetensors", e), posttrain::error);
  EXPECT_FALSE(fs::exists(dir));
  std::vector<rm::st_write_entry<float>> bad = {{"v", {4}, v}};
  const fs::path ok_dir = scratch("badshape");
  EXPECT_THROW(rm::write_safetensors<float>(ok_dir / "m.safetensors", bad), posttrain::error);
  EXPECT_TRUE(fs::is_empty(ok_dir));
  fs::remove_all(ok_dir);
}
