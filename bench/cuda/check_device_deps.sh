#!/usr/bin/env bash
# Proves, here, the dependency handling of bench/cuda/run_on_gpu.sh for the bare device image.
# In a private mount namespace the files of this machine's Eigen, GoogleTest, GoogleMock, Google
# Benchmark and nlohmann_json packages are whited out (an overlay over /usr whose upper layer
# holds a whiteout for every file `dpkg -L` lists), so only the packages unpacked from .debs can
# be found. Then:
#   1. without .debs, run_on_gpu.sh build must fail at configure, naming Eigen3 (so the proof can
#      fail: nothing of the system's packages leaks through);
#   2. with .debs, it must configure (Eigen3 / GTest / benchmark found in the unpacked prefix, as
#      CMakeCache.txt says), build $PT_TARGETS (default: a CPU test, the CUDA smoke test when
#      nvcc exists) and the built test must run (GoogleTest from the package, linked here).
# Needs root (unshare -m, mount -t overlay) and bench/cuda/fetch_deps.sh run first.
#   bash bench/cuda/check_device_deps.sh
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
[ "$(id -u)" = 0 ] || { echo "needs root (mount namespace + overlay)"; exit 2; }
ls "$ROOT"/.debs/*.deb > /dev/null 2>&1 || { echo "no .debs: run bench/cuda/fetch_deps.sh"; exit 2; }
WORK="$(mktemp -d /tmp/posttrain-depcheck.XXXXXX)"
mkdir -p "$WORK/upper" "$WORK/work"
n=0
for pkg in libeigen3-dev libgtest-dev libgmock-dev googletest libbenchmark-dev libbenchmark1debian \
  nlohmann-json3-dev; do
  dpkg -L "$pkg" > /dev/null 2>&1 || continue
  while read -r f; do
    case "$f" in /usr/*) ;; *) continue ;; esac
    [ -d "$f" ] && [ ! -L "$f" ] && continue
    rel="${f#/usr/}"
    mkdir -p "$WORK/upper/$(dirname "$rel")"
    mknod "$WORK/upper/$rel" c 0 0 2> /dev/null && n=$((n + 1))
  done < <(dpkg -L "$pkg")
done
echo "whiting out $n files of the system's packages"
targets="${PT_TARGETS:-test_math_stable$(command -v nvcc > /dev/null || [ -x /usr/local/cuda/bin/nvcc ] && echo " test_cuda_device_smoke")}"

unshare -m --propagation private env ROOT="$ROOT" WORK="$WORK" TARGETS="$targets" bash -c '
set -u
mount -t overlay overlay -o lowerdir=/usr,upperdir=$WORK/upper,workdir=$WORK/work /usr || exit 3
for f in /usr/include/eigen3/Eigen/Core /usr/include/gtest/gtest.h /usr/include/benchmark/benchmark.h \
         /usr/lib/x86_64-linux-gnu/libgtest.a /usr/lib/x86_64-linux-gnu/cmake/GTest/GTestConfig.cmake \
         /usr/share/eigen3/cmake/Eigen3Config.cmake /usr/lib/x86_64-linux-gnu/libbenchmark.so; do
  if [ -e "$f" ]; then echo "FAIL: $f still visible"; exit 4; fi
done
echo "system Eigen / GTest / benchmark hidden"
ok=0
echo "== 1. without .debs: configure must fail"
rm -rf "$WORK/b1"
OUT="$WORK/out1" PT_DEBS="$WORK/none" PT_BUILD="$WORK/b1" bash "$ROOT/bench/cuda/run_on_gpu.sh" build > "$WORK/run1.log" 2>&1
rc1=$?
cat "$WORK/out1/build-summary.md"
if [ "$rc1" != 0 ] && grep -q "FAILED.*configure" "$WORK/out1/build-summary.md" && grep -q Eigen3 "$WORK/out1/build-summary.md"; then
  echo "-> configure failed without the packages, naming Eigen3: as expected"
else
  echo "-> FAIL: configure did not fail without the packages (rc $rc1)"; ok=1
fi
echo "== 2. with .debs: configure, build $TARGETS, run"
OUT="$WORK/out2" PT_DEBS="$ROOT/.debs" PT_DEPS_PREFIX="$WORK/prefix" PT_BUILD="$WORK/b2" PT_JOBS=2 \
  PT_TARGETS="$TARGETS" PT_BUDGET_S=3000 bash "$ROOT/bench/cuda/run_on_gpu.sh" build > "$WORK/run2.log" 2>&1
rc2=$?
cat "$WORK/out2/build-summary.md"
grep -E "^(Eigen3|GTest|benchmark|nlohmann_json)_DIR:" "$WORK/b2/CMakeCache.txt"
if [ "$rc2" != 0 ]; then echo "-> FAIL: build phase rc $rc2"; ok=1; fi
for pkg in Eigen3 GTest benchmark; do
  grep -E "^${pkg}_DIR:[A-Z]+=$WORK/prefix/" "$WORK/b2/CMakeCache.txt" > /dev/null \
    || { echo "-> FAIL: ${pkg}_DIR is not in the unpacked prefix"; ok=1; }
done
for t in $TARGETS; do
  bin="$(find "$WORK/b2/tests" -name "$t" -type f | head -1)"
  if [ -z "$bin" ]; then echo "-> FAIL: $t not built"; ok=1; continue; fi
  "$bin" --gtest_brief=1 > "$WORK/$t.log" 2>&1 && echo "-> $t runs: $(grep -cE "^\[ +(OK|SKIPPED) +\]|PASSED" "$WORK/$t.log") ok/skipped lines, $(tail -1 "$WORK/$t.log")" \
    || { echo "-> FAIL: $t exits non-zero"; tail -5 "$WORK/$t.log"; ok=1; }
done
exit $ok
'
rc=$?
echo "logs in $WORK; result: $([ $rc = 0 ] && echo PROVEN || echo FAILED rc $rc)"
exit $rc
