#pragma once
// One generated problem of any task kind (task.hpp mixes them; tasks/*.hpp generate them).
#include <string>

namespace reference_trainer {

struct problem {
  std::string question;   // the user turn
  std::string solution;   // the reference assistant turn (SFT data); scores 1 with `verifier`
  std::string answer;     // the RLVR ground_truth (the verifier's label)
  std::string verifier = "gsm8k";  // the RLVR row's "dataset"
  std::string wrong;      // a response that scores below 1 (tests: generator and verifier agree)
};

}  // namespace reference_trainer
