// expect: a generator needs `generate\(const pipeline::generation_request&, pipeline::generation&\)`
// A generator without the request/generation signature is rejected.
#include <posttrain/pipeline/generator.hpp>

namespace pp = posttrain::pipeline;

struct my_generator {
#ifdef POSTTRAIN_COMPILE_FAIL
  void generate(const pp::token_sequences&, pp::generation&) {}
#else
  void generate(const pp::generation_request&, pp::generation&) {}
#endif
};

static_assert(pp::check_generator<my_generator>());
int main() {}
