// Golden tests against transformers (tests/golden/generate.py): the tiny LlamaForCausalLM and
// Qwen2ForCausalLM checkpoints saved by save_pretrained load here, and our logits, per-token
// log-probs (through the library's fused linear + log-prob op) and the gradient of the fixed loss
// L = Σ_t c_t log p(y_t) match transformers' to 1e-5 relative (max |ours − theirs| / max |theirs|
// per tensor), in float32. The batch is packed (transformers ran each sequence alone).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <cmath>
#include <vector>

#include <posttrain/ops/fused_linear_logprobs.hpp>

#include "checkpoint.hpp"
#include "golden.hpp"

namespace rm = reference_model;
using rm::index_t;

namespace {

template <class A, class B>
double rel_error(const A& ours, const B& theirs) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < theirs.size(); ++i) {
    diff = std::max(diff, std::abs(double(ours[i]) - double(theirs[i])));
    scale = std::max(scale, std::abs(double(theirs[i])));
  }
  return diff / scale;
}

template <class S>
void check_against_golden(const std::string& name, double tol) {
  const auto g = rm::testing::read_golden(name);
  ASSERT_FALSE(g.is_null()) << "missing golden record " << name;
  auto model = rm::load_checkpoint<S>(rm::testing::golden_dir() + "/" + name);
  const auto tokens = g["tokens"].get<std::vector<index_t>>();
  const auto offsets = g["seq_offsets"].get<std::vector<index_t>>();
  const auto targets = g["targets"].get<std::vector<index_t>>();
  const auto weights = g["loss_weights"].get<std::vector<S>>();
  const auto logits_ref = g["logits"].get<std::vector<double>>();
  const auto logprobs_ref = g["logprobs"].get<std::vector<double>>();

  rm::activations<S> act;
  const rm::matrix<S>& h = model.forward(tokens, offsets, act);
  const rm::matrix<S> logits = model.logits(h);
  ASSERT_EQ(std::size_t(logits.size()), logits_ref.size());
  const double e_logits = rel_error(std::span<const S>(logits.data(), logits.size()), logits_ref);
  EXPECT_LT(e_logits, tol) << name << " logits";

  const index_t n = h.rows();
  std::vector<S> lp(static_cast<std::size_t>(n)), lse(static_cast<std::size_t>(n));
  const posttrain::matrix_view<const S> hv{h.data(), n, h.cols()};
  posttrain::fused_linear_logprobs(posttrain::exec::host{}, hv, model.lm_head(), targets,
                                   posttrain::token_logprobs_outputs<S>{lp, lse});
  const double e_lp = rel_error(lp, logprobs_ref);
  EXPECT_LT(e_lp, tol) << name << " log-probs";

  model.zero_grad();
  rm::matrix<S> dh(n, h.cols());
  posttrain::fused_linear_logprobs_options o;
  o.accumulate_d_weight = true;
  posttrain::fused_linear_logprobs_backward(
      posttrain::exec::host{}, hv, model.lm_head(), targets,
      posttrain::token_logprobs_grads<S>{lse, {}, weights, {}},
      posttrain::matrix_view<S>{dh.data(), n, dh.cols()}, model.lm_head_grad(), o);
  model.backward(act, dh);
  double e_grad = 0;
  for (auto it = g["grads"].begin(); it != g["grads"].end(); ++it) {
    const auto ref = it->get<std::vector<double>>();
    const rm::tensor_info& t = model.layout().at(it.key());
    ASSERT_EQ(t.numel(), ref.size()) << it.key();
    const double e = rel_error(model.gradients().subspan(t.offset, t.numel()), ref);
    EXPECT_LT(e, tol) << name << " gradient of " << it.key();
    e_grad = std::max(e_grad, e);
  }
  ::testing::Test::RecordProperty("logits_rel_error", std::to_string(e_logits));
  ::testing::Test::RecordProperty("logprobs_rel_error", std::to_string(e_lp));
  ::testing::Test::RecordProperty("grad_rel_error", std::to_string(e_grad));
  std::printf("%s (%s): logits %.2e, log-probs %.2e, gradients %.2e (max |diff| / max |ref|)\n",
              name.c_str(), sizeof(S) == 4 ? "float" : "double", e_logits, e_lp, e_grad);
}

}  // namespace

TEST(ReferenceModelGolden, LlamaMatchesTransformersFloat) { check_against_golden<float>("llama", 1e-5); }
TEST(ReferenceModelGolden, Qwen2MatchesTransformersFloat) { check_against_golden<float>("qwen2", 1e-5); }
// In double our side is exact to ~1e-15: what remains is transformers' float32 rounding.
TEST(ReferenceModelGolden, LlamaMatchesTransformersDouble) { check_against_golden<double>("llama", 1e-5); }
TEST(ReferenceModelGolden, Qwen2MatchesTransformersDouble) { check_against_golden<double>("qwen2", 1e-5); }

// A checkpoint we write reloads with identical logits. With REFERENCE_MODEL_EXPORT_DIR set, the
// written directories stay there (<dir>/llama, <dir>/qwen2) for golden/check_written.py, which
// loads them in transformers and compares its logits with the golden record.
TEST(ReferenceModelGolden, WrittenCheckpointsReloadWithSameLogits) {
  const char* env = std::getenv("REFERENCE_MODEL_EXPORT_DIR");
  const std::filesystem::path root =
      env ? std::filesystem::path(env)
          : std::filesystem::temp_directory_path() /
                ("reference_model_export_" + std::to_string(::getpid()));
  for (const std::string name : {"llama", "qwen2"}) {
    const auto g = rm::testing::read_golden(name);
    const auto tokens = g["tokens"].get<std::vector<index_t>>();
    const auto offsets = g["seq_offsets"].get<std::vector<index_t>>();
    const auto model = rm::load_checkpoint<float>(rm::testing::golden_dir() + "/" + name);
    rm::save_checkpoint(model, root / name);
    const auto back = rm::load_checkpoint<float>(root / name);
    rm::activations<float> a1, a2;
    const rm::matrix<float> l1 = model.logits(model.forward(tokens, offsets, a1));
    const rm::matrix<float> l2 = back.logits(back.forward(tokens, offsets, a2));
    EXPECT_EQ(l1, l2) << name;
  }
  if (!env) std::filesystem::remove_all(root);
}
