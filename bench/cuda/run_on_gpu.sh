#!/usr/bin/env bash
# For a session that has the GPU: configure + build (Release, CUDA), run the gpu-labelled tests,
# compute-sanitizer memcheck and racecheck on every CUDA test binary, the CUDA benchmarks, and
# record the device. Logs go under $OUT (or ./gpu-results when OUT is unset).
#   bash bench/cuda/run_on_gpu.sh [build-dir]
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${1:-$ROOT/build-gpu}"
RESULTS="${OUT:-$PWD/gpu-results}"
mkdir -p "$RESULTS"
export PATH="/usr/local/cuda/bin:$PATH"
JOBS="$(nproc 2>/dev/null || echo 4)"
status=0
log() { echo "== $*" | tee -a "$RESULTS/summary.txt"; }

log "device"
nvidia-smi > "$RESULTS/nvidia-smi.txt" 2>&1 || log "nvidia-smi failed"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
  --format=csv >> "$RESULTS/nvidia-smi.txt" 2>&1 || true
nvcc --version > "$RESULTS/nvcc.txt" 2>&1 || true

log "configure + build ($BUILD)"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPOSTTRAIN_ENABLE_CUDA=ON \
  > "$RESULTS/configure.log" 2>&1 || { log "configure FAILED"; exit 1; }
# Only the CUDA tests and benchmarks (the CPU suite is checked elsewhere).
targets=$(cd "$ROOT/tests/cuda" && ls *.cu | sed 's/\.cu$//; s/^/test_cuda_/')
[ -n "$(ls "$ROOT"/bench/cuda/*.cu 2>/dev/null)" ] && targets="$targets posttrain_bench_cuda"
cmake --build "$BUILD" -j"$JOBS" --target $targets > "$RESULTS/build.log" 2>&1 \
  || { log "build FAILED (see build.log)"; exit 1; }

log "ctest -L gpu"
ctest --test-dir "$BUILD" -L gpu --output-on-failure > "$RESULTS/ctest-gpu.log" 2>&1 || status=1
tail -5 "$RESULTS/ctest-gpu.log" | tee -a "$RESULTS/summary.txt"

if command -v compute-sanitizer > /dev/null; then
  for t in $targets; do
    case "$t" in test_cuda_*) ;; *) continue ;; esac
    bin="$BUILD/tests/cuda/$t"
    [ -x "$bin" ] || continue
    for tool in memcheck racecheck; do
      log "compute-sanitizer --tool $tool $t"
      compute-sanitizer --tool "$tool" --error-exitcode 99 "$bin" \
        > "$RESULTS/sanitizer-$tool-$t.log" 2>&1 || { status=1; log "  $tool FAILED on $t"; }
      tail -3 "$RESULTS/sanitizer-$tool-$t.log" >> "$RESULTS/summary.txt"
    done
  done
else
  log "compute-sanitizer not found"
fi

if [ -x "$BUILD/bench/posttrain_bench_cuda" ]; then
  log "posttrain_bench_cuda"
  "$BUILD/bench/posttrain_bench_cuda" --benchmark_out="$RESULTS/bench_cuda.json" \
    --benchmark_out_format=json > "$RESULTS/bench_cuda.txt" 2>&1 || status=1
  cat "$RESULTS/bench_cuda.txt" >> "$RESULTS/summary.txt"
fi
log "done, status $status"
exit $status
