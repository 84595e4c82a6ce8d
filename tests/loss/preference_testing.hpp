// Test scaffolding for the preference-family tests (aot, cpo, f_dpo, ld_dpo, orpo, wpo): packed
// random pairs with NaN behind zero masks, and central-difference checks of ∂loss/∂ℓ through a
// whole composition. Nothing here calls the formulas under test except through Comp::compute.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "loss/preference_naive.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/loss/preference/algorithms.hpp"

namespace preference_testing {

namespace pt = posttrain;
using pt::index_t;

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct side {
  std::vector<index_t> offsets{0};
  std::vector<float> mask;
  std::vector<double> logprobs;
  std::vector<double> reference;  // [P]
};

// preference_naive::score of pair p on one side: the masked sum of its log-probs (the mean when
// mean).
inline double naive_score(const side& s, index_t p, bool mean = false) {
  return preference_naive::score(s.logprobs, s.mask, s.offsets[p], s.offsets[p + 1], mean);
}

struct pair_data {
  side chosen, rejected;
  std::vector<double> weights;  // [P] or empty
  index_t pairs() const { return static_cast<index_t>(chosen.offsets.size()) - 1; }

  pt::loss::preference_inputs<double> inputs(bool with_reference = true) const {
    pt::loss::preference_inputs<double> in;
    in.batch.chosen = {chosen.offsets, chosen.mask};
    in.batch.rejected = {rejected.offsets, rejected.mask};
    in.chosen_logprobs = chosen.logprobs;
    in.rejected_logprobs = rejected.logprobs;
    if (with_reference) {
      in.reference_chosen = chosen.reference;
      in.reference_rejected = rejected.reference;
    }
    in.pair_weights = weights;
    return in;
  }
};

// The same batch in float: copies of the log-probs and reference scores, and inputs viewing
// them (and the offsets and masks of the pair_data, which must outlive this). No pair weights.
struct float_inputs {
  std::vector<float> chosen, rejected, reference_chosen, reference_rejected;
  pt::loss::preference_inputs<float> in;

  explicit float_inputs(const pair_data& d)
      : chosen(d.chosen.logprobs.begin(), d.chosen.logprobs.end()),
        rejected(d.rejected.logprobs.begin(), d.rejected.logprobs.end()),
        reference_chosen(d.chosen.reference.begin(), d.chosen.reference.end()),
        reference_rejected(d.rejected.reference.begin(), d.rejected.reference.end()) {
    in.batch.chosen = {d.chosen.offsets, d.chosen.mask};
    in.batch.rejected = {d.rejected.offsets, d.rejected.mask};
    in.chosen_logprobs = chosen;
    in.rejected_logprobs = rejected;
    in.reference_chosen = reference_chosen;
    in.reference_rejected = reference_rejected;
  }
  float_inputs(const float_inputs&) = delete;
  float_inputs& operator=(const float_inputs&) = delete;
};

// Lengths min_len..max_len, masks in {0, 1} (also 0.5 when fractional), NaN behind zero masks,
// references = a random shift of the policy sum (moderate log-ratios).
inline pair_data make_data(std::mt19937_64& rng, int pairs, int min_len, int max_len,
                           bool fractional) {
  std::uniform_int_distribution<int> len(min_len, max_len);
  std::uniform_real_distribution<double> lp(-3.0, -0.05), shift(-1.5, 1.5), coin(0.0, 1.0);
  pair_data d;
  for (side* s : {&d.chosen, &d.rejected}) {
    for (int p = 0; p < pairs; ++p) {
      const int n = len(rng);
      double sum = 0;
      for (int t = 0; t < n; ++t) {
        const double c = coin(rng);
        const float m = c < 0.2 ? 0.0f : (fractional && c < 0.35 ? 0.5f : 1.0f);
        s->mask.push_back(m);
        const double v = lp(rng);
        s->logprobs.push_back(m == 0.0f ? kNaN : v);
        if (m != 0.0f) sum += m * v;
      }
      s->offsets.push_back(static_cast<index_t>(s->mask.size()));
      s->reference.push_back(sum + shift(rng));
    }
  }
  return d;
}

// Reference-free batches (CPO, AlphaPO, ORPO score the policy alone): lengths up to max_len,
// masks in {0, 0.5, 1}, log-probs in [lo, −0.05] with NaN behind zero masks, no reference scores.
// With nonempty every completion has at least one token and its first is never masked, so none is
// all padding (ORPO's log(1 − exp ā) is −∞ at the empty mean ā = 0); without, lengths start at 0
// and any token may be masked.
inline pair_data make_policy_data(std::mt19937_64& rng, int pairs, int max_len, bool nonempty,
                                  double lo = -3.0) {
  std::uniform_int_distribution<int> len(nonempty ? 1 : 0, max_len);
  std::uniform_real_distribution<double> lp(lo, -0.05), coin(0.0, 1.0);
  pair_data d;
  for (side* s : {&d.chosen, &d.rejected}) {
    for (int p = 0; p < pairs; ++p) {
      const int n = len(rng);
      for (int t = 0; t < n; ++t) {
        const double c = coin(rng);
        const bool padding = c < 0.2 && !(nonempty && t == 0);
        const float m = padding ? 0.0f : (c < 0.35 ? 0.5f : 1.0f);
        s->mask.push_back(m);
        s->logprobs.push_back(m == 0.0f ? kNaN : lp(rng));
      }
      s->offsets.push_back(static_cast<index_t>(s->mask.size()));
    }
  }
  return d;
}

// One token per sequence with mask 1: π = ℓ exactly, so token gradients are ∂loss/∂π.
inline pair_data single_tokens(const std::vector<double>& pc, const std::vector<double>& pr,
                               const std::vector<double>& rc, const std::vector<double>& rr) {
  pair_data d;
  for (std::size_t p = 0; p < pc.size(); ++p) {
    d.chosen.offsets.push_back(static_cast<index_t>(p + 1));
    d.rejected.offsets.push_back(static_cast<index_t>(p + 1));
    d.chosen.mask.push_back(1.0f);
    d.rejected.mask.push_back(1.0f);
  }
  d.chosen.logprobs = pc;
  d.rejected.logprobs = pr;
  d.chosen.reference = rc;
  d.rejected.reference = rr;
  return d;
}

// Central differences of Comp::compute(...).loss w.r.t. every unmasked token vs the written
// gradient; masked tokens must get exactly 0.
template <class Comp>
void check_gradient(pair_data d, const typename Comp::options_type& o, bool with_reference = true,
                    double tol = 1e-7, double h = 1e-6) {
  std::vector<double> gc(d.chosen.logprobs.size(), kNaN), gr(d.rejected.logprobs.size(), kNaN);
  Comp::compute(d.inputs(with_reference), o, pt::loss::preference_outputs<double>{gc, gr});
  for (side* s : {&d.chosen, &d.rejected}) {
    const std::vector<double>& g = s == &d.chosen ? gc : gr;
    for (std::size_t t = 0; t < s->logprobs.size(); ++t) {
      if (s->mask[t] == 0.0f) {
        EXPECT_EQ(g[t], 0.0) << "masked token " << t;
        continue;
      }
      const double saved = s->logprobs[t];
      s->logprobs[t] = saved + h;
      const double up = Comp::compute(d.inputs(with_reference), o).loss;
      s->logprobs[t] = saved - h;
      const double down = Comp::compute(d.inputs(with_reference), o).loss;
      s->logprobs[t] = saved;
      const double fd = (up - down) / (2 * h);
      EXPECT_NEAR(g[t], fd, tol * (1 + std::fabs(fd)))
          << Comp::name() << (s == &d.chosen ? " chosen" : " rejected") << " token " << t;
    }
  }
}

// For a per-pair link, ∂loss/∂ρ = −∂loss/∂π: central differences w.r.t. the reference scores of
// single-token data against the negated token gradients.
template <class Comp>
void check_reference_gradient(pair_data d, const typename Comp::options_type& o,
                              double tol = 1e-7) {
  std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
  Comp::compute(d.inputs(), o, pt::loss::preference_outputs<double>{gc, gr});
  const double h = 1e-6;
  for (side* s : {&d.chosen, &d.rejected}) {
    const std::vector<double>& g = s == &d.chosen ? gc : gr;
    for (std::size_t p = 0; p < s->reference.size(); ++p) {
      const double saved = s->reference[p];
      s->reference[p] = saved + h;
      const double up = Comp::compute(d.inputs(), o).loss;
      s->reference[p] = saved - h;
      const double down = Comp::compute(d.inputs(), o).loss;
      s->reference[p] = saved;
      const double fd = (up - down) / (2 * h);
      EXPECT_NEAR(-g[p], fd, tol * (1 + std::fabs(fd)))
          << Comp::name() << (s == &d.chosen ? " ref chosen " : " ref rejected ") << p;
    }
  }
}

// Runs `call`, expects a posttrain::error whose message contains `needle`.
inline void expect_error(const std::function<void()>& call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "no error, expected one mentioning " << needle;
  } catch (const pt::error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace preference_testing
