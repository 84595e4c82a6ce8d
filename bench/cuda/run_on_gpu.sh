#!/usr/bin/env bash
# The GPU run, in phases that each fit one device call (10 minutes at most; docs/cuda.md lists
# the exact calls). Made for the device image, which has nvcc, CMake, ninja, PyTorch and
# compute-sanitizer but no Eigen, GoogleTest, Google Benchmark or package registry: those come as
# the Debian packages of .debs/ (bench/cuda/fetch_deps.sh downloads them here; the device call
# carries the folder), unpacked with dpkg-deb -x (or ar + tar) into a private prefix that CMake
# sees through CMAKE_PREFIX_PATH and the <Package>_DIR variables.
#
#   bash bench/cuda/run_on_gpu.sh test      deps, configure, build every tests/cuda target and
#                                           posttrain_bench_cuda, ctest -L gpu
#   bash bench/cuda/run_on_gpu.sh sanitize  deps, configure, build the CUDA tests (if not built),
#                                           compute-sanitizer memcheck + racecheck on each test
#                                           binary (the Big* tests excluded: minutes under
#                                           memcheck); a refused sanitizer is reported, not fatal
#   bash bench/cuda/run_on_gpu.sh bench     deps, configure, build posttrain_bench_cuda (if not
#                                           built), the benchmarks, the PyTorch / Liger peers
#                                           (bench/peers/torch_gpu.py), the results page
#   bash bench/cuda/run_on_gpu.sh build     deps, configure, build $PT_TARGETS only (no GPU
#                                           needed: bench/cuda/check_device_deps.sh runs it here
#                                           with the system packages hidden)
#
# Each phase writes exactly two files into $RESULTS (= $OUT on the device, else ./gpu-results):
# <phase>-summary.md and <phase>.tar.gz (every log of the phase), also when a step fails or the
# phase runs out of its time budget (PT_BUDGET_S, default 540 s: steps still to run when less than
# a step's reserve is left are skipped and said so). A phase that finds the build of an earlier
# phase (warm machine, same build directory) reuses it; on a fresh machine it builds what it
# needs. The exit status is 0 only when every step of the phase passed.
#
# Environment: PT_DEBS (default <repo>/.debs), PT_DEPS_PREFIX (default /tmp/posttrain-deps),
# PT_BUILD (default <repo>/build-gpu), PT_TARGETS (phase build), PT_JOBS (default nproc),
# PT_BUDGET_S, PT_CUDA_ARCH (default 90), SKIP_PEERS=1. Liger-Kernel for the peers: carry .whl/
# (docs/cuda.md); the wheels are installed into /tmp/site.
set -u
PHASE="${1:-}"
case "$PHASE" in test | sanitize | bench | build) ;; *)
  echo "usage: $0 test|sanitize|bench|build" >&2
  exit 2
  ;;
esac
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${PT_BUILD:-$ROOT/build-gpu}"
RESULTS="${OUT:-$PWD/gpu-results}"
DEBS="${PT_DEBS:-$ROOT/.debs}"
PREFIX="${PT_DEPS_PREFIX:-/tmp/posttrain-deps}"
JOBS="${PT_JOBS:-$(nproc 2>/dev/null || echo 4)}"
BUDGET="${PT_BUDGET_S:-540}"
export PATH="/usr/local/cuda/bin:$PATH"
mkdir -p "$RESULTS"
STAGE="$(mktemp -d "/tmp/posttrain-$PHASE.XXXXXX")"
SUMMARY="$STAGE/$PHASE-summary.md"
status=0
SECONDS=0

say() { echo "$*" | tee -a "$SUMMARY"; }
fail() {
  status=1
  say "**FAILED**: $*"
}
left() { echo $((BUDGET - SECONDS)); }
# have_time <seconds>: true when at least that much of the budget is left; else says so.
have_time() {
  if [ "$(left)" -ge "$1" ]; then return 0; fi
  say "- skipped (budget): $2 needs ~$1 s, $(left) s left"
  status=1
  return 1
}
finish() {
  say ""
  say "phase $PHASE: status $status, $SECONDS s"
  cp "$SUMMARY" "$RESULTS/$PHASE-summary.md"
  tar -C "$STAGE" -czf "$RESULTS/$PHASE.tar.gz" . 2> /dev/null || true
}
trap finish EXIT

say "# posttrain $PHASE phase, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)"
say ""

# ---------------------------------------------------------------- the machine
{
  echo "== nvidia-smi"
  nvidia-smi 2>&1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  echo "== nvcc"
  nvcc --version 2>&1
  echo "== os"
  cat /etc/os-release 2>&1
  echo "== compilers, cmake, ninja, glibc"
  g++ --version 2>&1 | head -1
  cmake --version 2>&1 | head -1
  ninja --version 2>&1
  ldd --version 2>&1 | head -1
  echo "== compute-sanitizer"
  compute-sanitizer --version 2>&1 | tail -2
} > "$STAGE/machine.txt" 2>&1
DEVICE="$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1)"
say "- device: ${DEVICE:-none found}; $(grep -m1 release "$STAGE/machine.txt" | sed 's/^.*release/nvcc release/'); $(grep -m1 PRETTY_NAME /etc/os-release 2> /dev/null | cut -d= -f2); $(g++ --version 2> /dev/null | head -1)"

# ---------------------------------------------------------------- dependencies
# Unpacks every .deb of $DEBS into $PREFIX (once per machine), then proves that GoogleTest and
# Google Benchmark link and run with this machine's compiler and C library. A GoogleTest that does
# not link (a libstdc++ older than the packages' GCC 12) is rebuilt from the sources the googletest
# package ships; a Google Benchmark that does not is reported (benchmarks off, tests still run).
BENCH_OK=1
deps() {
  if [ ! -d "$DEBS" ] || ! ls "$DEBS"/*.deb > /dev/null 2>&1; then
    say "- dependencies: no .deb in $DEBS (run bench/cuda/fetch_deps.sh here and carry .debs); using whatever the system has"
    PREFIX=""
    return 0
  fi
  if [ ! -f "$PREFIX/.unpacked" ]; then
    mkdir -p "$PREFIX"
    for deb in "$DEBS"/*.deb; do
      if command -v dpkg-deb > /dev/null; then
        dpkg-deb -x "$deb" "$PREFIX" || { fail "dpkg-deb -x $deb"; return 1; }
      else
        # A .deb is an ar archive holding data.tar.{xz,zst,gz}.
        (cd "$STAGE" && ar x "$deb" && tar -xf data.tar.* -C "$PREFIX" && rm -f data.tar.* control.tar.* debian-binary) \
          || { fail "ar/tar unpack of $deb"; return 1; }
      fi
    done
    touch "$PREFIX/.unpacked"
  fi
  say "- dependencies: $(cd "$DEBS" && ls *.deb | tr '\n' ' ')unpacked in $PREFIX"
  LIBDIR="$(dirname "$(find "$PREFIX" -name libgtest.a | head -1)")"
  export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local probe="$STAGE/probe"
  mkdir -p "$probe"
  cat > "$probe/g.cpp" << 'EOF'
#include <gtest/gtest.h>
TEST(Probe, Runs) { EXPECT_EQ(1 + 1, 2); }
EOF
  cat > "$probe/b.cpp" << 'EOF'
#include <benchmark/benchmark.h>
static void probe(benchmark::State& s) { for (auto _ : s) benchmark::DoNotOptimize(s.iterations()); }
BENCHMARK(probe);
EOF
  if ! { g++ -std=c++20 -I"$PREFIX/usr/include" "$probe/g.cpp" "$LIBDIR/libgtest_main.a" \
    "$LIBDIR/libgtest.a" -pthread -o "$probe/g" && "$probe/g" > /dev/null; } > "$STAGE/deps-gtest.log" 2>&1; then
    say "- GoogleTest from the package does not link here (deps-gtest.log): building it from $PREFIX/usr/src/googletest"
    { cmake -S "$PREFIX/usr/src/googletest" -B "$STAGE/gtest-build" -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX="$PREFIX/usr" -DCMAKE_INSTALL_LIBDIR="${LIBDIR#"$PREFIX"/usr/}" \
      && cmake --build "$STAGE/gtest-build" -j"$JOBS" && cmake --install "$STAGE/gtest-build"; } \
      >> "$STAGE/deps-gtest.log" 2>&1 || { fail "GoogleTest from source (deps-gtest.log)"; return 1; }
  fi
  if ! { g++ -std=c++20 -I"$PREFIX/usr/include" "$probe/b.cpp" "$LIBDIR/libbenchmark_main.a" \
    -L"$LIBDIR" -lbenchmark -pthread -o "$probe/b" && "$probe/b" --benchmark_min_time=0.001 > /dev/null; } \
    > "$STAGE/deps-benchmark.log" 2>&1; then
    BENCH_OK=0
    say "- **Google Benchmark from the package does not link or run here** (deps-benchmark.log): benchmarks off"
  fi
  say "- GoogleTest and Google Benchmark probes: $([ "$BENCH_OK" = 1 ] && echo both link and run || echo GoogleTest only)"
  rm -f "$probe/g" "$probe/b"  # keep the tarball small
}

# ---------------------------------------------------------------- configure and build
configure() {
  local gen=()
  command -v ninja > /dev/null && [ ! -f "$BUILD/Makefile" ] && gen=(-G Ninja)
  local dirs=()
  if [ -n "$PREFIX" ]; then
    # Named directly as well as through the prefix: CMake finds <prefix>/lib/<arch>/cmake only
    # when the compiler reports a multiarch triple.
    local d
    for pkg in Eigen3 GTest benchmark nlohmann_json; do
      d="$(find "$PREFIX" -name "${pkg}Config.cmake" -printf '%h\n' 2> /dev/null | head -1)"
      [ -n "$d" ] && dirs+=("-D${pkg}_DIR=$d")
    done
    dirs+=("-DCMAKE_PREFIX_PATH=$PREFIX/usr")
  fi
  say "- configure: $BUILD"
  cmake -S "$ROOT" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DPOSTTRAIN_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${PT_CUDA_ARCH:-90}" \
    -DPOSTTRAIN_BUILD_EXAMPLES=OFF -DPOSTTRAIN_ENABLE_NCCL=OFF -DPOSTTRAIN_ENABLE_MPI=OFF \
    -DPOSTTRAIN_BUILD_BENCHMARKS="$([ "$BENCH_OK" = 1 ] && echo ON || echo OFF)" \
    "${dirs[@]}" ${PT_CMAKE_ARGS:-} > "$STAGE/configure.log" 2>&1 \
    || { fail "configure (configure.log):"; tail -15 "$STAGE/configure.log" | sed 's/^/    /' | tee -a "$SUMMARY"; return 1; }
  grep -E "posttrain [0-9.]+: components" "$STAGE/configure.log" | sed 's/^-- /- /' | tee -a "$SUMMARY"
}

cuda_tests() { (cd "$ROOT/tests/cuda" && ls *.cu | sed 's/\.cu$//; s/^/test_cuda_/'); }

# A hash of the sources a build depends on. A warm machine keeps the build directory while each
# call copies the working tree anew (possibly with fresh timestamps, which would make the build
# tool redo everything): a target is skipped only when it was built from these same sources.
src_hash() {
  (cd "$ROOT" && find CMakeLists.txt cmake include tests bench -type f \( -name '*.txt' \
    -o -name '*.cmake' -o -name '*.in' -o -name '*.hpp' -o -name '*.cuh' -o -name '*.cu' \
    -o -name '*.cpp' -o -name '*.h' \) -print0 2> /dev/null | sort -z | xargs -0 sha1sum | sha1sum | cut -c1-40)
}

# build <target>...: builds what is missing or stale (keep going past a failing target); each
# target that did not come out is named.
build() {
  local want=("$@") missing=() t hash
  hash="$(src_hash)"
  for t in "${want[@]}"; do
    [ -x "$(target_path "$t")" ] && [ "$(cat "$BUILD/.built-$t" 2> /dev/null)" = "$hash" ] \
      || missing+=("$t")
  done
  if [ ${#missing[@]} = 0 ]; then
    say "- build: ${#want[@]} targets already built from these sources (warm machine)"
  else
    # A stale binary goes first, so that one left by a failing build is never taken as built.
    for t in "${missing[@]}"; do rm -f "$(target_path "$t")"; done
    local t0=$SECONDS keep=()
    [ -f "$BUILD/build.ninja" ] && keep=(-- -k 0)
    [ -f "$BUILD/Makefile" ] && keep=(-- -k)
    cmake --build "$BUILD" -j"$JOBS" --target "${missing[@]}" "${keep[@]}" > "$STAGE/build.log" 2>&1
    say "- build: ${missing[*]} in $((SECONDS - t0)) s"
  fi
  local bad=0
  for t in "${want[@]}"; do
    if [ ! -x "$(target_path "$t")" ]; then
      fail "target $t did not build (build.log)"
      rm -f "$BUILD/.built-$t"
      bad=1
    else
      echo "$hash" > "$BUILD/.built-$t"
    fi
  done
  [ "$bad" = 1 ] && grep -m8 -E "error|Error" "$STAGE/build.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  return $bad
}
target_path() {
  case "$1" in
    test_cuda_*) echo "$BUILD/tests/cuda/$1" ;;
    posttrain_bench_*) echo "$BUILD/bench/$1" ;;
    test_*) find "$BUILD/tests" -maxdepth 2 -name "$1" -type f 2> /dev/null | head -1 ;;
    *) echo "$BUILD/$1" ;;
  esac
}

# ---------------------------------------------------------------- phases
phase_build() {
  deps && configure || return
  # shellcheck disable=SC2086
  build ${PT_TARGETS:-test_cuda_device_smoke}
}

phase_test() {
  deps && configure || return
  have_time 150 "the build" || return
  local targets
  targets="$(cuda_tests | tr '\n' ' ')"
  [ "$BENCH_OK" = 1 ] && targets="$targets posttrain_bench_cuda"
  # shellcheck disable=SC2086
  build $targets
  have_time 30 "ctest -L gpu" || return
  local t0=$SECONDS
  # headers.self_containment_cuda carries the gpu label too, but is a compile check (its target,
  # every .cuh through nvcc, is not built here; CI-like machines build it).
  ctest --test-dir "$BUILD" -L gpu -E '^headers\.' --output-on-failure --timeout 240 \
    --stop-time "$(date -d "+$(($(left) - 15)) seconds" +%H:%M:%S)" \
    > "$STAGE/ctest-gpu.log" 2>&1 || status=1
  say "- ctest -L gpu ($((SECONDS - t0)) s):"
  grep -E "tests passed|tests failed|Total Test time" "$STAGE/ctest-gpu.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  grep -E "\(Failed\)|\(Timeout\)|\(SEGFAULT\)|\(Subprocess aborted\)|Not Run" "$STAGE/ctest-gpu.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  # On a GPU nothing should skip: a skip names a device the tests could not use.
  grep -c '\*\*\*Skipped' "$STAGE/ctest-gpu.log" | sed 's/^/    tests skipped: /' | tee -a "$SUMMARY"
  # The first failures' own messages, so the summary alone says what broke.
  grep -B2 -A8 -m6 "Failure$" "$STAGE/ctest-gpu.log" | head -80 | sed 's/^/    /' >> "$SUMMARY"
}

phase_sanitize() {
  deps && configure || return
  have_time 150 "the build" || return
  # shellcheck disable=SC2046
  build $(cuda_tests) || true
  if ! command -v compute-sanitizer > /dev/null; then
    say "- compute-sanitizer: not found; nothing to run"
    return
  fi
  # A machine may refuse the sanitizer ("Device not supported", error 999 on gVisor): probe once on
  # the smallest test and stop here, reported, when it does not run.
  local probe="$BUILD/tests/cuda/test_cuda_device_smoke"
  if [ -x "$probe" ]; then
    timeout 120 compute-sanitizer --tool memcheck --error-exitcode 99 "$probe" > "$STAGE/sanitizer-probe.log" 2>&1
    local rc=$?
    # Refused: the sanitizer says so, or the probe's tests could not see the GPU under it (they
    # skip, exit 0, and every later run would look clean).
    if grep -qiE "Device not supported|not supported on|error 999|unknown error" "$STAGE/sanitizer-probe.log" \
      || grep -q "SKIPPED" "$STAGE/sanitizer-probe.log"; then
      say "- compute-sanitizer refused on this machine (rc $rc, sanitizer-probe.log):"
      tail -4 "$STAGE/sanitizer-probe.log" | sed 's/^/    /' | tee -a "$SUMMARY"
      return
    fi
  fi
  # Big* tests (hundreds of MB of logits) take minutes under memcheck: excluded here, run by the
  # test phase.
  local t tool bin rc
  for t in $(cuda_tests); do
    bin="$BUILD/tests/cuda/$t"
    [ -x "$bin" ] || continue
    for tool in memcheck racecheck; do
      have_time 45 "$tool $t" || continue
      local lim=$(($(left) - 20))
      [ "$lim" -gt 180 ] && lim=180
      timeout "$lim" compute-sanitizer --tool "$tool" --error-exitcode 99 "$bin" \
        --gtest_filter='-*Big*' > "$STAGE/$tool-$t.log" 2>&1
      rc=$?
      local errs skipped
      errs="$(grep -m1 "ERROR SUMMARY" "$STAGE/$tool-$t.log" | sed 's/^=* *//')"
      skipped="$(grep -c "^\[  SKIPPED \] .*ms)" "$STAGE/$tool-$t.log")"
      if [ "$rc" = 0 ]; then
        say "- $tool $t: ok (${errs:-no summary line}; $skipped tests skipped)"
      elif [ "$rc" = 124 ]; then
        fail "$tool $t: timed out after $lim s"
      else
        fail "$tool $t: rc $rc (${errs:-see $tool-$t.log})"
        grep -m6 -E "^========= (Invalid|Race|Error|Uninitialized|Program hit)|FAILED" "$STAGE/$tool-$t.log" | sed 's/^/    /' >> "$SUMMARY"
      fi
    done
  done
}

phase_bench() {
  deps && configure || return
  [ "$BENCH_OK" = 1 ] || { fail "no usable Google Benchmark (see above)"; return; }
  have_time 120 "the build" || return
  build posttrain_bench_cuda || return
  local b="$BUILD/bench/posttrain_bench_cuda"
  if have_time 150 "posttrain_bench_cuda"; then
    timeout $(($(left) - 100)) "$b" --benchmark_out="$STAGE/bench_cuda.json" \
      --benchmark_out_format=json > "$STAGE/bench_cuda.txt" 2>&1 || fail "posttrain_bench_cuda (bench_cuda.txt)"
  fi
  if have_time 110 "advantage benchmarks, 5 repetitions"; then
    timeout $(($(left) - 90)) "$b" --benchmark_filter='^(gae|grpo|whiten|segment_stats)/' \
      --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
      --benchmark_out="$STAGE/bench_cuda_advantage.json" --benchmark_out_format=json \
      > "$STAGE/bench_cuda_advantage.txt" 2>&1 || fail "advantage benchmarks (bench_cuda_advantage.txt)"
  fi
  if [ "${SKIP_PEERS:-0}" != 1 ] && have_time 60 "PyTorch / Liger peers"; then
    if ls "$ROOT"/.whl/*.whl > /dev/null 2>&1; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$ROOT"/.whl/*.whl > "$STAGE/pip.log" 2>&1 \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    local extra=()
    [ -f "$STAGE/bench_cuda_advantage.json" ] && extra=(--extra-ours "$STAGE/bench_cuda_advantage.json")
    PYTHONUNBUFFERED=1 timeout $(($(left) - 10)) python3 "$ROOT/bench/peers/torch_gpu.py" --markdown \
      --ours "$STAGE/bench_cuda.json" "${extra[@]}" > "$STAGE/peers_torch_gpu.md" \
      2> "$STAGE/peers_torch_gpu.err" || fail "torch_gpu.py (peers_torch_gpu.err)"
  fi
  # The results page (bench/results/<device>_<date>.md once committed) is this summary.
  {
    echo
    echo "## posttrain_bench_cuda"
    echo '```'
    cat "$STAGE/bench_cuda.txt" 2> /dev/null
    cat "$STAGE/bench_cuda_advantage.txt" 2> /dev/null
    echo '```'
    echo
    echo "## Peers (bench/peers/torch_gpu.py; ratio = peer time / posttrain time)"
    echo
    cat "$STAGE/peers_torch_gpu.md" 2> /dev/null || echo "(not run)"
  } >> "$SUMMARY"
}

"phase_$PHASE"
exit $status
