// expect: this link has options of its own; pass options_type
// A composition whose link has options of its own (SimPO's γ) given a preset that carries only the
// shared options: a compile error, never the link's defaults taken silently (the CISPO lesson of
// the policy-gradient half). The control passes the composition's options_type, shared fields and
// `.link`.
#include <posttrain/loss/preference.hpp>

namespace pt = posttrain;

using simpo = pt::loss::preference<pt::pref::simpo, pt::seq::mean, pt::pref::reference_free>;

int main() {
  const pt::loss::preference_inputs<double> in{};
#ifdef POSTTRAIN_COMPILE_FAIL
  const pt::loss::preference_options preset{.beta = 2.0};
#else
  const simpo::options_type preset{{.beta = 2.0}, {.gamma = 1.0}};
#endif
  (void)simpo::compute(in, preset);
  (void)simpo::compute(pt::exec::host{}, in, preset, {}, {});
}
