#!/usr/bin/env bash
# Set up, index the sample collection (incremental: instant when nothing changed), open the chat UI.
#   scripts/run.sh [FOLDER]      # chat with your own folder instead of data/docs
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
FOLDER=${1:-data/docs}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAG_DOCS_DIR="$FOLDER"
.venv/bin/python -m rag.ingest "$FOLDER"
.venv/bin/python -m rag.search "How much memory does a 7B model need in Q4_K_M?" -k 2
exec .venv/bin/python -m streamlit run app/chat.py --server.address "${RAG_HOST:-localhost}" \
    --server.port "${RAG_PORT:-8501}" --server.headless true --browser.gatherUsageStats false
