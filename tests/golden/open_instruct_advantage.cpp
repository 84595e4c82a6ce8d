// Golden test: our advantage estimators with the conventions::open_instruct presets against
// open-instruct's own code at e6c3044 (tests/golden/data/open_instruct_advantage.json, written by
// generate_open_instruct.py):
//   advantage_normalization_type standard | centered   DataPreparationActor's inline statements
//       (numpy: reshape(-1, n), biased std, (R − μ)/(σ + 1e-8) | R − μ; float64), exec'd as they
//       are; against group_advantages with open_instruct::group / group_centered
//   rl_utils.calculate_advantages (padded rows, plain GAE, returns = A + V; values and rewards 0
//       after each row's end) against advantage::gae with open_instruct::gae on the packed rows
//   data_loader.maybe_mask_truncated_completions (drops rollouts whose finish_reason != "stop")
//       against advantage::mask_truncated (zeroes their mask)
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "golden/golden.hpp"
#include "posttrain/advantage/gae.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/advantage/shaping.hpp"
#include "posttrain/conventions.hpp"
#include "posttrain/core/exec.hpp"

namespace pt = posttrain;
namespace adv = pt::advantage;
namespace oi = pt::conventions::open_instruct;
using golden::json;
using golden::vec;
using offs = std::vector<pt::index_t>;

namespace {

const json& file() {
  static const json f = golden::load("open_instruct_advantage.json");
  return f;
}

}  // namespace

TEST(GoldenOpenInstructAdvantage, Meta) {
  EXPECT_EQ(file().at("meta").at("peer"), "open-instruct");
  EXPECT_EQ(file().at("meta").at("peer_version"), "e6c3044aa6201c8bfa4573c1b03142af599e730d");
  ASSERT_EQ(file().at("skipped").size(), 1u) << file().at("skipped").dump();
  EXPECT_EQ(file().at("skipped")[0].at("name"), "calculate_advantages_packed");
}

TEST(GoldenOpenInstructAdvantage, GroupNormalisation) {
  int standard = 0, centered = 0;
  for (const json& c : golden::cases(file(), "data_loader.advantage_normalization")) {
    const json& in = c.at("inputs");
    const vec r = golden::data(in.at("scores"));
    const offs groups = golden::group_offsets(in.at("index"));
    const bool is_standard = c.at("params").at("type") == "standard";
    (is_standard ? standard : centered)++;
    vec a(r.size());
    adv::group_advantages(pt::exec::host{}, r, groups, std::span<double>(a),
                          is_standard ? oi::group : oi::group_centered);
    golden::expect_close(a, golden::data(c.at("outputs").at("advantages")), c.at("name"));
  }
  EXPECT_GT(standard, 0);
  EXPECT_GT(centered, 0);
}

TEST(GoldenOpenInstructAdvantage, Gae) {
  for (const json& c : golden::cases(file(), "rl_utils.calculate_advantages")) {
    const json& in = c.at("inputs");
    const auto width = static_cast<std::size_t>(golden::shape(in.at("values"))[1]);
    const vec v = golden::data(in.at("values")), r = golden::data(in.at("rewards"));
    const vec pa = golden::data(c.at("outputs").at("advantages"));
    const vec pr = golden::data(c.at("outputs").at("returns"));
    // packed rows (open-instruct's padded rows without the padding)
    vec vp, rp, pa_p, pr_p;
    offs seqs{0};
    const auto lengths = in.at("lengths").get<std::vector<std::size_t>>();
    for (std::size_t b = 0; b < lengths.size(); ++b) {
      for (std::size_t t = 0; t < lengths[b]; ++t) {
        const std::size_t k = b * width + t;
        vp.push_back(v[k]), rp.push_back(r[k]), pa_p.push_back(pa[k]), pr_p.push_back(pr[k]);
      }
      seqs.push_back(static_cast<pt::index_t>(vp.size()));
    }
    adv::gae_options o = oi::gae;
    o.gamma = c.at("params").at("gamma").get<double>();
    o.lambda = c.at("params").at("lam").get<double>();
    vec a(vp.size()), ret(vp.size());
    adv::gae(pt::exec::host{}, rp, std::span<const double>(vp), {}, seqs, std::span<double>(a),
             std::span<double>(ret), o);
    const std::string name = c.at("name");
    golden::expect_close(a, pa_p, name + " advantages");
    golden::expect_close(ret, pr_p, name + " returns");
  }
}

TEST(GoldenOpenInstructAdvantage, GaePresetIsUndiscounted) {
  // The preset's γ = λ = 1 (open-instruct's PPO defaults) matches the g1.0_l1.0 case's params.
  EXPECT_EQ(oi::gae.gamma, 1.0);
  EXPECT_EQ(oi::gae.lambda, 1.0);
  EXPECT_FALSE(oi::gae.whiten);
}

TEST(GoldenOpenInstructAdvantage, MaskTruncatedCompletions) {
  for (const json& c : golden::cases(file(), "data_loader.maybe_mask_truncated_completions")) {
    const json& in = c.at("inputs");
    const auto reasons = in.at("finish_reasons").get<std::vector<std::string>>();
    const auto mask = golden::as_float(golden::data(in.at("response_mask")));
    const offs seqs = golden::row_offsets(in.at("response_mask"));
    std::vector<std::uint8_t> truncated;
    for (const std::string& r : reasons) truncated.push_back(r != "stop");
    std::vector<float> out(mask.size());
    adv::mask_truncated(pt::exec::host{}, mask, seqs, truncated, std::span<float>(out));
    // open-instruct drops the rows; ours zeroes their mask: the rows with weight left are the
    // rows it keeps (every row of this mask has at least one token).
    vec kept;
    for (std::size_t b = 0; b + 1 < seqs.size(); ++b) {
      double w = 0;
      for (pt::index_t t = seqs[b]; t < seqs[b + 1]; ++t) w += out[t];
      if (w > 0) kept.push_back(static_cast<double>(b));
    }
    golden::expect_close(kept, golden::data(c.at("outputs").at("kept")), c.at("name"));
  }
}
