// expect: a policy whose forward returns hidden states needs `backward\(matrix_view<const scalar_type> d_hidden
// A hidden-path policy (hidden states + lm_head) whose backward takes only one view is rejected.
#include <posttrain/pipeline/policy.hpp>
#include <span>
#include <vector>

namespace pt = posttrain;
namespace pp = posttrain::pipeline;

struct my_policy {
  using scalar_type = double;
  std::vector<double> w, g, h;
  pt::index_t vocab_size() const { return 4; }
  pp::policy_hidden<double> forward(const pp::token_sequences& s) {
    return {{h.data(), s.num_tokens(), 2}, {w.data(), 4, 2}};
  }
#ifdef POSTTRAIN_COMPILE_FAIL
  void backward(pt::matrix_view<const double>) {}
#else
  void backward(pt::matrix_view<const double>, pt::matrix_view<const double>) {}
#endif
  std::span<double> parameters() { return w; }
  std::span<double> gradients() { return g; }
  void zero_grad() {}
};

static_assert(pp::check_policy<my_policy>());
int main() {}
