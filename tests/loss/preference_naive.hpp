// Independent float64 references for the preference tests: every section-7 formula written
// naively (plain exp/log, no stable branches: valid for the moderate inputs the tests use), and a
// naive composition over packed sequences. Nothing here calls the code under test.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace preference_naive {

struct params {
  double beta = 0.1;
  double eps = 0.0;
  double gamma = 0.5;
  double tau = 0.05;
};

inline double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double logsig(double x) { return -std::log1p(std::exp(-x)); }

using link_fn = double (*)(double dc, double dr, const params& p);

inline double sigmoid(double dc, double dr, const params& p) {
  const double z = dc - dr;
  return -(1 - p.eps) * logsig(p.beta * z) - p.eps * logsig(-p.beta * z);
}
inline double simpo(double dc, double dr, const params& p) {
  const double u = p.beta * (dc - dr) - p.gamma;
  return -(1 - p.eps) * logsig(u) - p.eps * logsig(-u);
}
inline double robust(double dc, double dr, const params& p) {
  const double z = dc - dr;
  return (-(1 - p.eps) * logsig(p.beta * z) + p.eps * logsig(-p.beta * z)) / (1 - 2 * p.eps);
}
inline double hinge(double dc, double dr, const params& p) {
  return std::max(0.0, 1 - p.beta * (dc - dr));
}
inline double ipo(double dc, double dr, const params& p) {
  const double g = (dc - dr) - 1 / (2 * p.beta);
  return g * g;
}
inline double exo_pair(double dc, double dr, const params& p) {
  const double u = p.beta * (dc - dr);
  return sig(u) * (logsig(u) - std::log(1 - p.eps)) + sig(-u) * (logsig(-u) - std::log(p.eps));
}
inline double nca_pair(double dc, double dr, const params& p) {
  return -logsig(p.beta * dc) - 0.5 * logsig(-p.beta * dc) - 0.5 * logsig(-p.beta * dr);
}
inline double bco_pair(double dc, double dr, const params& p) {
  return -logsig(p.beta * dc) - logsig(-p.beta * dr);
}
inline double sppo_hard(double dc, double dr, const params& p) {
  const double a = dc - 1 / (2 * p.beta), b = dr + 1 / (2 * p.beta);
  return a * a + b * b;
}
inline double apo_zero(double dc, double dr, const params& p) {
  return (1 - sig(p.beta * dc)) + sig(p.beta * dr);
}
inline double apo_down(double dc, double dr, const params& p) {
  return sig(p.beta * dc) + (1 - sig(p.beta * (dc - dr)));
}
inline double discopop(double dc, double dr, const params& p) {
  const double x = p.beta * (dc - dr);
  const double w = sig(x / p.tau);
  return (1 - w) * (-logsig(x)) + w * std::exp(-x);
}

// Masked sum or mean of log-probs over [b, e); masked entries are skipped (they may be NaN).
inline double score(const std::vector<double>& lp, const std::vector<float>& mask, std::int64_t b,
                    std::int64_t e, bool mean) {
  double s = 0, w = 0;
  for (std::int64_t t = b; t < e; ++t) {
    const double m = mask.empty() ? 1.0 : mask[t];
    if (m == 0) continue;
    s += m * lp[t];
    w += m;
  }
  return mean ? s / std::max(w, 1.0) : s;
}

inline double mask_weight(const std::vector<float>& mask, std::int64_t b, std::int64_t e) {
  double w = 0;
  for (std::int64_t t = b; t < e; ++t) w += mask.empty() ? 1.0 : mask[t];
  return w;
}

}  // namespace preference_naive

// ---- f-DPO scores (TRL HEAD), AOT sorting, LD-DPO split, WPO weights: naive float64 forms. ----
namespace preference_naive {

inline double f_forward_kl(double d) { return -std::exp(-d); }
inline double f_js(double d) { return logsig(d); }
inline double f_alpha(double d, double a) {
  if (std::fabs(a - 1) < 1e-6) return d;
  return std::exp(std::min((a - 1) * d, 80.0)) / (a - 1);
}

inline double smoothed(double u, double eps) { return -(1 - eps) * logsig(u) - eps * logsig(-u); }

// AOT: Σ_k smoothed(β(sorted(a)_k − sorted(b)_k)), not divided.
inline double aot_sum(std::vector<double> a, std::vector<double> b, double beta, double eps) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  double s = 0;
  for (std::size_t k = 0; k < a.size(); ++k) s += smoothed(beta * (a[k] - b[k]), eps);
  return s;
}

inline std::int64_t positive(const std::vector<float>& mask, std::int64_t b, std::int64_t e) {
  std::int64_t n = 0;
  for (std::int64_t t = b; t < e; ++t) n += (mask.empty() || mask[t] > 0) ? 1 : 0;
  return n;
}

// LD-DPO: the first `shared` unmasked tokens weigh 1, the rest α (times the mask weight).
inline double ld_score(const std::vector<double>& lp, const std::vector<float>& mask,
                       std::int64_t b, std::int64_t e, std::int64_t shared, double alpha) {
  double s = 0;
  std::int64_t k = 0;
  for (std::int64_t t = b; t < e; ++t) {
    const double m = mask.empty() ? 1.0 : mask[t];
    if (m == 0) continue;
    s += (k < shared ? 1.0 : alpha) * m * lp[t];
    ++k;
  }
  return s;
}

// WPO: token mean of ℓ − log Σp² (or of ℓ when sp2 is empty).
inline double wpo_mean(const std::vector<double>& lp, const std::vector<double>& sp2,
                       const std::vector<float>& mask, std::int64_t b, std::int64_t e) {
  double s = 0, w = 0;
  for (std::int64_t t = b; t < e; ++t) {
    const double m = mask.empty() ? 1.0 : mask[t];
    if (m == 0) continue;
    s += m * (lp[t] - (sp2.empty() ? 0.0 : std::log(sp2[t])));
    w += m;
  }
  return s / std::max(w, 1.0);
}

}  // namespace preference_naive
