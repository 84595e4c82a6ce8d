#!/usr/bin/env bash
# Create (or reuse) the Python venv holding the peer libraries used to regenerate the golden
# vectors, and install them. Idempotent: re-running only installs what is missing.
#   PEER_VENV   venv path (default: <repo>/.venv-peers)
#   PYTHON      interpreter to create it with (default: python3; must already have torch)
# Usage: bash tests/golden/setup_peers.sh && $PEER_VENV/bin/python tests/golden/generate.py
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
