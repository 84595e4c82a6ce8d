#!/usr/bin/env bash
# One GRPO step, ours vs TRL's GRPOTrainer, alternating in the same minute (docs/performance.md).
#   bench/reference_trainer/side_by_side.sh [BUILD_DIR] [REPS] [CASES]
# BUILD_DIR holds bench/posttrain_bench_grpo_step (default build-native); the peer runs from
# $TRL_VENV (default .venv-trl in the repository root; bench/peers/requirements-trl.txt). CASES: "config:beta_x1000" items, default
# "0:0 0:40 1:0" (quick at β 0 and 0.04, the d256 config at β 0). Prints the load average before
# every run; both sides run on 1 thread.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-native}
reps=${2:-3}
cases=${3:-"0:0 0:40 1:0"}
ours=$build/bench/posttrain_bench_grpo_step
venv=${TRL_VENV:-.venv-trl}
[ -x "$venv/bin/python" ] || { echo "side_by_side.sh: no $venv/bin/python (set TRL_VENV)" >&2; exit 1; }
peer=(env OMP_NUM_THREADS=1 "$venv/bin/python" bench/peers/trl_grpo_step.py)
for rep in $(seq 1 "$reps"); do
  for c in $cases; do
    config=${c%%:*} beta_x1000=${c##*:}
    name=$([ "$config" = 0 ] && echo quick || echo large)
    beta=$(python3 -c "print($beta_x1000 / 1000)")
    echo "== rep $rep $name beta $beta ours  $(uptime)"
    OMP_NUM_THREADS=1 "$ours" --benchmark_filter="config:$config/beta_x1000:$beta_x1000/" \
      --benchmark_counters_tabular=true 2>/dev/null | grep '^BM_'
    echo "== rep $rep $name beta $beta trl   $(uptime)"
    steps=$([ "$config" = 0 ] && echo 3 || echo 2)
    "${peer[@]}" --config "$name" --beta "$beta" --steps "$steps" 2>/dev/null | grep -E '^(step|TRL_|torch|config|load)'
  done
done
