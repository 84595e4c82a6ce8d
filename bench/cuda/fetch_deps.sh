#!/usr/bin/env bash
# Downloads, here (where Debian's registry is reachable), the Debian packages the device image
# lacks: Eigen, GoogleTest (with its sources, the fallback when the packaged static library does
# not link there), Google Benchmark (+ its shared library) and nlohmann_json, into <repo>/.debs
# (git-ignored, ~2.2 MB). A device call carries .debs; bench/cuda/run_on_gpu.sh unpacks it there.
#   bash bench/cuda/fetch_deps.sh
# Names are Debian 12 (bookworm)'s; another release may name the benchmark library differently
# (apt-cache search libbenchmark).
set -eu
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$ROOT/.debs"
cd "$ROOT/.debs"
apt-get update -qq
apt-get download libeigen3-dev libgtest-dev googletest libbenchmark-dev libbenchmark1debian \
  nlohmann-json3-dev
ls -la
du -sh .
