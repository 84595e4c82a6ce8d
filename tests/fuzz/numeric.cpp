// Fuzz target: the validated numeric entry points (issue 14). The input bytes choose shapes,
// ragged offsets (sometimes non-monotone or out of range), sizes that disagree with the offsets,
// values (NaN, ±inf, huge, denormal, raw bits), masks (0, 1, fractions, negative, NaN),
// hyperparameters and raw enum values, and call token log-probs (forward, backward), segment
// statistics, whitening, KL, aggregation, GRPO group advantages, GAE and DPO.
//
// The contract checked: every call either returns or throws posttrain::error (any other
// exception is a finding), reads and writes nothing outside its views (ASan, exact-size buffers),
// has no undefined behaviour (UBSan), and leaves its outputs bit-for-bit untouched when it throws.
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <span>
#include <vector>

#include "fuzz/fuzz.h"
#include "posttrain/posttrain.hpp"

namespace {

namespace pt = posttrain;

// Reads the fuzzer's bytes as a stream of choices; past the end every read is 0.
class byte_reader {
 public:
  byte_reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | byte();
    return v;
  }
  // Small counts mostly, now and then a raw (possibly negative) index.
  pt::index_t count(pt::index_t max) {
    const std::uint8_t b = byte();
    if (b == 255) return static_cast<pt::index_t>(static_cast<std::int32_t>(u32()));
    return static_cast<pt::index_t>(b % (max + 1));
  }
  double value() {
    switch (byte() % 12) {
      case 0: return std::numeric_limits<double>::quiet_NaN();
      case 1: return std::numeric_limits<double>::infinity();
      case 2: return -std::numeric_limits<double>::infinity();
      case 3: return 1e30;
      case 4: return -1e4;
      case 5: return 1e-40;
      case 6: {
        const std::uint32_t bits = u32();
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return f;
      }
      case 7: return 0.0;
      default: return (static_cast<int>(byte()) - 128) / 16.0;
    }
  }
  float mask_value() {
    switch (byte() % 8) {
      case 0: return 0.f;
      case 1: return 0.5f;
      case 2: return -1.f;
      case 3: return std::numeric_limits<float>::quiet_NaN();
      case 4: return std::numeric_limits<float>::infinity();
      default: return 1.f;
    }
  }
  template <class E>
  E enumeration(int valid) {
    const std::uint8_t b = byte();
    return static_cast<E>(b < 224 ? b % valid : b);  // now and then out of range
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// Ragged offsets: usually valid (0, monotone), sometimes broken at one position.
// A negative row count gives no offsets at all (an empty span, which every entry point must
// reject or treat as an empty batch).
std::vector<pt::index_t> make_offsets(byte_reader& in, pt::index_t rows) {
  if (rows < 0) return {};
  rows = std::min<pt::index_t>(rows, 64);
  std::vector<pt::index_t> offsets(static_cast<std::size_t>(rows + 1), 0);
  for (pt::index_t i = 1; i <= rows; ++i) offsets[i] = offsets[i - 1] + in.count(6);
  if (in.byte() % 8 == 0 && rows >= 0) offsets[in.byte() % (rows + 1)] = in.count(20) - 3;
  return offsets;
}

// The token count the offsets claim (0 without offsets).
pt::index_t total(const std::vector<pt::index_t>& offsets) {
  return offsets.empty() ? 0 : offsets.back();
}

// The size of an array that should hold n elements: usually n, sometimes off by one (or empty).
std::size_t size_near(byte_reader& in, pt::index_t n) {
  const pt::index_t size = std::max<pt::index_t>(0, std::min<pt::index_t>(n, 4096));
  switch (in.byte() % 10) {
    case 0: return static_cast<std::size_t>(size + 1);
    case 1: return size > 0 ? static_cast<std::size_t>(size - 1) : 0;
    default: return static_cast<std::size_t>(size);
  }
}

template <class T>
std::vector<T> values(byte_reader& in, std::size_t n) {
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(in.value());
  return v;
}

std::vector<float> mask(byte_reader& in, std::size_t n) {
  std::vector<float> v(n);
  for (auto& x : v) x = in.mask_value();
  return v;
}

// Runs one call. posttrain::error is an accepted outcome, but then every output must be exactly
// as it was; anything else thrown is a finding.
template <class Call, class... Outputs>
void expect_contract(Call&& call, Outputs&... outputs) {
  const auto before = std::make_tuple(outputs...);
  try {
    call();
  } catch (const pt::error&) {
    if (before != std::make_tuple(outputs...)) __builtin_trap();  // wrote before rejecting
  } catch (...) {
    __builtin_trap();
  }
}

// Fills an output with a recognisable, NaN-free sentinel (so == compares bits meaningfully).
template <class T>
std::vector<T> sentinel(std::size_t n) {
  return std::vector<T>(n, static_cast<T>(-12345.0));
}

void token_logprobs_case(byte_reader& in) {
  // The view must describe its buffer (a view that claims more than its memory is the caller's
  // bug, not the library's): negative dimensions are kept, large ones capped.
  const pt::index_t rows = std::min<pt::index_t>(in.count(5), 64);
  const pt::index_t cols = std::min<pt::index_t>(in.count(9), 64);
  const pt::index_t ld = std::min<pt::index_t>(std::max<pt::index_t>(cols, 0) + in.count(2), 66);
  const pt::index_t n_data = std::max<pt::index_t>(0, rows) * std::max<pt::index_t>(0, ld);
  const auto logits = values<float>(in, static_cast<std::size_t>(n_data));
  std::vector<pt::index_t> targets(size_near(in, rows));
  for (auto& t : targets) t = in.count(10) - 1;
  if (!targets.empty() && in.byte() % 4 == 0) targets[0] = -100;
  const pt::token_logprobs_options options{.temperature = in.byte() % 5 == 0 ? in.value() : 0.7};
  const pt::matrix_view<const float> view{logits.data(), rows, cols, ld};
  expect_contract([&] { (void)pt::token_logprobs(pt::exec::host{}, view, targets, options); });

  std::vector<float> lse = values<float>(in, size_near(in, rows));
  std::vector<float> d_logprob = values<float>(in, size_near(in, rows));
  auto d_logits = sentinel<float>(static_cast<std::size_t>(n_data));
  expect_contract(
      [&] {
        pt::token_logprobs_backward(pt::exec::host{}, view, targets,
                                    {.lse = lse, .d_logprob = d_logprob},
                                    pt::matrix_view<float>{d_logits.data(), rows, cols, ld}, options);
      },
      d_logits);
}

void reductions_case(byte_reader& in) {
  const pt::index_t rows = in.count(5);
  const auto offsets = make_offsets(in, rows);
  const pt::index_t n = total(offsets);
  const auto v = values<float>(in, size_near(in, n));
  const auto m = mask(in, size_near(in, n));
  auto count = sentinel<double>(size_near(in, rows)), mean = sentinel<double>(size_near(in, rows));
  expect_contract(
      [&] {
        pt::segment_stats(pt::exec::host{}, std::span<const float>(v), m, offsets,
                          {.count = count, .mean = mean});
      },
      count, mean);

  pt::whiten_options options{};
  options.variance = in.enumeration<pt::variance_kind>(2);
  options.eps_mode = in.enumeration<pt::whiten_eps_mode>(2);
  options.scope = in.enumeration<pt::whiten_scope>(2);
  options.on_degenerate = in.enumeration<pt::degenerate_policy>(3);
  if (in.byte() % 4 == 0) options.eps = in.value();
  auto out = sentinel<float>(size_near(in, n));
  const bool segmented = in.byte() % 2;
  expect_contract(
      [&] {
        if (segmented)
          (void)pt::whiten(pt::exec::host{}, std::span<const float>(v), m,
                           std::span<const pt::index_t>(offsets), std::span<float>(out), options);
        else
          (void)pt::whiten(pt::exec::host{}, std::span<const float>(v), m, std::span<float>(out),
                           options);
      },
      out);
}

void kl_and_aggregation_case(byte_reader& in) {
  const pt::index_t rows = in.count(5);
  const auto offsets = make_offsets(in, rows);
  const pt::index_t n = total(offsets);
  const auto lp = values<float>(in, size_near(in, n));
  const auto ref = values<float>(in, size_near(in, n));
  pt::kl_options options{};
  if (in.byte() % 3 == 0) options.input_min = in.value();
  if (in.byte() % 3 == 0) options.input_max = in.value();
  auto value = sentinel<float>(size_near(in, n)), grad = sentinel<float>(size_near(in, n));
  expect_contract(
      [&] {
        pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, std::span<const float>(lp),
                                      std::span<const float>(ref), options, std::span<float>(value),
                                      std::span<float>(grad));
      },
      value, grad);

  const auto m = mask(in, size_near(in, n));
  pt::agg_normalizer normalizer{};
  if (in.byte() % 4 == 0) normalizer.tokens = in.value();
  if (in.byte() % 4 == 0) normalizer.sequences = in.value();
  if (in.byte() % 2 == 0) normalizer.constant = in.value();
  auto agg_grad = sentinel<float>(size_near(in, n));
  const std::span<const float> loss(lp);
  expect_contract(
      [&] {
        switch (in.byte() % 4) {
          case 0:
            (void)pt::aggregate_loss<pt::agg::token_mean>(pt::exec::host{}, loss, m, offsets,
                                                          normalizer, std::span<float>(agg_grad));
            break;
          case 1:
            (void)pt::aggregate_loss<pt::agg::seq_mean_token_mean>(
                pt::exec::host{}, loss, m, offsets, normalizer, std::span<float>(agg_grad));
            break;
          case 2:
            (void)pt::aggregate_loss<pt::agg::seq_mean_token_sum>(
                pt::exec::host{}, loss, m, offsets, normalizer, std::span<float>(agg_grad));
            break;
          default:
            (void)pt::aggregate_loss<pt::agg::constant_divisor>(
                pt::exec::host{}, loss, m, offsets, normalizer, std::span<float>(agg_grad));
        }
      },
      agg_grad);
}

void advantage_case(byte_reader& in) {
  const pt::index_t groups = in.count(4);
  const auto group_offsets = make_offsets(in, groups);
  const auto rewards = values<double>(in, size_near(in, total(group_offsets)));
  pt::advantage::group_options options{};
  options.std_kind = in.enumeration<pt::variance_kind>(2);
  options.epsilon_mode = in.enumeration<pt::advantage::std_epsilon>(2);
  options.scale = in.enumeration<pt::advantage::group_scale>(3);
  options.singleton = in.enumeration<pt::advantage::singleton_policy>(3);
  options.nan = in.enumeration<pt::advantage::nan_policy>(2);
  if (in.byte() % 4 == 0) options.epsilon = in.value();
  auto out = sentinel<double>(size_near(in, total(group_offsets)));
  expect_contract(
      [&] {
        pt::advantage::group_advantages(pt::exec::host{}, std::span<const double>(rewards),
                                        group_offsets, std::span<double>(out), options);
      },
      out);

  const pt::index_t rows = in.count(4);
  const auto offsets = make_offsets(in, rows);
  const pt::index_t n = total(offsets);
  const auto token_rewards = values<float>(in, size_near(in, n));
  const auto token_values = values<float>(in, size_near(in, n));
  const auto m = mask(in, size_near(in, n));
  pt::advantage::gae_options gae_options{};
  gae_options.gamma = in.byte() % 4 == 0 ? in.value() : 0.99;
  gae_options.lambda = in.byte() % 4 == 0 ? in.value() : 0.95;
  gae_options.recurrence = in.enumeration<pt::advantage::gae_recurrence>(2);
  gae_options.whiten = in.byte() % 2;
  auto advantages = sentinel<float>(size_near(in, n)), returns = sentinel<float>(size_near(in, n));
  expect_contract(
      [&] {
        pt::advantage::gae(pt::exec::host{}, std::span<const float>(token_rewards),
                           std::span<const float>(token_values), m, offsets,
                           std::span<float>(advantages), std::span<float>(returns), gae_options);
      },
      advantages, returns);
}

void preference_case(byte_reader& in) {
  const pt::index_t pairs = in.count(4);
  const auto chosen_offsets = make_offsets(in, pairs);
  const auto rejected_offsets = make_offsets(in, pairs);
  const auto chosen_mask = mask(in, size_near(in, total(chosen_offsets)));
  const auto rejected_mask = mask(in, size_near(in, total(rejected_offsets)));
  const auto chosen = values<float>(in, size_near(in, total(chosen_offsets)));
  const auto rejected = values<float>(in, size_near(in, total(rejected_offsets)));
  const auto ref_chosen = values<float>(in, size_near(in, pairs));
  const auto ref_rejected = values<float>(in, size_near(in, pairs));
  const pt::loss::preference_inputs<float> inputs{
      .batch = {.chosen = {chosen_offsets, chosen_mask}, .rejected = {rejected_offsets, rejected_mask}},
      .chosen_logprobs = chosen,
      .rejected_logprobs = rejected,
      .reference_chosen = ref_chosen,
      .reference_rejected = ref_rejected};
  auto chosen_grad = sentinel<float>(size_near(in, total(chosen_offsets)));
  auto rejected_grad = sentinel<float>(size_near(in, total(rejected_offsets)));
  const double beta = in.byte() % 4 == 0 ? in.value() : 0.1;
  expect_contract(
      [&] {
        (void)pt::algo::dpo::compute(inputs, {.beta = beta},
                                     {.chosen_grad = chosen_grad, .rejected_grad = rejected_grad});
      },
      chosen_grad, rejected_grad);
}

}  // namespace

POSTTRAIN_FUZZ_TARGET(numeric) {
  byte_reader in(data, size);
  switch (in.byte() % 5) {
    case 0: token_logprobs_case(in); break;
    case 1: reductions_case(in); break;
    case 2: kl_and_aggregation_case(in); break;
    case 3: advantage_case(in); break;
    default: preference_case(in); break;
  }
  return 0;
}
