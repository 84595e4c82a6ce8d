#!/usr/bin/env bash
# For a session that has the GPU: configure + build (Release, CUDA), run the gpu-labelled tests,
# compute-sanitizer memcheck and racecheck on every CUDA test binary, the CUDA benchmarks, the
# PyTorch / Liger-Kernel peers (bench/peers/torch_gpu.py, ratio table against the benchmarks), and
# record the device. Logs go under $OUT (or ./gpu-results when OUT is unset); the results page is
# written to $RESULTS/<device>_<date>.md and bench/results/<device>_<date>.md (on a lent device
# machine only $OUT comes back: copy the page from there into bench/results/ and commit it).
#   bash bench/cuda/run_on_gpu.sh [build-dir]
# Liger-Kernel is not in the device image: `pip download --no-deps liger-kernel==0.8.5 -d .whl`
# here (.whl/ is git-ignored), carry .whl, and this script installs it into /tmp/site.
# SKIP_SANITIZER=1 skips compute-sanitizer; SKIP_PEERS=1 skips the Python peers.
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

if [ "${SKIP_SANITIZER:-0}" = 1 ]; then
  log "compute-sanitizer skipped (SKIP_SANITIZER=1)"
elif command -v compute-sanitizer > /dev/null; then
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
# --- advantage benchmarks (helper e1): GAE + returns, GRPO, whitening, segment statistics,
# repeated for a median; bench/cuda/advantage.cu.
if [ -x "$BUILD/bench/posttrain_bench_cuda" ]; then
  log "posttrain_bench_cuda advantage (gae|grpo|whiten|segment_stats), 5 repetitions"
  "$BUILD/bench/posttrain_bench_cuda" --benchmark_filter='^(gae|grpo|whiten|segment_stats)/' \
    --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_out="$RESULTS/bench_cuda_advantage.json" --benchmark_out_format=json \
    > "$RESULTS/bench_cuda_advantage.txt" 2>&1 || status=1
  cat "$RESULTS/bench_cuda_advantage.txt" >> "$RESULTS/summary.txt"
fi
# --- end advantage benchmarks
# --- peers and the results page (helper e2): PyTorch / Liger on the same shapes, ratio table.
if [ "${SKIP_PEERS:-0}" != 1 ] && command -v python3 > /dev/null; then
  if ls "$ROOT"/.whl/*.whl > /dev/null 2>&1; then
    log "installing carried wheels ($(ls "$ROOT"/.whl | tr '\n' ' '))"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$ROOT"/.whl/*.whl > "$RESULTS/pip.log" 2>&1 \
      && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  log "bench/peers/torch_gpu.py"
  python3 "$ROOT/bench/peers/torch_gpu.py" --markdown --ours "$RESULTS/bench_cuda.json" \
    --extra-ours "$RESULTS/bench_cuda_advantage.json" > "$RESULTS/peers_torch_gpu.md" \
    2> "$RESULTS/peers_torch_gpu.err" || { status=1; log "  torch_gpu.py FAILED"; }
  cat "$RESULTS/peers_torch_gpu.md" >> "$RESULTS/summary.txt"
fi
device="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 \
  | tr ' ' '_' | tr -cd 'A-Za-z0-9_-')"
page="${device:-unknown}_$(date -u +%Y-%m-%d).md"
{
  echo "# posttrain GPU results: ${device:-unknown device}, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Produced by bench/cuda/run_on_gpu.sh at commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
  echo '## Device'
  echo '```'
  cat "$RESULTS/nvidia-smi.txt" 2>/dev/null | tail -3
  grep -m1 release "$RESULTS/nvcc.txt" 2>/dev/null
  echo '```'
  echo
  echo '## Tests (ctest -L gpu)'
  echo '```'
  tail -5 "$RESULTS/ctest-gpu.log" 2>/dev/null
  echo '```'
  echo
  echo '## posttrain_bench_cuda'
  echo '```'
  cat "$RESULTS/bench_cuda.txt" 2>/dev/null
  [ -f "$RESULTS/bench_cuda_advantage.txt" ] && cat "$RESULTS/bench_cuda_advantage.txt"
  echo '```'
  echo
  echo '## Peers (bench/peers/torch_gpu.py; ratio = peer time / posttrain time)'
  echo
  cat "$RESULTS/peers_torch_gpu.md" 2>/dev/null || echo "(not run)"
  echo
  echo "Overall status: $status"
} > "$RESULTS/$page"
mkdir -p "$ROOT/bench/results" && cp "$RESULTS/$page" "$ROOT/bench/results/$page" 2>/dev/null || true
log "results page $RESULTS/$page"
# --- end peers and results page
log "done, status $status"
exit $status
