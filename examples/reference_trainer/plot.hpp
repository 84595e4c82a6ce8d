#pragma once
// `reference_trainer plot RUN_DIR [PLOTS_DIR] [--script-only]`: RUN_DIR/metrics.jsonl rendered as
// PNG plots with gnuplot (PLOTS_DIR defaults to RUN_DIR/plots):
//
//   reward.png             mean verifier reward of the samples per step (rl, rs_sft, dpo stages)
//   heldout_accuracy.png   held-out accuracy after every stage, overall and per task kind
//   kl.png                 k3 KL to the reference per step (rl stages)
//   loss.png               the stage's loss per step
//   response_length.png    mean sampled response length per step (rl stages)
//
// The x axis is the step counted over all stages; dashed lines mark the stage boundaries, each
// stage named at its top. Written next to the PNGs: steps.dat and eval.dat (whitespace columns,
// "?" = no value) and plot.gp, the gnuplot script (`cd PLOTS_DIR && gnuplot plot.gp` re-renders).
// Without gnuplot on PATH the data and script are written, one line says how to install it, and
// the command exits with code 3 (CTest's SKIP_RETURN_CODE for the rendering test).
#include <algorithm>
#include <cmath>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <posttrain/core/validate.hpp>

namespace reference_trainer::plot {

inline constexpr int exit_no_gnuplot = 3;

struct step_row {
  long x = 0;  // step over all stages
  std::size_t stage = 0;
  std::optional<double> reward, kl, loss, response_length;
};

struct eval_row {
  long x = 0;  // the end of the stage it follows
  double accuracy = 0;
  std::map<std::string, double> by_task;
};

struct metrics {
  std::map<std::size_t, std::string> stage_names;  // stage_index → "sft", "rl:grpo", ...
  std::map<std::size_t, long> stage_steps;         // stage_index → steps recorded
  std::vector<step_row> steps;
  std::vector<eval_row> evals;
  std::set<std::string> tasks;  // task kinds seen in the per-task accuracies

  // First x of stage k (stages are laid end to end in index order).
  long offset(std::size_t k) const {
    long o = 0;
    for (const auto& [i, n] : stage_steps)
      if (i < k) o += n;
    return o;
  }
};

inline metrics read_metrics(const std::filesystem::path& file) {
  std::ifstream in(file);
  posttrain::expect(static_cast<bool>(in), "reference_trainer plot", "cannot open ", file.string(),
                    " (expected a run directory of the trainer's --out)");
  std::vector<nlohmann::json> rows;
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    posttrain::expect(!j.is_discarded() && j.is_object() && j.contains("stage_index"),
                      "reference_trainer plot", file.string(), ":", n, ": not a metrics line");
    rows.push_back(std::move(j));
  }
  metrics m;
  for (const auto& j : rows) {
    if (j.contains("event")) continue;
    const auto k = j["stage_index"].get<std::size_t>();
    std::string name = j.value("stage", "?");
    if (j.contains("algo")) name += ":" + j["algo"].get<std::string>();
    m.stage_names[k] = name;
    m.stage_steps[k] = std::max(m.stage_steps[k], j.value("step", 0L));
  }
  auto num = [](const nlohmann::json& j, const char* key) -> std::optional<double> {
    if (j.contains(key) && j[key].is_number()) return j[key].get<double>();
    return std::nullopt;
  };
  for (const auto& j : rows) {
    const auto k = j["stage_index"].get<std::size_t>();
    if (j.contains("event")) {
      if (j["event"] != "eval") continue;
      eval_row e;
      e.x = m.offset(k + 1);
      e.accuracy = j.value("heldout_accuracy", 0.0);
      if (j.contains("heldout_accuracy_by_task") && j["heldout_accuracy_by_task"].is_object())
        for (auto it = j["heldout_accuracy_by_task"].begin(); it != j["heldout_accuracy_by_task"].end(); ++it) {
          e.by_task[it.key()] = it.value().get<double>();
          m.tasks.insert(it.key());
        }
      m.evals.push_back(std::move(e));
      continue;
    }
    step_row s;
    s.x = m.offset(k) + j.value("step", 0L);
    s.stage = k;
    s.reward = num(j, "reward");
    s.kl = num(j, "kl");
    s.loss = num(j, "loss");
    s.response_length = num(j, "response_length");
    m.steps.push_back(s);
  }
  return m;
}

namespace detail {
inline std::string value(const std::optional<double>& v) {
  if (!v) return "?";
  std::ostringstream o;
  o.precision(9);
  o << *v;
  return o.str();
}
}  // namespace detail

// steps.dat (x reward kl loss response_length) and eval.dat (x accuracy task...) in `dir`.
inline void write_data(const metrics& m, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  {
    std::ofstream o(dir / "steps.dat");
    o << "# step reward kl loss response_length\n";
    for (std::size_t i = 0; i < m.steps.size(); ++i) {
      const step_row& s = m.steps[i];
      if (i > 0 && m.steps[i - 1].stage != s.stage) o << '\n';  // a blank line: gnuplot breaks the line
      o << s.x << ' ' << detail::value(s.reward) << ' ' << detail::value(s.kl) << ' '
        << detail::value(s.loss) << ' ' << detail::value(s.response_length) << '\n';
    }
  }
  std::ofstream o(dir / "eval.dat");
  o << "# step heldout_accuracy";
  for (const auto& t : m.tasks) o << ' ' << t;
  o << '\n';
  for (const auto& e : m.evals) {
    o << e.x << ' ' << detail::value(e.accuracy);
    for (const auto& t : m.tasks) {
      const auto it = e.by_task.find(t);
      o << ' ' << (it == e.by_task.end() ? std::string("?") : detail::value(it->second));
    }
    o << '\n';
  }
}

// The gnuplot script: one PNG per metric that has at least one value.
inline std::string script(const metrics& m) {
  std::ostringstream g;
  g << "# reference_trainer plot: run `gnuplot plot.gp` in this directory\n"
       "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
       "  set terminal pngcairo size 960,540 noenhanced font \",11\"\n"
       "} else {\n"
       "  set terminal png size 960,540 noenhanced\n"
       "}\n"
       "set datafile missing \"?\"\n"
       "set grid\n"
       "set key below\n"
       "set xlabel \"step (all stages)\"\n";
  long total = 0;
  for (const auto& [k, n] : m.stage_steps) total += n;
  g << "set xrange [0:" << std::max(total, 1L) << "]\n";
  int id = 1;
  for (const auto& [k, name] : m.stage_names) {
    const long a = m.offset(k), b = a + m.stage_steps.at(k);
    if (a > 0)
      g << "set arrow " << id << " from " << a << ", graph 0 to " << a
        << ", graph 1 nohead dashtype 2 linecolor rgb \"gray40\"\n";
    g << "set label " << id << " \"" << name << "\" at " << (a + b) / 2.0
      << ", graph 0.96 center textcolor rgb \"gray30\"\n";
    ++id;
  }
  auto any = [&](auto field) {
    for (const auto& s : m.steps)
      if ((s.*field).has_value()) return true;
    return false;
  };
  struct one {
    const char* file;
    const char* title;
    const char* name;
    int column;
    std::optional<double> step_row::*field;
  };
  const one plots[] = {
      {"reward.png", "reward (mean verifier score of the samples)", "reward", 2, &step_row::reward},
      {"kl.png", "KL to the reference (k3, per token)", "kl", 3, &step_row::kl},
      {"loss.png", "loss", "loss", 4, &step_row::loss},
      {"response_length.png", "response length (tokens, mean of the samples)", "response length", 5,
       &step_row::response_length},
  };
  for (const auto& p : plots) {
    if (!any(p.field)) continue;
    // A constant series (e.g. KL at β 0: all zeros) has an empty autoscaled y range, which gnuplot
    // warns about ("empty y range"): give it one, centred on the value.
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto& s : m.steps)
      if ((s.*p.field).has_value() && std::isfinite(*(s.*p.field))) {
        lo = std::min(lo, *(s.*p.field));
        hi = std::max(hi, *(s.*p.field));
      }
    const bool constant = lo <= hi && hi - lo <= 1e-12 * std::max(1.0, std::abs(lo));
    g << "set output \"" << p.file << "\"\nset title \"" << p.title << "\"\n";
    if (constant) {
      const double pad = std::max(1.0, std::abs(lo) * 0.1);
      g << "set yrange [" << lo - pad << ":" << hi + pad << "]\n";
    }
    g << "plot \"steps.dat\" using 1:" << p.column << " with lines linewidth 2 title \"" << p.name
      << "\"\n";
    if (constant) g << "set autoscale y\n";
  }
  if (!m.evals.empty()) {
    g << "set output \"heldout_accuracy.png\"\nset title \"held-out accuracy (greedy, after each stage)\"\n"
         "set yrange [0:1]\n"
         "plot \"eval.dat\" using 1:2 with linespoints linewidth 2 pointtype 7 title \"all\"";
    int c = 3;
    if (m.tasks.size() > 1)
      for (const auto& t : m.tasks)
        g << ", \\\n     \"eval.dat\" using 1:" << c++ << " with linespoints pointtype 5 title \"" << t << "\"";
    g << "\nset autoscale y\n";
  }
  return g.str();
}

// The PNGs the script renders.
inline std::vector<std::string> outputs(const metrics& m) {
  std::vector<std::string> out;
  auto has = [&](std::optional<double> step_row::*f) {
    for (const auto& s : m.steps)
      if ((s.*f).has_value()) return true;
    return false;
  };
  if (has(&step_row::reward)) out.push_back("reward.png");
  if (has(&step_row::kl)) out.push_back("kl.png");
  if (has(&step_row::loss)) out.push_back("loss.png");
  if (has(&step_row::response_length)) out.push_back("response_length.png");
  if (!m.evals.empty()) out.push_back("heldout_accuracy.png");
  return out;
}

inline bool gnuplot_available() { return std::system("command -v gnuplot > /dev/null 2>&1") == 0; }

// The 8-byte PNG signature.
inline bool is_png(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  char sig[8] = {};
  in.read(sig, 8);
  static const unsigned char want[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return in.gcount() == 8 && std::equal(sig, sig + 8, reinterpret_cast<const char*>(want));
}

// The `plot` command. Returns the exit code.
inline int run(const std::filesystem::path& run_dir, std::filesystem::path dir, bool script_only) {
  if (dir.empty()) dir = run_dir / "plots";
  const metrics m = read_metrics(run_dir / "metrics.jsonl");
  write_data(m, dir);
  std::ofstream(dir / "plot.gp") << script(m);
  if (script_only) {
    std::printf("wrote %s (gnuplot script and data)\n", (dir / "plot.gp").string().c_str());
    return 0;
  }
  if (!gnuplot_available()) {
    std::fprintf(stderr,
                 "reference_trainer: plot: gnuplot not found; install it (Debian/Ubuntu: sudo apt-get "
                 "install gnuplot-nox) and run this again, or run `gnuplot plot.gp` in %s\n",
                 dir.string().c_str());
    return exit_no_gnuplot;
  }
  const std::string cmd = "cd '" + dir.string() + "' && gnuplot plot.gp";
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "reference_trainer: plot: gnuplot failed on %s\n", (dir / "plot.gp").string().c_str());
    return 2;
  }
  for (const auto& f : outputs(m))
    if (!is_png(dir / f)) {
      std::fprintf(stderr, "reference_trainer: plot: %s is not a PNG\n", (dir / f).string().c_str());
      return 2;
    }
  std::printf("wrote %zu plots to %s\n", outputs(m).size(), dir.string().c_str());
  return 0;
}

// `reference_trainer compare RUN_A RUN_B [--tolerance T]`: the per-step loss, reward, KL and
// kept count (rs_sft) and the held-out accuracies (the policy's, the reward model's) of two runs
// (e.g. one process and `mpirun -np 2`), matched by (stage, step). Prints the largest difference;
// exit code 1 when a value differs by more than T·max(1, |value|) or a step is missing from one run.
inline int compare(const std::filesystem::path& a_dir, const std::filesystem::path& b_dir, double tol) {
  auto load = [](const std::filesystem::path& d) {
    std::map<std::string, double> v;
    std::ifstream in(d / "metrics.jsonl");
    posttrain::expect(static_cast<bool>(in), "reference_trainer compare", "cannot open ",
                      (d / "metrics.jsonl").string());
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;
      const std::string at = "stage " + std::to_string(j.value("stage_index", 0)) +
                             (j.contains("event") ? " eval " + j.value("stage", std::string()) : " step " + std::to_string(j.value("step", 0L)));
      for (const char* key : {"loss", "reward", "kl", "heldout_accuracy", "rm_heldout_accuracy", "kept"})
        if (j.contains(key) && j[key].is_number()) v[at + " " + key] = j[key].get<double>();
    }
    return v;
  };
  const auto a = load(a_dir), b = load(b_dir);
  double worst = 0;
  std::string worst_at = "-";
  bool ok = a.size() == b.size();
  for (const auto& [k, x] : a) {
    const auto it = b.find(k);
    if (it == b.end()) {
      std::printf("%s: missing in %s\n", k.c_str(), b_dir.string().c_str());
      ok = false;
      continue;
    }
    const double d = std::abs(x - it->second) / std::max(1.0, std::abs(x));
    if (d > worst) worst = d, worst_at = k;
  }
  std::printf("compared %zu values; largest relative difference %.3g (%s); tolerance %.3g\n", a.size(), worst,
              worst_at.c_str(), tol);
  return ok && worst <= tol ? 0 : 1;
}

}  // namespace reference_trainer::plot
