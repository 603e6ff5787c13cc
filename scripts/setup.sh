#!/usr/bin/env bash
# Create .venv and install the project with every extra. Safe to run again: it only adds what is missing.
#   PYTHON=python3.11 scripts/setup.sh     # pick the interpreter
#   CMAKE_ARGS="-DGGML_CUDA=on" scripts/setup.sh   # build llama-cpp-python with CUDA (Metal is on by default on macOS)
#   RAG_CONSTRAINTS= scripts/setup.sh               # newest releases instead of the measured ones (constraints.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
CONSTRAINTS=${RAG_CONSTRAINTS-constraints.txt}
# torch first, pinned: an unpinned torch pulls several GB of CUDA wheels on Linux; 2.13.0 is the CPU build here.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
# llama-cpp-python builds from source where no wheel exists (minutes, once; pip caches the wheel).
if ! "$PY" -c "import llama_cpp, rag, streamlit, pytest_socket, gguf, rapidocr, pymilvus, milvus_lite, ray" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ] || { [ -n "$CONSTRAINTS" ] && [ "$CONSTRAINTS" -nt .venv/.installed ]; }; then
    # the measured versions (constraints.txt): a fresh install otherwise takes whatever PyPI holds that day
    "$PY" -m pip install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e ".[ui,llm,eval,serve,office,tables,dev,ocr,milvus,ray]"
    touch .venv/.installed
fi
echo "setup: ok ($("$PY" --version), $("$PY" -c 'import torch; print("torch", torch.__version__)'))"
