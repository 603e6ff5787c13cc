"""The RAG API server: this app's collections as an OpenAI-compatible API (`python -m rag.serve`).

The app itself is `rag.serve.app.create_app`; `rag.serve.__main__` only parses flags and runs uvicorn.
"""
