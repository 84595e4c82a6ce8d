// Every GAE test (tests/advantage/gae.cpp) with the tiled lane scan of backend/cpu/advantage.hpp
// (POSTTRAIN_SCAN_TILED=1) instead of the default serial scan: both must give the same results.
#define POSTTRAIN_SCAN_TILED 1
#include "advantage/gae.cpp"
