#!/usr/bin/env bash
# posttrain developer entry point.
#   ./run.sh deps                 install the missing Debian packages the build needs
#   ./run.sh build                configure (CMake preset) and build everything
#   ./run.sh test                 deps + build + every test (GPU tests skip without a GPU)
#   ./run.sh sanitize             deps + ASan/UBSan build (preset sanitize) + its CPU tests
#   ./run.sh clang                deps + clang++ build of the tests (every header alone too), the
#                                 fuzz corpora replayed, each libFuzzer target run for 20 s
#   ./run.sh ci                   test, then sanitize, then clang (what .ci/run runs), timed
#   ./run.sh demo                 deps + build + the reference trainer's quick recipe (pretrain ->
#                                 SFT -> GRPO on arithmetic word problems, held-out accuracy after
#                                 each stage); output in <build dir>/reference_trainer_demo/,
#                                 PNG plots of its metrics in .../plots/ (installs gnuplot-nox)
#   ./run.sh bench [native] [ARGS...]
#                                 deps + build + run posttrain_bench_cpu with Google Benchmark ARGS
#                                 ("native" builds the -march=native preset)
# CUDA: when /usr/local/cuda/bin/nvcc exists the "default" preset builds the CUDA components too;
# otherwise the "cpu-only" preset is used. POSTTRAIN_PRESET=<name> overrides the choice.
set -euo pipefail
cd "$(dirname "$0")"

readonly DEB_PACKAGES=(cmake g++ libeigen3-dev googletest libgtest-dev libbenchmark-dev
                       nlohmann-json3-dev libopenmpi-dev openmpi-bin python3)
# clang (with its libFuzzer runtime) for `./run.sh clang`.
readonly CLANG_PACKAGES=(clang)
# gnuplot (no X11) for the demo's PNG plots (`posttrain_reference_trainer plot`).
readonly DEMO_PACKAGES=(gnuplot-nox)

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

deps() {
  local wanted=("${DEB_PACKAGES[@]}" "$@")
  if ! command -v dpkg >/dev/null 2>&1; then
    log "deps: no dpkg (not Debian/Ubuntu); install by hand: ${wanted[*]}"
    return 0
  fi
  local missing=() pkg
  for pkg in "${wanted[@]}"; do
    dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "deps: installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# Chooses the preset (default with CUDA, cpu-only without) and its build directory.
select_preset() {
  local requested=${1:-}
  if [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH="/usr/local/cuda/bin:$PATH"
    PRESET=${requested:-${POSTTRAIN_PRESET:-default}}
  else
    PRESET=${requested:-${POSTTRAIN_PRESET:-cpu-only}}
    # Without nvcc the native preset must not look for CUDA either.
    [[ $PRESET == native ]] && EXTRA_CONFIGURE=(-DPOSTTRAIN_ENABLE_CUDA=OFF)
  fi
  if [[ $PRESET == default ]]; then BUILD_DIR=build; else BUILD_DIR=build-$PRESET; fi
}

configure() {
  cmake --preset "$PRESET" "${EXTRA_CONFIGURE[@]}" --log-level=WARNING >/dev/null
}

build() {
  configure
  cmake --build --preset "$PRESET" -j 2 "$@"
}

demo() {
  build --target posttrain_reference_trainer
  local out="$BUILD_DIR/reference_trainer_demo"
  "$BUILD_DIR/examples/reference_trainer/posttrain_reference_trainer" \
    --recipe examples/reference_trainer/recipes/quick.json --out "$out" "$@"
  log "demo: metrics in $out/metrics.jsonl, checkpoints in $out/checkpoints/"
  if command -v gnuplot >/dev/null 2>&1; then
    "$BUILD_DIR/examples/reference_trainer/posttrain_reference_trainer" plot "$out"
  else
    log "demo: no gnuplot, so no plots (apt-get install gnuplot-nox, then: $BUILD_DIR/examples/reference_trainer/posttrain_reference_trainer plot $out)"
  fi
}

bench() {
  if ! compgen -G 'bench/cpu/*.cpp' >/dev/null; then
    die "no benchmark to run: bench/cpu/ has no *.cpp suite yet"
  fi
  build --target posttrain_bench_cpu
  "$BUILD_DIR/bench/posttrain_bench_cpu" "$@"
}

# The sanitizer build: core, math and reward tests and the fuzz corpus replay under ASan + UBSan
# (-fno-sanitize-recover=all: the first report fails the test).
sanitize() {
  PRESET=sanitize
  BUILD_DIR=build-sanitize
  build
  ctest --preset sanitize
}

# The clang build: every CPU test, every header alone, the corpus replay, and a 20 s run of each
# libFuzzer target from its committed corpus.
clang_build() {
  PRESET=clang
  BUILD_DIR=build-clang
  build
  ctest --preset clang
  # The fuzz runs in parallel: each still runs 20 s (-max_total_time is wall time), the stage
  # waits ~50 s instead of ~100 s.
  ctest --test-dir build-clang -L fuzz --output-on-failure -j 2
}

# Each stage timed, so the CI budget (45 min on 2 cores) can be checked in the log.
ci() {
  local start stage
  for stage in test sanitize clang; do
    start=$SECONDS
    case $stage in
      test) select_preset; build; ctest --preset "$PRESET" ;;
      sanitize) sanitize ;;
      clang) clang_build ;;
    esac
    log "ci: stage $stage took $((SECONDS - start)) s"
  done
}

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

EXTRA_CONFIGURE=()
command=${1:-}
[[ $# -gt 0 ]] && shift
case $command in
  deps) deps ;;
  build) deps; select_preset; build ;;
  test) deps; select_preset; build; ctest --preset "$PRESET" ;;
  sanitize) deps; sanitize ;;
  clang) deps "${CLANG_PACKAGES[@]}"; clang_build ;;
  ci) deps "${CLANG_PACKAGES[@]}"; ci ;;
  demo) deps "${DEMO_PACKAGES[@]}"; select_preset; demo "$@" ;;
  bench)
    deps
    if [[ ${1:-} == native ]]; then shift; select_preset native; else select_preset; fi
    bench "$@"
    ;;
  -h | --help | help) usage 0 ;;
  *) log "unknown command '${command}'"; usage 2 ;;
esac
