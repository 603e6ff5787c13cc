"""python -m rag.serve [--host 127.0.0.1] [--port 8000] [--collection NAME | --index DIR] [--config rag.toml]

Serves the collection of the configured index as an OpenAI-compatible API (rag.serve.app). The bearer
token is read from RAG_API_KEY only (a flag would show it in `ps`); without it, any client that can
reach the port may ask and upload, so a host other than loopback without a token is refused unless
--insecure is given.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def main(argv: Sequence[str] | None = None) -> int:
    from rag.config import load_config
    from rag.errors import RagError

    ap = argparse.ArgumentParser(prog="python -m rag.serve", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--index", dest="index_dir")
    ap.add_argument("--collection", help="the collection to use (python -m rag.collections list); default: 'default'")
    ap.add_argument("--model", dest="llm_model", help="GGUF file (llamacpp) or the server's model name (openai)")
    ap.add_argument("--backend", dest="llm_backend", choices=("llamacpp", "openai"))
    ap.add_argument("--base-url", dest="llm_base_url", help="the OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    ap.add_argument("--config")
    ap.add_argument("--rate-limit", type=int, default=120, help="requests a minute per client (0: off)")
    ap.add_argument("--max-request-kb", type=int, default=1024, help="largest JSON body")
    ap.add_argument("--max-queue", type=int, default=32,
                    help="chat completions answering or waiting for the model at once; more get 503 + Retry-After")
    ap.add_argument("--cors-origin", action="append", default=[], help="allow browsers on this origin (repeatable)")
    ap.add_argument("--insecure", action="store_true", help="allow a non-loopback host without RAG_API_KEY")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_key = os.environ.get("RAG_API_KEY", "")
    if args.host not in LOOPBACK and not api_key and not args.insecure:
        print(f"error: serving on {args.host} without RAG_API_KEY lets anyone on the network ask and upload "
              "(fix: export RAG_API_KEY=..., or --host 127.0.0.1, or --insecure)", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from rag.pipeline import Pipeline
        from rag.serve.app import ServeSettings, create_app

        cfg = load_config(args.config, overrides={"index_dir": args.index_dir, "llm_model": args.llm_model,
                                                  "llm_backend": args.llm_backend,
                                                  "llm_base_url": args.llm_base_url})
        from rag.collections import config_for

        cfg = config_for(cfg, args.collection, index_given=args.index_dir is not None)
        pipe = Pipeline(cfg)
        gen = pipe.generator  # load now: a missing model or an unreachable server fails here, not per question
        print(f"generator: {gen.name if gen else 'none (extractive answers)'}", file=sys.stderr)
        settings = ServeSettings(api_key=api_key, max_request_bytes=args.max_request_kb * 1024,
                                 rate_limit=args.rate_limit, cors_origins=tuple(args.cors_origin),
                                 max_queue=args.max_queue)
        app = create_app(pipe, settings)
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ImportError as err:
        print(f"error: {err} (fix: pip install -e '.[serve]')", file=sys.stderr)
        return 1
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
