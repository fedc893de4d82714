#!/usr/bin/env bash
# One-step set-up for maevae: a virtual environment in .venv with the right PyTorch build.
#   bash install.sh           runtime install (then: .venv/bin/maevae run)
#   bash install.sh --test    runtime + test tools (pytest, ruff)
# PyTorch: an existing torch >= 2.1 (CPU or CUDA, e.g. a system or conda install visible to
# python3) is reused and never replaced. Otherwise a GPU machine (nvidia-smi present) gets
# PyPI's default CUDA build and a CPU machine gets the CPU build, so no multi-GB CUDA wheel
# is pulled onto a machine without a GPU. Override with MAEVAE_TORCH="pip requirement".
set -euo pipefail
cd "$(dirname "$0")"
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv --system-site-packages .venv
fi
pip() { .venv/bin/python -m pip "$@"; }
have_torch=$(.venv/bin/python -c 'import torch,sys; v=tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]); print(int(v>=(2,1)))' 2>/dev/null || echo 0)
if [ "$have_torch" != "1" ]; then
  if [ -n "${MAEVAE_TORCH:-}" ]; then
    pip install -q "$MAEVAE_TORCH"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    pip install -q torch
  else
    # A local CPU wheel (pip's find-links) when one is configured, else PyTorch's CPU index.
    pip install -q "torch==2.13.0+cpu" 2>/dev/null \
      || pip install -q torch --index-url https://download.pytorch.org/whl/cpu \
      || { echo "install.sh: could not install a CPU build of torch; install torch>=2.1 yourself and rerun" >&2; exit 1; }
  fi
fi
pip install -q -e ".${extras}"
echo "maevae installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
