// `reference_trainer plot`: metrics.jsonl → data files and a gnuplot script with the stage
// boundaries marked; with gnuplot installed, valid PNGs (skipped, visibly, without it).
#include <gtest/gtest.h>

#include <cstdio>

#include <filesystem>
#include <fstream>
#include <string>

#include "plot.hpp"

namespace fs = std::filesystem;
namespace plot = reference_trainer::plot;

namespace {

// Two stages (sft 3 steps, rl:grpo 2 steps) and evaluations before and after each.
fs::path write_run(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("posttrain_rt_plot_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream o(dir / "metrics.jsonl");
  o << R"({"event":"eval","stage":"init","stage_index":0,"heldout_accuracy":0.0,"heldout_accuracy_by_task":{"gsm8k":0.0,"math":0.0}})" "\n";
  for (int s = 1; s <= 3; ++s)
    o << R"({"stage":"sft","stage_index":1,"step":)" << s << R"(,"loss":)" << 3.0 - s << "}\n";
  o << R"({"event":"eval","stage":"sft","stage_index":1,"heldout_accuracy":0.25,"heldout_accuracy_by_task":{"gsm8k":0.5,"math":0.0}})" "\n";
  for (int s = 1; s <= 2; ++s)
    o << R"({"stage":"rl","algo":"grpo","stage_index":2,"step":)" << s
      << R"(,"loss":0.1,"reward":0.)" << s << R"(,"kl":0.01,"response_length":7.5})" "\n";
  o << R"({"event":"eval","stage":"rl:grpo","stage_index":2,"heldout_accuracy":0.5,"heldout_accuracy_by_task":{"gsm8k":0.75,"math":0.25}})" "\n";
  return dir;
}

std::string read(const fs::path& f) {
  std::ifstream in(f);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST(Plot, StepsAreLaidEndToEndAcrossStages) {
  const auto m = plot::read_metrics(write_run("steps") / "metrics.jsonl");
  ASSERT_EQ(m.steps.size(), 5u);
  EXPECT_EQ(m.steps[2].x, 3);
  EXPECT_EQ(m.steps[3].x, 4);  // rl step 1 follows sft step 3
  EXPECT_FALSE(m.steps[0].reward.has_value());
  EXPECT_DOUBLE_EQ(*m.steps[4].reward, 0.2);
  ASSERT_EQ(m.evals.size(), 3u);
  EXPECT_EQ(m.evals[0].x, 0);
  EXPECT_EQ(m.evals[1].x, 3);
  EXPECT_EQ(m.evals[2].x, 5);
  EXPECT_EQ(m.stage_names.at(2), "rl:grpo");
}

TEST(Plot, ScriptMarksStageBoundariesAndWritesEveryMetric) {
  const auto dir = write_run("script");
  ASSERT_EQ(plot::run(dir, {}, /*script_only=*/true), 0);
  const std::string gp = read(dir / "plots" / "plot.gp");
  // The sft | rl boundary at step 3, both stages named.
  EXPECT_NE(gp.find("set arrow 2 from 3, graph 0 to 3, graph 1 nohead"), std::string::npos) << gp;
  EXPECT_NE(gp.find("\"sft\" at 1.5"), std::string::npos) << gp;
  EXPECT_NE(gp.find("\"rl:grpo\" at 4"), std::string::npos) << gp;
  for (const char* png : {"reward.png", "kl.png", "loss.png", "response_length.png", "heldout_accuracy.png"})
    EXPECT_NE(gp.find(std::string("set output \"") + png + "\""), std::string::npos) << png;
  EXPECT_NE(gp.find("title \"math\""), std::string::npos);  // accuracy per task kind
  const std::string steps = read(dir / "plots" / "steps.dat");
  EXPECT_NE(steps.find("1 ? ? 2 ?\n"), std::string::npos) << steps;
  EXPECT_NE(steps.find("5 0.2 0.01 0.1 7.5\n"), std::string::npos) << steps;
  EXPECT_NE(read(dir / "plots" / "eval.dat").find("5 0.5 0.75 0.25\n"), std::string::npos);
}

TEST(Plot, AnSftOnlyRunHasNoRewardPlot) {
  const auto dir = write_run("sft_only");
  {
    std::ofstream o(dir / "metrics.jsonl");
    o << R"({"stage":"sft","stage_index":1,"step":1,"loss":2.0})" "\n";
  }
  const auto m = plot::read_metrics(dir / "metrics.jsonl");
  EXPECT_EQ(plot::outputs(m), std::vector<std::string>{"loss.png"});
  EXPECT_EQ(plot::script(m).find("reward.png"), std::string::npos);
}

TEST(Plot, RendersPngsWithGnuplot) {
  if (!plot::gnuplot_available()) GTEST_SKIP() << "gnuplot is not installed (apt-get install gnuplot-nox)";
  const auto dir = write_run("png");
  ASSERT_EQ(plot::run(dir, {}, false), 0);
  for (const char* png : {"reward.png", "kl.png", "loss.png", "response_length.png", "heldout_accuracy.png"})
    EXPECT_TRUE(plot::is_png(dir / "plots" / png)) << png;
}

// KL at β 0 is 0 at every step: the script gives that plot a y range (gnuplot would otherwise
// warn "empty y range"), and gnuplot renders every plot without a warning.
fs::path write_constant_kl_run(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("posttrain_rt_plot_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream o(dir / "metrics.jsonl");
  for (int s = 1; s <= 3; ++s)
    o << R"({"stage":"rl","algo":"grpo","stage_index":1,"step":)" << s << R"(,"loss":0.)" << s
      << R"(,"reward":0.5,"kl":0.0,"response_length":4})" "\n";
  return dir;
}

TEST(Plot, ConstantSeriesGetAYRange) {
  const auto m = plot::read_metrics(write_constant_kl_run("constant_script") / "metrics.jsonl");
  const std::string gp = plot::script(m);
  EXPECT_NE(gp.find("set title \"KL to the reference (k3, per token)\"\nset yrange [-1:1]\nplot"),
            std::string::npos) << gp;
  EXPECT_NE(gp.find("set yrange [-0.5:1.5]\nplot \"steps.dat\" using 1:2"), std::string::npos) << gp;  // reward 0.5
  EXPECT_NE(gp.find("set yrange [3:5]\nplot \"steps.dat\" using 1:5"), std::string::npos) << gp;  // length 4
  // The loss varies: autoscaled (no range right before its plot).
  EXPECT_NE(gp.find("set title \"loss\"\nplot"), std::string::npos) << gp;
}

TEST(Plot, GnuplotPrintsNoWarningOnConstantSeries) {
  if (!plot::gnuplot_available()) GTEST_SKIP() << "gnuplot is not installed (apt-get install gnuplot-nox)";
  const auto dir = write_constant_kl_run("constant_png");
  ASSERT_EQ(plot::run(dir, {}, /*script_only=*/true), 0);
  const std::string cmd = "cd '" + (dir / "plots").string() + "' && gnuplot plot.gp 2>&1";
  FILE* f = ::popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
  EXPECT_EQ(::pclose(f), 0) << out;
  EXPECT_EQ(out, "") << "gnuplot printed: " << out;
  for (const char* png : {"reward.png", "kl.png", "loss.png", "response_length.png"})
    EXPECT_TRUE(plot::is_png(dir / "plots" / png)) << png;
}
