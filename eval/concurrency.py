"""Concurrent chat sessions through one Pipeline, with an ingest switching generations mid-way.

    python -m eval.concurrency [--sessions 8] [--seconds 30] [--index DIR] [--hash-embedder] [--json]
    python -m eval.concurrency --conversations [--sessions 8] [--messages 25] [--processes] [--json]

Each session is a thread that asks the shipped eval questions (data/eval/questions.jsonl) in a loop
through the same Pipeline object, as the Streamlit app's sessions do. Half-way through, a new
document is added and ingested under the lock: queries keep answering from the previous
generation until the switch, then from the new one. Prints a latency table and the error count.

`--conversations`: the chat page's saved conversations under load. Each of the browser-less
sessions (threads, or with --processes separate processes, as several app servers would be)
asks `--messages` questions through the extractive pipeline (hashing embedder: no model loads),
saves every turn to one shared rag.conversations store — half into its own conversation, half
into one conversation all sessions share — and reads its conversation back after each write.
Then every message is counted: 0 errors and 0 lost or duplicated messages is the pass.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_questions(path: Path) -> list[str]:
    """The question texts of a file in the shipped format (eval.datasets.load_questions_jsonl)."""
    from eval.datasets import load_questions_jsonl

    return [q.question for q in load_questions_jsonl(path).questions]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile.

    >>> percentile([1, 2, 3, 4], 0.5)
    2
    """
    if not values:
        return 0.0
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(q * len(s) + 0.5)) - 1))]


def run(*, sessions: int = 8, seconds: float = 30.0, hash_embedder: bool = False, progress: bool = True) -> dict:
    from rag.config import load_config
    from rag.pipeline import Pipeline

    work = Path(tempfile.mkdtemp(prefix="rag-conc-"))
    try:
        docs = work / "docs"
        shutil.copytree(ROOT / "data" / "docs", docs)
        overrides = {"index_dir": str(work / "index"), "rerank": False}
        embedder = None
        if hash_embedder:
            from rag.models.embed import HashEmbedder

            embedder = HashEmbedder()
            overrides["embed_model"] = embedder.name
        cfg = load_config(overrides=overrides)
        pipe = Pipeline(cfg, embedder=embedder, generator=None, reranker=None)
        pipe.ingest(docs)
        questions = load_questions(ROOT / "data" / "eval" / "questions.jsonl")
        latencies: list[list[float]] = [[] for _ in range(sessions)]
        errors: list[str] = []
        generations: set[str] = set()
        stop = time.monotonic() + seconds
        lock = threading.Lock()

        def session(i: int) -> None:
            n = i
            while time.monotonic() < stop:
                q = questions[n % len(questions)]
                n += sessions
                t0 = time.perf_counter()
                try:
                    ans = pipe.ask(q)
                    assert ans.mode in ("extractive", "refused")
                    with lock:
                        generations.add(pipe.index.path.name)
                except Exception as err:  # every failure is counted, none may happen
                    with lock:
                        errors.append(f"{type(err).__name__}: {err}")
                latencies[i].append(time.perf_counter() - t0)

        threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
        for t in threads:
            t.start()
        time.sleep(seconds / 2)
        (docs / "added-during-queries.md").write_text(
            "# Added while sessions were chatting\n\nThe zebra-crossing benchmark was added mid-run.\n",
            encoding="utf-8")
        t_ingest = time.perf_counter()
        report = pipe.ingest(docs)
        ingest_s = time.perf_counter() - t_ingest
        for t in threads:
            t.join()
        found = [h.chunk.source for h in pipe.search("zebra-crossing benchmark", k=1)]
        flat = [x for per in latencies for x in per]
        return {
            "sessions": sessions, "seconds": seconds, "requests": len(flat), "errors": len(errors),
            "error_samples": errors[:5], "p50_ms": round(percentile(flat, 0.5) * 1000, 1),
            "p95_ms": round(percentile(flat, 0.95) * 1000, 1), "max_ms": round(max(flat, default=0) * 1000, 1),
            "mean_ms": round(statistics.fmean(flat) * 1000, 1) if flat else 0.0,
            "per_session_requests": [len(x) for x in latencies], "generations_seen": sorted(generations),
            "ingest_during_queries_s": round(ingest_s, 2), "new_document_found": found == ["added-during-queries.md"],
            "ingest_new": report.new, "embedder": pipe.embedder.name,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _conversation_session(i: int, store_path: str, index_dir: str, shared: str, questions: list[str],
                          messages: int) -> dict:
    """One session: its own Pipeline and store object over the shared index and store file."""
    from rag.config import load_config
    from rag.conversations import ConversationStore
    from rag.models.embed import HashEmbedder
    from rag.pipeline import Pipeline

    embedder = HashEmbedder()
    cfg = load_config(env={}, overrides={"index_dir": index_dir, "rerank": False, "embed_model": embedder.name})
    pipe = Pipeline(cfg, embedder=embedder, generator=None, reranker=None)
    store = ConversationStore(store_path)
    errors: list[str] = []
    latencies: list[float] = []
    own = store.create("default", f"session {i}")
    written = {own: 0, shared: 0}
    for n in range(messages):
        q = f"{questions[(i + n) % len(questions)]} (session {i}, message {n})"
        target = own if n % 2 == 0 else shared
        try:
            answer = pipe.ask(q)
            t0 = time.perf_counter()
            store.add_turn(target, q, answer)
            latencies.append(time.perf_counter() - t0)
            written[target] += 1
            if target == own and len(store.turns(own)) != written[own]:
                errors.append(f"session {i}: read back {len(store.turns(own))} turns, wrote {written[own]}")
        except Exception as err:  # every failure is counted, none may happen
            errors.append(f"{type(err).__name__}: {err}")
    return {"own": own, "written_own": written[own], "written_shared": written[shared], "errors": errors,
            "write_ms": latencies}


def run_conversations(*, sessions: int = 8, messages: int = 25, processes: bool = False) -> dict:
    """`sessions` concurrent writers of `messages` turns each; counts what the store holds after."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from rag.config import load_config
    from rag.conversations import ConversationStore
    from rag.models.embed import HashEmbedder
    from rag.pipeline import Pipeline

    work = Path(tempfile.mkdtemp(prefix="rag-chats-"))
    try:
        embedder = HashEmbedder()
        cfg = load_config(env={}, overrides={"index_dir": str(work / "index"), "rerank": False,
                                             "embed_model": embedder.name})
        Pipeline(cfg, embedder=embedder, generator=None, reranker=None).ingest(ROOT / "data" / "docs")
        store_path = str(work / "conversations.sqlite")
        store = ConversationStore(store_path)
        shared = store.create("default", "shared by every session")
        questions = load_questions(ROOT / "data" / "eval" / "questions.jsonl")
        pool = ProcessPoolExecutor if processes else ThreadPoolExecutor
        t0 = time.perf_counter()
        with pool(max_workers=sessions) as ex:
            futures = [ex.submit(_conversation_session, i, store_path, str(cfg.index_dir), shared, questions,
                                 messages) for i in range(sessions)]
            results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
        errors = [e for r in results for e in r["errors"]]
        lost = 0
        for r in results:
            lost += abs(len(store.turns(r["own"])) - r["written_own"])
        shared_written = sum(r["written_shared"] for r in results)
        lost += abs(len(store.turns(shared)) - shared_written)
        expected = 2 * sum(r["written_own"] + r["written_shared"] for r in results)
        held = store.count_messages()
        writes = [x for r in results for x in r["write_ms"]]
        return {"mode": "conversations", "workers": "processes" if processes else "threads", "sessions": sessions,
                "messages_per_session": messages, "turns_written": expected // 2, "messages_expected": expected,
                "messages_stored": held, "lost_messages": lost + abs(expected - held), "errors": len(errors),
                "error_samples": errors[:5], "wall_s": round(wall, 2),
                "write_p50_ms": round(percentile(writes, 0.5) * 1000, 1),
                "write_p95_ms": round(percentile(writes, 0.95) * 1000, 1),
                "write_max_ms": round(max(writes, default=0) * 1000, 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.concurrency", description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--hash-embedder", action="store_true", help="no model: a deterministic hashing embedder")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--conversations", action="store_true", help="sessions write saved conversations instead")
    ap.add_argument("--messages", type=int, default=25, help="--conversations: questions per session")
    ap.add_argument("--processes", action="store_true", help="--conversations: one process per session")
    args = ap.parse_args(argv)
    if args.conversations:
        res = run_conversations(sessions=args.sessions, messages=args.messages, processes=args.processes)
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            print(f"{res['sessions']} sessions ({res['workers']}) × {res['messages_per_session']} questions: "
                  f"{res['turns_written']} turns, {res['messages_stored']}/{res['messages_expected']} messages "
                  f"stored, {res['lost_messages']} lost, {res['errors']} errors in {res['wall_s']} s")
            print(f"write ms: p50 {res['write_p50_ms']}  p95 {res['write_p95_ms']}  max {res['write_max_ms']}")
            for e in res["error_samples"]:
                print(f"  error: {e}")
        return 0 if res["errors"] == 0 and res["lost_messages"] == 0 else 1
    out = run(sessions=args.sessions, seconds=args.seconds, hash_embedder=args.hash_embedder)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['sessions']} sessions × {out['seconds']:.0f} s ({out['embedder']}): {out['requests']} answers, "
              f"{out['errors']} errors")
        print(f"latency ms: p50 {out['p50_ms']}  p95 {out['p95_ms']}  max {out['max_ms']}  mean {out['mean_ms']}")
        print(f"per session: {out['per_session_requests']}")
        print(f"ingest during queries: {out['ingest_during_queries_s']} s; generations seen by queries: "
              f"{', '.join(out['generations_seen'])}; new document searchable after: {out['new_document_found']}")
        for e in out["error_samples"]:
            print(f"  error: {e}")
    return 0 if out["errors"] == 0 and out["new_document_found"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
