"""The RAG API: one Pipeline behind OpenAI-compatible endpoints, so any OpenAI client can ask a collection.

    app = create_app(Pipeline(load_config()), ServeSettings(api_key=os.environ.get("RAG_API_KEY", "")))

- `GET  /v1/models`: one model per collection (today one index is one collection, named after its folder);
- `POST /v1/chat/completions`: the last user message is the question, the messages before it the
  history. The answer text carries the `[n]` markers; the citations (file, pages, quote, support),
  the sentence checks, the mode and the `refused` flag ride in an extra `rag` field that OpenAI
  clients ignore. A refusal is a normal answer with `rag.refused = true`.
  Streamed (`stream: true`): server-sent `data: {chunk}` lines and `data: [DONE]`. When the pipeline
  retracts what it streamed (the junk guard, or the final text differs from the streamed one), a chunk
  with `rag.retract = true` says: drop every content received so far, this chunk's included (its
  content is a visible separator for clients that do not read `rag`). The concatenated content
  after the last retraction is the final Answer text; the last chunk carries the `rag` field.
- `POST /v1/search` {query, k, mode}: the fused hits, without reranking or an answer;
- `POST /v1/ingest` (multipart `files`): `rag.collection.add_documents`, the UI's checks and lock;
- `GET  /healthz`: unauthenticated, and says only whether the index opens.

Chat completions queue for the one generator (its lock): at most `max_queue` are admitted at once
(answering or waiting), the rest get 503 `server_busy` with Retry-After. A streamed answer that waits
sends an SSE comment every `keepalive_s`, so client read timeouts do not fire while it queues, and a
client that leaves mid-answer has its answer closed at once (`EventStream`), freeing the model.

`Guard`, a plain ASGI middleware, runs before any route: a per-client token bucket (429 with
Retry-After), the optional bearer token (401), and the body size (413: JSON bodies up to
`max_request_bytes`, uploads up to `max_file_mb` plus multipart overhead; the body is read up to the
limit and never further, with or without Content-Length). Malformed JSON and invalid fields are 422.
Every error body is OpenAI's `{"error": {"message", "type", "code"}}`. No CORS headers unless origins
are given.

The request's `temperature`, `max_tokens` and `n` are ignored: the prompt contract and the checks are
tuned to the configured settings, and one answer is produced per request.

Deliberately skipped: several collections per process, usage token counts (reported as 0), tool
calls, and rate limits per API key rather than per client address (behind a proxy all clients share one).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rag.errors import IndexLockedError, IndexStateError, MissingDependencyError, RagError
from rag.question import EmptyQuestionError
from rag.records import Answer, Retraction

try:
    import anyio
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field
except ImportError as err:  # rag.serve only: `import rag` never needs FastAPI
    raise MissingDependencyError(err.name or "fastapi", "serve") from err

if TYPE_CHECKING:
    from rag.pipeline import Pipeline

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRACT_SEPARATOR = "\n\n---\n\n"
MULTIPART_SLACK = 1 << 20  # headers and boundaries around the uploaded files


@dataclass(frozen=True)
class ServeSettings:
    api_key: str = ""  # '' = no token asked; else every /v1 request needs 'Authorization: Bearer <key>'
    max_request_bytes: int = 1 << 20  # JSON bodies: a long chat history is tens of KB
    max_upload_bytes: int = 0  # /v1/ingest bodies; 0: max_file_mb of the config plus multipart overhead
    rate_limit: int = 120  # requests per minute per client address, in bursts up to that many; 0 = off
    cors_origins: tuple[str, ...] = ()  # none by default: browsers on other origins are refused
    # Chat completions in the server at once, answering or queued for the generator (one model in this
    # process answers one at a time); past that 503 with Retry-After. Below anyio's 40 worker threads,
    # which the queued ones block, so /healthz, /v1/search and /v1/ingest still get a thread.
    max_queue: int = 32
    # A streamed answer still waiting for its next event (queued behind others, a long prompt being
    # read) sends an SSE comment this often: clients ignore it, and their read timeouts do not fire.
    keepalive_s: float = 10.0


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape, which its clients turn into the exception's message."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# --- rate limit --------------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per client: `per_minute` requests in a burst, refilled at per_minute / 60 a second.

    >>> clock = iter([0.0, 0.0, 0.0, 30.0]).__next__
    >>> rl = RateLimiter(2, clock=clock)
    >>> rl.wait("a"), rl.wait("a"), rl.wait("a") > 0, rl.wait("a")
    (0.0, 0.0, True, 0.0)
    """

    MAX_CLIENTS = 10_000  # buckets kept; past that the full ones are forgotten

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, when)
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """0.0 when the request may go now (and it is counted), else the seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                if len(self._buckets) > self.MAX_CLIENTS:
                    self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.capacity - 1}
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


# --- the queue for the generator --------------------------------------------------------------------


class Admission:
    """At most `limit` chat completions at once; the rest are turned away with a Retry-After.

    The one model of the process answers one question at a time (LlamaCppGenerator's lock), so the
    admitted requests queue there in order of arrival. The Retry-After is the recent gap between two
    answers ending: about when the next place frees up.

    >>> adm = Admission(1, clock=iter([4.0, 6.0]).__next__)
    >>> slot = adm.try_enter()
    >>> adm.try_enter() is None, adm.retry_after()
    (True, 1.0)
    >>> slot.leave(); slot.leave(); adm.try_enter().leave(); adm.active, adm.retry_after()
    (0, 2.0)
    """

    RECENT = 16  # answers whose end times give the gap

    def __init__(self, limit: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self.active = 0
        self._ends: deque[float] = deque(maxlen=self.RECENT)
        self._lock = threading.Lock()

    def try_enter(self) -> Slot | None:
        """A place in the queue, or None when it is full."""
        with self._lock:
            if self.active >= self.limit:
                return None
            self.active += 1
            return Slot(self)

    def retry_after(self) -> float:
        """Seconds after which a place is likely free: the recent gap between answers, at least 1."""
        with self._lock:
            if len(self._ends) < 2:
                return 1.0
            return max(1.0, (self._ends[-1] - self._ends[0]) / (len(self._ends) - 1))

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1
            self._ends.append(self.clock())


class Slot:
    """One admitted request's place; `leave` frees it, once however often it is called (a stream
    frees it when its last event is ready, and again, harmlessly, when the response closes)."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def leave(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission._leave()


# --- the guard in front of every route --------------------------------------------------------------


class Guard:
    """Rate limit, bearer token and body size, checked in that order before a /v1 route runs."""

    def __init__(self, app: ASGIApp, *, settings: ServeSettings, upload_limit: int) -> None:
        self.app = app
        self.settings = settings
        self.upload_limit = upload_limit
        self.limiter = RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.limiter is not None:
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self.limiter.wait(str(client))
            if wait > 0:
                await _reply(send, 429, error_body(f"rate limit: more than {self.settings.rate_limit} requests a "
                                                   f"minute from {client}; retry in {wait:.1f} s",
                                                   "rate_limit_error", "rate_limited"),
                             {"retry-after": str(max(1, round(wait + 0.5)))})
                return
        if self.settings.api_key:
            given = headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                     self.settings.api_key.encode()):
                await _reply(send, 401, error_body("missing or wrong API key (fix: send 'Authorization: Bearer "
                                                   "<key>' with the key the server was started with in "
                                                   "RAG_API_KEY)", "authentication_error", "invalid_api_key"),
                             {"www-authenticate": "Bearer"})
                return
        limit = self.upload_limit if scope["path"].rstrip("/") == "/v1/ingest" else self.settings.max_request_bytes
        if _declared_length(headers) > limit:
            await _reply_413(send, limit)
            return
        body: list[bytes] = []
        size, more = 0, True
        while more:  # read the body up to the limit, then hand the app a replay of it
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _reply_413(send, limit)
                return
            body.append(chunk)
            more = bool(message.get("more_body", False))
        await self.app(scope, _replay(b"".join(body), receive), send)


def _declared_length(headers: dict[str, str]) -> int:
    try:
        return int(headers.get("content-length", "0") or 0)
    except ValueError:
        return 0


async def _reply_413(send: Send, limit: int) -> None:
    await _reply(send, 413, error_body(f"request body over the limit of {limit} bytes (fix: send less: fewer "
                                       "or smaller files, a shorter history; or start the server with a higher "
                                       "limit)", "invalid_request_error", "request_too_large"))


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the connection's own messages (a streamed response waits on them
    to see the client leave)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode("utf-8")
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    head += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})


# --- the views of an answer -------------------------------------------------------------------------


def rag_view(answer: Answer) -> dict[str, Any]:
    """The `rag` field: answer_to_json, with each citation's `file` and `support` (the best score of
    the sentences that cite it) and the `refused` flag."""
    from rag.pipeline import answer_to_json

    view = answer_to_json(answer)
    for c in view["citations"]:
        scores = [s.support for s in answer.sentences if c["n"] in s.cited]
        c["file"] = c["source"]
        c["support"] = round(max(scores), 4) if scores else None
    view["refused"] = answer.refused
    return view


def message_text(content: Any) -> str:
    """A chat message's text: a string, or the text parts of a list of content parts.

    >>> message_text([{"type": "text", "text": "What is"}, {"type": "image_url"}, {"type": "text", "text": "GGUF?"}])
    'What is\\nGGUF?'
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


# --- request bodies ----------------------------------------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens, user…: accepted, not used
    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(default=10, ge=1, le=100)
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
    model: str = ""


class Refusal(Exception):
    """A request this server turns down, with its HTTP status and OpenAI error code."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers = headers or {}


# --- the app ----------------------------------------------------------------------------------------


def collection_name(pipe: Pipeline) -> str:
    """The model id of the collection: its index folder's name ('rag-index'), or for a collection of
    rag.collections (…/<id>/index beside a collection.json) its id ('contracts-1a2b3c')."""
    index = Path(pipe.cfg.index_dir).expanduser().resolve()
    if index.name == "index" and (index.parent / "collection.json").is_file():
        return index.parent.name
    return index.name or "rag"


def create_app(pipe: Pipeline, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app over `pipe` (shared by every request), wrapped in `Guard`."""
    settings = settings or ServeSettings()
    name = collection_name(pipe)
    created = int(time.time())
    app = FastAPI(title="rag.serve", version="1", docs_url=None, redoc_url=None)
    upload_limit = settings.max_upload_bytes or int(pipe.cfg.max_file_mb * 1024 * 1024) + MULTIPART_SLACK
    admission = Admission(settings.max_queue)

    @app.exception_handler(Refusal)
    async def _refusal(_request: Request, err: Refusal) -> JSONResponse:
        return JSONResponse(error_body(err.message, err.kind, err.code), status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = err.errors()
        first = problems[0] if problems else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        code = "invalid_json" if first.get("type") == "json_invalid" else "invalid_request"
        body = error_body(f"{where}: {first.get('msg', 'invalid request')} (fix: send a JSON body as the "
                          "OpenAI API documents it)", "invalid_request_error", code)
        body["detail"] = jsonable_encoder(problems, custom_encoder={Exception: str})
        return JSONResponse(body, status_code=422)

    @app.exception_handler(RagError)
    async def _rag_error(_request: Request, err: RagError) -> JSONResponse:
        status, code = _status_for(err)
        return JSONResponse(error_body(str(err), "server_error", code), status_code=status)

    def check_model(model: str) -> None:
        if model and model != name:
            raise Refusal(404, f"model {model!r} is not a collection here (fix: use {name!r}, see /v1/models)",
                          "invalid_request_error", "model_not_found")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        status = pipe.status()
        return {"status": "ok" if status.ok else "degraded", "collection": name, "index": status.ok}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "rag"}]}

    @app.post("/v1/chat/completions", response_model=None)
    def chat(req: ChatRequest) -> dict[str, Any] | StreamingResponse:
        check_model(req.model)
        turns = [{"role": m.role, "content": message_text(m.content)} for m in req.messages
                 if m.role in ("user", "assistant")]
        if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
            raise Refusal(422, "messages: the last user or assistant message must be the user's question, "
                               "and not empty (fix: end the list with {'role': 'user', 'content': QUESTION})",
                          code="invalid_request")
        question, history = turns[-1]["content"].strip(), turns[:-1]
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        slot = admission.try_enter()
        if slot is None:
            wait = admission.retry_after()
            raise Refusal(503, f"the server is busy: {admission.limit} answers are already running or queued for "
                               f"the model; retry in {wait:.0f} s (fix: retry after the Retry-After seconds, or "
                               "start the server with a larger --max-queue)", "server_error", "server_busy",
                          {"retry-after": str(math.ceil(wait))})
        if req.stream:
            try:
                events = pipe.stream(question, history=history)
                return EventStream(_sse(events, cid=cid, model=name, on_end=slot.leave),
                                   keepalive_s=settings.keepalive_s, on_close=slot.leave)
            except BaseException:
                slot.leave()
                raise
        try:
            answer = pipe.ask(question, history=history)
        finally:
            slot.leave()
        return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "rag": rag_view(answer)}

    @app.post("/v1/search")
    def search(req: SearchRequest) -> dict[str, Any]:
        check_model(req.model)
        hits = pipe.search(req.query, k=req.k, mode=req.mode)
        return {"object": "list", "model": name, "query": req.query, "data": [
            {"rank": i, "chunk_id": h.chunk.id, "file": h.chunk.source, "pages": list(h.chunk.pages),
             "label": h.label, "heading_path": list(h.chunk.heading_path), "score": round(h.score, 4),
             "text": h.chunk.text} for i, h in enumerate(hits, 1)]}

    @app.post("/v1/ingest")
    def ingest(files: list[UploadFile] = File(...)) -> dict[str, Any]:  # noqa: B008  # FastAPI's own idiom
        from rag import collection

        status = pipe.status()
        manifest = pipe.index.manifest if status.ok else None
        docs_dir = collection.documents_folder(pipe.cfg.docs_dir, manifest)
        if status.ok and not docs_dir.is_dir():  # the UI's rule: ingesting elsewhere would drop every document
            raise Refusal(409, f"the documents folder {docs_dir} (where this index was ingested from) does not "
                               "exist here, so uploads are off (fix: set RAG_DOCS_DIR to the folder that holds "
                               "the documents)", code="documents_folder_missing")
        max_bytes = int(pipe.cfg.max_file_mb * 1024 * 1024)
        uploads = [(f.filename or "upload", f.file.read(max_bytes + 1)) for f in files]
        result = collection.add_documents(pipe, docs_dir, uploads, max_bytes=max_bytes)
        report = result.report
        return {"saved": [{"file": s.source, "renamed_from": s.renamed_from, "size": s.size, "sha256": s.sha256}
                          for s in result.saved],
                "rejected": [{"file": r.name, "reason": r.reason, "fix": r.fix} for r in result.rejected],
                "failed": [{"file": f.source, "reason": f.reason, "fix": f.fix} for f in result.failed],
                "generation": report.generation if report else "",
                "summary": report.summary() if report else "nothing stored"}

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(Guard, settings=settings, upload_limit=upload_limit)
    return app


def _status_for(err: RagError) -> tuple[int, str]:
    if isinstance(err, IndexLockedError):
        return 409, "index_locked"
    if isinstance(err, IndexStateError):
        return 503, "index_unavailable"
    if isinstance(err, EmptyQuestionError):  # "?" or "…": the request's fault
        return 422, "invalid_request"
    return 500, "rag_error"


KEEPALIVE = ": waiting for the model\n\n"  # an SSE comment: every client skips it
_END = object()


def _next_or_end(events: Iterator[str]) -> object:
    return next(events, _END)


class EventStream(StreamingResponse):
    """Server-sent events pulled from the blocking iterator `events`, one step at a time in a worker thread.

    Two things StreamingResponse does not do: while a step takes longer than `keepalive_s` (a request
    queued behind others for the model, a long prompt being read) a KEEPALIVE comment goes out; and
    when the response ends for any reason (the answer done, the client gone, the server stopping),
    `events` is closed at once, after the worker's step in progress returns, so the generator's lock
    is released then (StreamingResponse leaves an abandoned iterator to the garbage collector, and
    with it the lock, so every later answer waited). `on_close` runs last (the admission slot).
    """

    def __init__(self, events: Iterator[str], *, keepalive_s: float, on_close: Callable[[], None]) -> None:
        self._events = events
        self._keepalive_s = keepalive_s
        self._on_close = on_close
        self._step: asyncio.Future[object] | None = None
        super().__init__(self._pump(), media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _pump(self) -> AsyncIterator[str]:
        while True:
            if self._step is None:
                self._step = asyncio.ensure_future(anyio.to_thread.run_sync(_next_or_end, self._events))
            done, _ = await asyncio.wait({self._step}, timeout=self._keepalive_s)
            if not done:
                yield KEEPALIVE
                continue
            step, self._step = self._step, None
            item = step.result()
            if item is _END:
                return
            yield str(item)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish()

    async def _finish(self) -> None:
        try:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]  # _pump is an async generator
            if self._step is not None:  # a generator cannot be closed while a thread is running it
                await asyncio.wait({self._step})
                if not self._step.cancelled():
                    self._step.exception()  # retrieved: it went nowhere, the client has left
            await anyio.to_thread.run_sync(self._close)
        finally:
            self._on_close()

    def _close(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()


def _sse(events: Iterator[str | Retraction | Answer], *, cid: str, model: str,
         on_end: Callable[[], None] = lambda: None) -> Iterator[str]:
    """The pipeline's events as OpenAI chat.completion.chunk server-sent events (module docstring).

    `on_end` runs once the pipeline is done, before the last event goes out: a client that asks again
    as soon as it has read `[DONE]` finds the place this answer held free."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], *, finish: str | None = None, rag: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if rag is not None:
            body["rag"] = rag
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    shown = ""
    answer: Answer | None = None
    try:
        yield chunk({"role": "assistant", "content": ""})
        for event in events:
            if isinstance(event, Answer):
                answer = event
            elif isinstance(event, Retraction):
                shown = ""
                yield chunk({"content": RETRACT_SEPARATOR}, rag={"retract": True, "reason": event.reason})
            elif event:
                shown += event
                yield chunk({"content": event})
        if answer is None:
            raise RagError("the pipeline ended without an answer")
        if answer.text != shown:  # markers removed or realigned, a refusal reworded: the final text wins
            if answer.text.startswith(shown):
                yield chunk({"content": answer.text[len(shown):]})
            else:
                yield chunk({"content": RETRACT_SEPARATOR}, rag={"retract": True, "reason": "final"})
                yield chunk({"content": answer.text})
        final = chunk({}, finish="stop", rag=rag_view(answer))
        on_end()
        yield final
        yield "data: [DONE]\n\n"
    except RagError as err:  # the stream is open: the error goes in an event, which OpenAI clients raise
        status, code = _status_for(err)
        on_end()
        yield f"data: {json.dumps(error_body(str(err), 'server_error', code), ensure_ascii=False)}\n\n"
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # a client that went away releases the generator's lock now


@contextmanager
def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a background thread; yields its base URL ('http://127.0.0.1:PORT').

    For tests and eval (port 0: a free one). The server stops when the block ends.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="rag-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RagError(f"the server on {host}:{port} did not start (is the port taken?)")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
