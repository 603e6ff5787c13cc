"""A scripted OpenAI-compatible server (FastAPI, on 127.0.0.1 with rag.serve.app.serve_in_thread): what
the tests of the openai generator backend and of the UI over it talk to.

    script = Script(die_after=2)            # the next answers break off after two pieces
    with serve_in_thread(fake_openai_server(script)) as url: ...   # base URL f"{url}/v1"
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

MEMORY = "A 7B model in Q4_K_M needs about 4.4 GB of memory [1]."


@dataclass
class Script:
    """What the fake server does; the test changes it and reads what the server saw."""

    reply: str = MEMORY
    fail_first: int = 0  # answer this many chat requests with `fail_status` first
    fail_status: int = 429
    die_after: int | None = None  # close the stream after this many pieces, without [DONE]
    tokenize: bool = True
    logprobs: dict[str, float] | None = None  # token → logprob for the one-token requests; None: unsupported
    key: str = ""
    seen: list[dict] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


def fake_openai_server(script: Script) -> FastAPI:
    app = FastAPI()

    def denied(request: Request) -> JSONResponse | None:
        script.auth.append(request.headers.get("authorization", ""))
        if script.key and request.headers.get("authorization") != f"Bearer {script.key}":
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        return None

    @app.get("/v1/models")
    def models(request: Request):
        return denied(request) or {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}

    @app.post("/tokenize")
    async def tokenize(request: Request):
        if not script.tokenize:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        body = await request.json()
        return {"tokens": list(range(len(body["content"].split())))}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if (no := denied(request)) is not None:
            return no
        body = await request.json()
        script.seen.append(body)
        if script.fail_first > 0:
            script.fail_first -= 1
            return JSONResponse({"error": {"message": "busy"}}, status_code=script.fail_status,
                                headers={"Retry-After": "0"})
        if body.get("logprobs"):
            if script.logprobs is None:
                return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "yes"},
                                     "finish_reason": "length"}]}
            top = [{"token": t, "logprob": lp} for t, lp in script.logprobs.items()]
            return {"choices": [{"index": 0, "message": {"role": "assistant", "content": top[0]["token"]},
                                 "logprobs": {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"],
                                                           "top_logprobs": top}]},
                                 "finish_reason": "length"}]}
        words = script.reply.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)][: body["max_tokens"]]

        async def events():
            for i, piece in enumerate(pieces):
                if script.die_after is not None and i == script.die_after:
                    raise RuntimeError("the fake server dies mid-stream")
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
                await asyncio.sleep(0)
            yield 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
