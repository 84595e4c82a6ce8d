// Consumer of the installed CPU library: computes a few values and fails on a wrong result.
#include <cmath>
#include <cstdio>
#include <posttrain/posttrain.hpp>
#include <posttrain/reward.hpp>
#include <span>
#include <vector>

int main() {
  namespace pt = posttrain;
  int failures = 0;
  const auto check = [&failures](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "consumer: wrong result: %s\n", what);
      ++failures;
    }
  };

  // log σ(0) = −log 2; log σ(−1e4) = −1e4 without overflow.
  check(std::fabs(pt::math::logsigmoid(0.0) + std::log(2.0)) < 1e-15, "logsigmoid(0)");
  check(pt::math::logsigmoid(-1e4) == -1e4, "logsigmoid(-1e4)");

  // Packed ragged layout: 3 padded rows of 4 tokens, and offsets from lengths.
  check(pt::padded_offsets(3, 4) == std::vector<pt::index_t>{0, 4, 8, 12}, "padded_offsets");
  const std::vector<pt::index_t> lengths{2, 0, 3};
  check(pt::offsets_from_lengths(lengths) == std::vector<pt::index_t>{0, 2, 2, 5},
        "offsets_from_lengths");

  // The single-process communicator leaves statistics unchanged.
  std::vector<double> stats{3.0, 4.0};
  pt::dist::single_process_communicator{}.all_reduce_sum(stats);
  check(stats[0] == 3.0 && stats[1] == 4.0, "single_process_communicator");

  // Bad input throws posttrain::error.
  bool threw = false;
  try {
    pt::padded_offsets(-1, 4);
  } catch (const pt::error&) {
    threw = true;
  }
  check(threw, "padded_offsets(-1, 4) did not throw posttrain::error");

  // The verifiers: their own target (posttrain::reward) and umbrella.
  check(pt::reward::gsm8k_verifier{}.score("The answer is 18", "18") == 1.0, "gsm8k_verifier");

  if (failures == 0) std::printf("consumer: posttrain %s OK\n", POSTTRAIN_VERSION_STRING);
  return failures == 0 ? 0 : 1;
}
