"""Ask a question from the command line; the answer streams, then its cited sources.

    python -m rag.ask "question" [--collection NAME | --index DIR] [--file NAME ...] [--model PATH.gguf] [--json]
                      [--history FILE.json]

Without a GGUF model the answer is extractive (sentences selected from the documents), labelled
as such. `--history` takes a JSON list of {"role", "content"} messages for follow-up questions;
`--file` (repeatable) limits retrieval to those documents. An empty or punctuation-only question
exits 2 with "Please ask a question", before anything loads.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rag.records import Answer, Retraction, pages_text


def format_sources(answer: Answer) -> str:
    lines = []
    if answer.refused:
        if answer.sources:
            lines.append("Nearest passages (not enough to answer):")
            for h in answer.sources[:3]:
                lines.append(f"  - {h.label}: {' '.join(h.chunk.text.split())[:160]}…")
        return "\n".join(lines)
    lines.append("Sources:")
    ocr_pages = {h.chunk.id: h.chunk.ocr_pages for h in answer.sources}
    for c in answer.citations:
        label = c.source + (f" {pages_text(c.pages, c.page_labels)}" if c.paginated and c.pages else "")
        if c.paginated and ocr_pages.get(c.chunk_id):
            label += ", OCR"  # the text was read from the page image: a misread is possible
        lines.append(f"  [{c.n}] {label}\n      “{' '.join(c.quote.split())}”")
    flagged = [s for s in answer.sentences if not s.supported]
    if flagged:
        lines.append("Flagged sentences (not supported by what they cite):")
        lines += [f"  ! {s.text}  ({s.reason})" for s in flagged]
    if answer.invalid_markers:
        lines.append(f"({answer.invalid_markers} citation marker(s) pointing to no source were removed)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from rag.collections import config_for
    from rag.config import load_config
    from rag.errors import RagError
    from rag.pipeline import Pipeline, answer_to_json
    from rag.question import check_question

    ap = argparse.ArgumentParser(prog="python -m rag.ask", description=__doc__.split("\n")[0])
    ap.add_argument("question")
    ap.add_argument("--index", dest="index_dir")
    ap.add_argument("--collection", help="the collection to use (python -m rag.collections list); default: 'default'")
    ap.add_argument("--file", action="append", dest="files", help="only search this document (repeatable)")
    ap.add_argument("--model", dest="llm_model", help="GGUF file, or HF 'owner/repo/file.gguf' in the local cache")
    ap.add_argument("--extractive", action="store_true", help="do not use a GGUF model even if one is found")
    ap.add_argument("--n-gpu-layers", type=int, help="layers to offload: 0 = CPU, -1 = all (Metal/CUDA builds)")
    ap.add_argument("--history", type=Path, help="JSON list of previous {role, content} messages")
    ap.add_argument("--no-rerank", action="store_true")
    ap.add_argument("--config")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    args = ap.parse_args(argv)
    try:
        check_question(args.question)
        cfg = load_config(args.config, overrides={"index_dir": args.index_dir, "llm_model": args.llm_model,
                                                  "n_gpu_layers": args.n_gpu_layers,
                                                  "rerank": False if args.no_rerank else None})
        cfg = config_for(cfg, args.collection, index_given=args.index_dir is not None)
        history = json.loads(args.history.read_text(encoding="utf-8")) if args.history else []
        pipe = Pipeline(cfg, **({"generator": None} if args.extractive else {}))
        if args.json:
            result = pipe.ask(args.question, history=history, files=args.files)
            print(json.dumps(answer_to_json(result), indent=2, ensure_ascii=False))
            return 0
        answer: Answer | None = None
        for event in pipe.stream(args.question, history=history, files=args.files):
            if isinstance(event, Answer):
                answer = event
            elif isinstance(event, Retraction):
                print(f"\n[discarded: not an answer ({event.reason}); trying again]", flush=True)
            else:
                print(event, end="", flush=True)
        print()
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    assert answer is not None
    if answer.query != answer.question:
        print(f"(searched for: {answer.query})")
    if answer.fallback:
        why = ("nothing the model wrote was supported by the documents" if answer.fallback == "unsupported"
               else f"the model's answer was unusable ({answer.fallback})")
        print(f"[extractive answer: {why}; sentences quoted from the documents instead]")
    elif answer.mode == "extractive":
        print("[extractive answer: sentences quoted from the documents; add a GGUF model for written answers]")
    print(format_sources(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
