"""Concurrent chat sessions through one Pipeline, with an ingest switching generations mid-way.

    python -m eval.concurrency [--sessions 8] [--seconds 30] [--index DIR] [--hash-embedder] [--json]
    python -m eval.concurrency --conversations [--sessions 8] [--messages 25] [--processes] [--json]
    python -m eval.concurrency --api [--clients 16] [--seconds 60] [--index DIR] [--extractive] [--out FILE]

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

`--api`: the same questions as streamed chat completions through rag.serve on a free 127.0.0.1 port,
`--clients` at once for `--seconds` (over data/docs indexed into a temporary folder, or a copy of
`--index DIR` and its documents), with the configured generator (`--extractive`: none). Half-way, one
/v1/ingest upload adds a document; a /v1/search after it must find it (the generation switched). An
error is any exception, non-200 or stream that ends without its final chunk; 0 errors and the switch
are the pass. Reports time to first token and total time p50/p95, answers a second, and writes the
JSON report (`--out`, default eval-out/concurrency-api.json). The server is stopped on the way out,
Ctrl-C included; answers still running after `--drain` seconds are errors.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


# --- --api: the same load through rag.serve, over HTTP ------------------------------------------------

ADDED_NAME = "added-during-load.md"
ADDED_TEXT = ("# Added while clients were streaming\n\nThe zebra-crossing benchmark was uploaded through "
              "/v1/ingest in the middle of the load.\n")
ADDED_QUERY = "zebra-crossing benchmark uploaded"


def _api_pipeline(work: Path, *, index: Path | None, extractive: bool, hash_embedder: bool) -> Any:
    """A Pipeline over a private copy of the collection: data/docs indexed here, or a copy of `index` and
    its documents folder (the upload must not change the user's collection)."""
    from rag.collection import documents_folder
    from rag.config import load_config
    from rag.errors import RagError
    from rag.index.store import current_generation, read_manifest
    from rag.pipeline import Pipeline

    docs = work / "docs"
    overrides: dict[str, Any] = {"index_dir": str(work / "index"), "docs_dir": str(docs)}
    embedder = None
    if hash_embedder:
        from rag.models.embed import HashEmbedder

        embedder = HashEmbedder()
        overrides.update(embed_model=embedder.name, rerank=False)
    if index is None:
        shutil.copytree(ROOT / "data" / "docs", docs)
    else:
        gen = current_generation(index)
        if gen is None:
            raise RagError(f"--index {index}: no index there (fix: python -m rag.ingest DOCS --index {index})")
        source = documents_folder(load_config().docs_dir, read_manifest(gen))
        if not source.is_dir():
            raise RagError(f"--index {index}: its documents folder {source} does not exist, and the upload "
                           "during the load needs it (fix: set RAG_DOCS_DIR to the folder it was ingested from)")
        shutil.copytree(index, work / "index", symlinks=True)
        shutil.copytree(source, docs, symlinks=True)
    pipe = Pipeline(load_config(overrides=overrides), embedder=embedder,
                    **({"generator": None} if extractive else {}))
    if index is None:
        pipe.ingest(docs)
    pipe.generator  # noqa: B018  # load the model (or find there is none) before the clock starts
    pipe.search("warm-up", k=1)  # and the embedder
    return pipe


def _stream_once(client: Any, model: str, question: str) -> dict[str, Any]:
    """One streamed chat completion: time to the first content, total time, and the error if any
    (an exception, a non-200, or a stream that ends without its final chunk)."""
    t0 = time.perf_counter()
    ttft: float | None = None
    final = None
    error = ""
    try:
        stream = client.chat.completions.create(model=model, stream=True,
                                                messages=[{"role": "user", "content": question}])
        try:
            for chunk in stream:
                choice = chunk.choices[0] if chunk.choices else None
                if choice is None:
                    continue
                if ttft is None and choice.delta.content:
                    ttft = time.perf_counter() - t0
                if choice.finish_reason == "stop" and "rag" in (chunk.model_extra or {}):
                    final = chunk.model_extra["rag"]
        finally:
            stream.close()
        if final is None:
            error = "the stream ended without its final chunk"
    except Exception as err:  # every failure is counted, none may happen
        error = f"{type(err).__name__}: {err}"
    return {"ttft": ttft, "total": time.perf_counter() - t0, "error": error,
            "mode": final.get("mode") if final else None}


def _post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _upload(url: str, name: str, text: str) -> tuple[int, dict[str, Any]]:
    """POST one file to /v1/ingest as multipart/form-data (what `curl -F files=@name` sends)."""
    import urllib.error
    import urllib.request

    boundary = f"----rag-{uuid.uuid4().hex}"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: text/markdown\r\n\r\n{text}\r\n--{boundary}--\r\n").encode()
    req = urllib.request.Request(f"{url}/v1/ingest", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def run_api(*, clients: int = 16, seconds: float = 60.0, index: Path | None = None, extractive: bool = False,
            hash_embedder: bool = False, drain_s: float = 900.0, progress: bool = True) -> dict[str, Any]:
    """`clients` concurrent streamed chat completions for `seconds` against rag.serve on 127.0.0.1, with one
    /v1/ingest upload half-way; then every answer still running may finish, for at most `drain_s`.

    The server runs in this process (uvicorn on its own thread, real sockets on a free loopback port),
    so a test can give it a hashing embedder; the model decodes in llama.cpp's threads, outside the GIL
    the clients share. It is stopped when this returns, raises, or is interrupted (Ctrl-C).
    """
    import openai

    from rag.serve.app import ServeSettings, collection_name, create_app, serve_in_thread

    work = Path(tempfile.mkdtemp(prefix="rag-api-load-"))
    try:
        pipe = _api_pipeline(work, index=index, extractive=extractive, hash_embedder=hash_embedder)
        generation_before = pipe.index.path.name
        questions = load_questions(ROOT / "data" / "eval" / "questions.jsonl")
        model = collection_name(pipe)
        settings = ServeSettings(rate_limit=0)  # every client is 127.0.0.1: the per-client limit would be the test
        results: list[dict[str, Any]] = []
        lock = threading.Lock()
        with serve_in_thread(create_app(pipe, settings)) as url:
            # read timeout 120 s between bytes: the server's keep-alives (every 10 s) must keep queued answers open
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120.0)
            t_start = time.perf_counter()
            stop = time.monotonic() + seconds

            def load(i: int) -> None:
                n = i
                while time.monotonic() < stop:
                    res = _stream_once(client, model, questions[n % len(questions)])
                    n += clients
                    with lock:
                        results.append(res)

            threads = [threading.Thread(target=load, args=(i,), daemon=True, name=f"client-{i}")
                       for i in range(clients)]
            for t in threads:
                t.start()
            time.sleep(seconds / 2)
            t_ingest = time.perf_counter()
            ingest_status, ingest_body = _upload(url, ADDED_NAME, ADDED_TEXT)
            ingest_s = time.perf_counter() - t_ingest
            search_status, found = _post_json(f"{url}/v1/search", {"query": ADDED_QUERY, "k": 1})
            if progress:
                print(f"ingest during the load: HTTP {ingest_status} in {ingest_s:.1f} s; search after it: "
                      f"{[h.get('file') for h in found.get('data', [])]}", flush=True)
            deadline = time.monotonic() + seconds / 2 + drain_s
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))
            wall = time.perf_counter() - t_start
            unfinished = sum(t.is_alive() for t in threads)
        with lock:
            done = list(results)
        errors = [r["error"] for r in done if r["error"]]
        errors += [f"HTTP {ingest_status} from /v1/ingest: {ingest_body}"] if ingest_status != 200 else []
        errors += [f"HTTP {search_status} from /v1/search: {found}"] if search_status != 200 else []
        errors += [f"{unfinished} answers still running after the {drain_s:.0f} s drain"] if unfinished else []
        ttfts = [r["ttft"] for r in done if r["ttft"] is not None]
        totals = [r["total"] for r in done if not r["error"]]
        generation_after = str(ingest_body.get("generation", ""))
        new_found = [h.get("file") for h in found.get("data", [])] == [ADDED_NAME]
        modes: dict[str, int] = {}
        for r in done:
            if r["mode"]:
                modes[r["mode"]] = modes.get(r["mode"], 0) + 1
        gen = pipe.generator
        return {
            "mode": "api", "clients": clients, "seconds": seconds, "wall_s": round(wall, 2),
            "requests": len(done), "errors": len(errors), "error_samples": errors[:5],
            "requests_per_s": round(len(done) / wall, 3) if wall else 0.0,
            "ttft_p50_ms": round(percentile(ttfts, 0.5) * 1000, 1),
            "ttft_p95_ms": round(percentile(ttfts, 0.95) * 1000, 1),
            "total_p50_ms": round(percentile(totals, 0.5) * 1000, 1),
            "total_p95_ms": round(percentile(totals, 0.95) * 1000, 1),
            "total_max_ms": round(max(totals, default=0) * 1000, 1),
            "answer_modes": modes, "ingest_status": ingest_status, "ingest_s": round(ingest_s, 2),
            "generation_before": generation_before, "generation_after": generation_after,
            "new_document_found": new_found,
            "generation_switched": ingest_status == 200 and generation_after != generation_before and new_found,
            "generator": gen.name if gen is not None else "none (extractive)", "embedder": pipe.embedder.name,
            "rate_limit": settings.rate_limit, "max_queue": settings.max_queue,
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
    ap.add_argument("--seconds", type=float, help="default 30, with --api 60")
    ap.add_argument("--hash-embedder", action="store_true", help="no model: a deterministic hashing embedder")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--conversations", action="store_true", help="sessions write saved conversations instead")
    ap.add_argument("--messages", type=int, default=25, help="--conversations: questions per session")
    ap.add_argument("--processes", action="store_true", help="--conversations: one process per session")
    ap.add_argument("--api", action="store_true", help="streamed chat completions through rag.serve instead")
    ap.add_argument("--clients", type=int, default=16, help="--api: concurrent streams")
    ap.add_argument("--index", type=Path, help="--api: a copy of this index (and its documents) instead of data/docs")
    ap.add_argument("--extractive", action="store_true", help="--api: no language model, extractive answers")
    ap.add_argument("--drain", type=float, default=900.0, help="--api: seconds the last answers may take after")
    ap.add_argument("--out", type=Path, default=ROOT / "eval-out" / "concurrency-api.json",
                    help="--api: the JSON report")
    args = ap.parse_args(argv)
    if args.api:
        return _main_api(args)
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
    out = run(sessions=args.sessions, seconds=args.seconds or 30.0, hash_embedder=args.hash_embedder)
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


def _main_api(args: argparse.Namespace) -> int:
    from rag.errors import RagError

    try:
        res = run_api(clients=args.clients, seconds=args.seconds or 60.0, index=args.index,
                      extractive=args.extractive, hash_embedder=args.hash_embedder, drain_s=args.drain)
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['clients']} streaming clients × {res['seconds']:.0f} s through rag.serve ({res['generator']}, "
              f"{res['embedder']}): {res['requests']} answers in {res['wall_s']} s ({res['requests_per_s']}/s), "
              f"{res['errors']} errors")
        print(f"time to first token ms: p50 {res['ttft_p50_ms']}  p95 {res['ttft_p95_ms']};  total ms: p50 "
              f"{res['total_p50_ms']}  p95 {res['total_p95_ms']}  max {res['total_max_ms']}")
        print(f"/v1/ingest during the load: HTTP {res['ingest_status']} in {res['ingest_s']} s, generation "
              f"{res['generation_before']} → {res['generation_after']}; the new document found by a search "
              f"after it: {res['new_document_found']}")
        for e in res["error_samples"]:
            print(f"  error: {e}")
        print(f"report: {args.out}")
    return 0 if res["errors"] == 0 and res["generation_switched"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
