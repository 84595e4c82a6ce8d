// Every REINFORCE / ReMax test (tests/advantage/reinforce.cpp) with the tiled lane scan of
// backend/cpu/advantage.hpp (POSTTRAIN_SCAN_TILED=1) instead of the default serial scan.
#define POSTTRAIN_SCAN_TILED 1
#include "advantage/reinforce.cpp"
