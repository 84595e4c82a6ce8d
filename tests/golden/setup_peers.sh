#!/usr/bin/env bash
# Create (or reuse) the Python venv holding the peer libraries used to regenerate the golden
# vectors, and install them. Idempotent: re-running only installs what is missing.
#   PEER_VENV   venv path (default: <repo>/.venv-peers)
#   PYTHON      interpreter to create it with (default: python3; must already have torch)
# Usage: bash tests/golden/setup_peers.sh && $PEER_VENV/bin/python tests/golden/generate.py
#        (and $PEER_VENV/bin/python tests/golden/generate_open_instruct.py)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
PEER_VENV="${PEER_VENV:-$repo/.venv-peers}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$PEER_VENV/bin/python" ]; then
  "$PYTHON" -m venv --system-site-packages "$PEER_VENV"
fi
pip=("$PEER_VENV/bin/python" -m pip)
"$PEER_VENV/bin/python" -c "import torch" || {
  echo "setup_peers.sh: torch is not importable from $PYTHON; install PyTorch (CPU) first" >&2; exit 1; }

# trl and the modules verl's core_algos imports (with their own dependencies).
"${pip[@]}" install -r "$here/requirements.txt"
# verl and openrlhf without dependencies (vLLM, flash-attn, deepspeed are GPU builds).
DS_BUILD_OPS=0 "${pip[@]}" install --no-deps verl==0.9.1 openrlhf==0.11.2 deepspeed==0.19.8

"$PEER_VENV/bin/python" - <<'PY'
import importlib.metadata as md
for p in ("torch", "trl", "transformers", "verl", "openrlhf", "deepspeed"):
    print(p, md.version(p))
import verl.trainer.ppo.core_algos  # noqa: F401  (fails loudly if an import-time dependency is missing)
PY

# open-instruct is not on the package registry: a clone at the pinned commit, read (not installed)
# by generate_open_instruct.py (OPEN_INSTRUCT_GIT overrides the location).
OI_COMMIT=e6c3044aa6201c8bfa4573c1b03142af599e730d
oi="${OPEN_INSTRUCT_GIT:-$PEER_VENV/open-instruct}"
[ -e "$oi" ] || git clone --filter=blob:none --no-checkout https://github.com/allenai/open-instruct "$oi"
git -C "$oi" cat-file -e "$OI_COMMIT^{commit}" || {
  echo "setup_peers.sh: $oi lacks open-instruct commit $OI_COMMIT (git -C $oi fetch)" >&2; exit 1; }
