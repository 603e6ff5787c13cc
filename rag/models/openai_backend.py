"""The generator backend for any OpenAI-compatible server: vLLM, Ollama, llama.cpp's server, TGI.

    gen = load_openai_generator(cfg)    # cfg.llm_backend == "openai"
    for piece in gen.stream(messages, max_tokens=512): ...

- `stream` POSTs `{llm_base_url}/chat/completions` with `stream: true` and reads the server-sent
  events (`data: {...}` lines, `data: [DONE]` at the end). Failures before the first token (a refused
  connection, a timeout, HTTP 429 or 5xx) are retried RETRIES times with exponential backoff
  (`Retry-After` honoured up to MAX_BACKOFF_S); after the first token nothing is retried, since the text
  already shown cannot be taken back: a stream that breaks off raises RagError naming the URL.
- `count_tokens` asks the server's tokenizer when it has one (llama.cpp's server and vLLM: POST
  /tokenize; llama-cpp-python's server: POST /extras/tokenize), cached per text; otherwise it
  estimates from characters:

      tokens ≈ other chars / 3.6 + CJK chars / 1.1

  measured with the Qwen2.5 tokenizer on data/docs (4.13 chars/token in English, 1.22 CJK chars per
  token in Chinese), rounded down ~12 % so that the estimate over-counts: a prompt built to fit then fits.
- `yes_probability` (the answerability gate, rag.answer.gate) exists only on `OpenAIYesNoGenerator`,
  chosen when the server answered a one-token request with `top_logprobs`:

      P(yes) = Σ exp(logprob) over yes tokens / Σ exp(logprob) over yes and no tokens, of the top 20

  A side missing from the top 20 is counted at the smallest listed logprob (an upper bound on it);
  neither side listed gives 0.5. A server without logprobs gets the plain class, so the pipeline's
  gate is skipped rather than guessed.

HTTP is the standard library's http.client, not `httpx` or the `openai` package: the backend then needs
no extra at all, and the retry rule "only before the first token" is ours to state, not a client
library's default. The API key is read from the environment variable `llm_api_key_env` (else
OPENAI_API_KEY) at load time and is kept out of every repr, message and log line.

Deliberately skipped: a client-side lock (a server queues or batches concurrent requests itself),
connection reuse between requests (generation dominates the cost), and the legacy /completions API.
"""
from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from rag.answer.generate import Message
from rag.config import Config
from rag.errors import ConfigError, RagError
from rag.text import CJK_CHARS

log = logging.getLogger(__name__)

RETRIES = 3  # after the first try, before the first token
BACKOFF_S = 0.5  # first wait; doubled each retry
MAX_BACKOFF_S = 10.0
CONNECT_TIMEOUT_S = 10.0
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
TOKENIZE_CACHE = 4096  # texts whose count is kept; the pipeline counts the same passages several times
_WIDE = re.compile(f"[{CJK_CHARS}\u3000-\u303f\uff00-\uffef]")


class ServerError(RagError):
    """The generation server could not be reached, refused the request, or broke off an answer."""


class _Retryable(Exception):
    """A failure worth another try if no token has been shown yet."""

    def __init__(self, why: str, retry_after: float | None = None) -> None:
        super().__init__(why)
        self.retry_after = retry_after


def estimate_tokens(text: str) -> int:
    """Tokens of `text` by the measured characters-per-token rule (module docstring); over-counts.

    >>> estimate_tokens("The KV cache grows with the context."), estimate_tokens("上下文窗口越长，缓存越大。")
    (10, 12)
    """
    wide = len(_WIDE.findall(text))
    return math.ceil((len(text) - wide) / 3.6 + wide / 1.1)


def p_yes_from_top_logprobs(top: Sequence[Mapping[str, Any]]) -> float:
    """P(yes) among the yes/no tokens of an OpenAI `top_logprobs` list (see the module docstring).

    >>> round(p_yes_from_top_logprobs([{"token": "Yes", "logprob": -0.1}, {"token": "No", "logprob": -2.4},
    ...                                {"token": " yes", "logprob": -3.0}]), 3)
    0.913
    >>> p_yes_from_top_logprobs([{"token": "The", "logprob": -0.1}])
    0.5
    """
    from rag.answer.gate import NO_WORDS, YES_WORDS

    yes = {w.strip() for w in YES_WORDS}
    no = {w.strip() for w in NO_WORDS}
    ys = [float(t["logprob"]) for t in top if str(t.get("token", "")).strip() in yes]
    ns = [float(t["logprob"]) for t in top if str(t.get("token", "")).strip() in no]
    if not ys and not ns:
        return 0.5
    floor = min(float(t["logprob"]) for t in top)
    ys, ns = ys or [floor], ns or [floor]
    top_lp = max(ys + ns)
    y = sum(math.exp(v - top_lp) for v in ys)
    n = sum(math.exp(v - top_lp) for v in ns)
    return y / (y + n)


class OpenAIGenerator:
    """A model behind an OpenAI-compatible HTTP API. Thread-safe: each request has its own connection."""

    def __init__(self, base_url: str, model: str = "", *, api_key: str = "", context_window: int = 4096,
                 temperature: float = 0.1, seed: int = 0, timeout_s: float = 300.0, retries: int = RETRIES,
                 backoff_s: float = BACKOFF_S, probe: bool = True) -> None:
        """`probe` asks the server at once (its models, tokenizer and context size), so a wrong URL
        fails here, at load, with the fix, rather than in the first answer."""
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"setting 'llm_base_url': {base_url!r} is not an http(s) URL "
                              "(e.g. 'http://127.0.0.1:8080/v1')")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = parts.path  # '/v1'; the tokenize endpoints live at the server root, beside it
        self._root = re.sub(r"/v\d+$", "", self._path)
        self.__api_key = api_key  # name-mangled: kept out of vars()-style dumps as well as repr
        self.model = model
        self.temperature = temperature
        self.seed = seed
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.context_window = context_window
        self.offload = f"server at {self.base_url}"
        self.tokenizer = "estimate"  # or the endpoint path that counts for us
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        if probe:
            self._probe()
        self.name = f"{self.model or 'default'} @ {self.base_url}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, model={self.model!r})"

    # --- load-time questions to the server

    def _probe(self) -> None:
        listed = self._get_json(f"{self._path}/models")
        ids = [str(m.get("id")) for m in listed.get("data", []) if isinstance(m, dict)]
        if not self.model:
            if not ids:
                raise ServerError(f"the server at {self.base_url} lists no models (fix: set llm_model to the "
                                  "name of the model the server runs)")
            self.model = ids[0]
        elif ids and self.model not in ids:
            log.warning("model %r is not among those %s lists (%s); sending it anyway", self.model, self.base_url,
                        ", ".join(ids[:5]))
        for m in listed.get("data", []):  # vLLM says how long its context is
            if isinstance(m, dict) and m.get("id") == self.model and isinstance(m.get("max_model_len"), int):
                self.context_window = min(self.context_window, int(m["max_model_len"]))
        for path, body in self._tokenize_requests("hello world"):
            try:
                tokens = self._tokens_from(self._post_json(path, body, retry=False))
            except RagError:
                continue
            if tokens:
                self.tokenizer = path
                break
        log.info("generator %s: model %r, token counts from %s, context %d", self.base_url, self.model,
                 self.tokenizer, self.context_window)

    def _tokenize_requests(self, text: str) -> list[tuple[str, dict[str, Any]]]:
        # llama.cpp's server reads `content`, vLLM `prompt`; each ignores the other's key.
        return [(f"{self._root}/tokenize", {"model": self.model, "content": text, "prompt": text,
                                            "add_special": False, "add_special_tokens": False}),
                (f"{self._root}/extras/tokenize", {"model": self.model, "input": text})]

    @staticmethod
    def _tokens_from(reply: Mapping[str, Any]) -> list[Any] | None:
        tokens = reply.get("tokens")
        return tokens if isinstance(tokens, list) else None

    # --- the Generator protocol

    def count_tokens(self, text: str) -> int:
        if self.tokenizer == "estimate" or not text:
            return estimate_tokens(text)
        with self._counts_lock:
            if text in self._counts:
                return self._counts[text]
        body = next(b for p, b in self._tokenize_requests(text) if p == self.tokenizer)
        tokens = self._tokens_from(self._post_json(self.tokenizer, body))
        n = len(tokens) if tokens is not None else estimate_tokens(text)
        with self._counts_lock:
            if len(self._counts) >= TOKENIZE_CACHE:
                self._counts.clear()
            self._counts[text] = n
        return n

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float | None = None,
               stop: Sequence[str] = ()) -> Iterator[str]:
        """Text pieces as the server sends them; at most `max_tokens` tokens. Closing the iterator
        closes the connection, which makes llama.cpp's server and vLLM stop generating."""
        if max_tokens < 1:
            return
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "stream": True,
                                "max_tokens": max_tokens, "seed": self.seed,
                                "temperature": self.temperature if temperature is None else temperature}
        if stop:
            body["stop"] = list(stop)[:4]  # the OpenAI API takes at most four
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.retries + 1):
            started = False
            pieces = self._stream_once(body)
            try:
                for piece in pieces:
                    started = True
                    yield piece
                return
            except _Retryable as err:
                if started:
                    raise ServerError(f"the generation server at {url} stopped in the middle of the answer "
                                      f"({err}) (fix: check that the server is still running and its log; then "
                                      "ask again)") from None
                if attempt == self.retries:
                    raise ServerError(self._unreachable(url, str(err))) from None
                self._wait(attempt, err.retry_after, url, str(err))
            finally:
                pieces.close()  # closes the connection now, not when the garbage collector gets to it

    def _stream_once(self, body: dict[str, Any]) -> Generator[str, None, None]:
        conn, resp = self._request("POST", f"{self._path}/chat/completions", body, stream=True)
        done = False
        try:
            for event in _sse_events(resp):
                if event == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(event)
                except json.JSONDecodeError:
                    raise _Retryable(f"a malformed event: {event[:80]!r}") from None
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise RagError(f"the generation server at {self.base_url} reported an error mid-answer: "
                                   f"{_error_text(chunk)}")
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if isinstance(piece, str) and piece:
                        yield piece
                    if choice.get("finish_reason"):
                        done = True
            if not done:
                raise _Retryable("the connection closed before the answer ended")
        except (OSError, http.client.HTTPException) as err:  # a timeout or a reset while reading
            raise _Retryable(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__) from None
        finally:
            conn.close()

    # --- HTTP

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=min(CONNECT_TIMEOUT_S, self.timeout_s))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.__api_key:
            headers["Authorization"] = f"Bearer {self.__api_key}"
        return headers

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None, *,
                 stream: bool = False) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """One request; raises _Retryable for what another try may fix, ServerError for the rest."""
        conn = self._connection()
        try:
            conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(self.timeout_s)  # connect is quick or never; reading may be slow
            data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
            conn.request(method, path, body=data, headers=self._headers())
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise _Retryable(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__) from None
        if resp.status < 400:
            return conn, resp
        text = resp.read(4096).decode("utf-8", "replace")
        conn.close()
        url = f"{self._base()}{path}"
        if resp.status in RETRY_STATUS:
            raise _Retryable(f"HTTP {resp.status}: {_error_text(text)}", _retry_after(resp.getheader("Retry-After")))
        if resp.status in (401, 403):
            raise ServerError(f"the generation server at {url} refused the API key (HTTP {resp.status}: "
                              f"{_error_text(text)}) (fix: put the right key in the environment variable "
                              "named by llm_api_key_env, RAG_LLM_API_KEY by default, or OPENAI_API_KEY)")
        raise ServerError(f"the generation server at {url} rejected the request (HTTP {resp.status}: "
                          f"{_error_text(text)})" + _fix_for(resp.status, text))

    def _base(self) -> str:
        return f"{'https' if self._https else 'http'}://{self._host}:{self._port}"

    def _call_json(self, method: str, path: str, body: Mapping[str, Any] | None, *, retry: bool) -> dict[str, Any]:
        url = f"{self._base()}{path}"
        for attempt in range(self.retries + 1 if retry else 1):
            try:
                conn, resp = self._request(method, path, body)
                try:
                    reply = json.loads(resp.read().decode("utf-8"))
                finally:
                    conn.close()
                return reply if isinstance(reply, dict) else {"data": reply}
            except _Retryable as err:
                if not retry or attempt == self.retries:
                    raise ServerError(self._unreachable(url, str(err))) from None
                self._wait(attempt, err.retry_after, url, str(err))
            except (json.JSONDecodeError, UnicodeDecodeError, OSError, http.client.HTTPException) as err:
                raise ServerError(f"the server at {url} did not answer with JSON ({err}) (fix: llm_base_url must "
                                  "be the OpenAI-compatible API root, e.g. http://127.0.0.1:8080/v1)") from None
        raise AssertionError("unreachable")

    def _get_json(self, path: str) -> dict[str, Any]:
        return self._call_json("GET", path, None, retry=True)

    def _post_json(self, path: str, body: Mapping[str, Any], *, retry: bool = True) -> dict[str, Any]:
        return self._call_json("POST", path, body, retry=retry)

    def _unreachable(self, url: str, why: str) -> str:
        return (f"the generation server at {url} did not answer after {self.retries + 1} tries ({why}) (fix: start "
                "it, e.g. `python -m rag.models.llama_server --model MODEL.gguf --port 8080` (llama_cpp.server), "
                "or set llm_base_url to where it runs; or set llm_backend = \"llamacpp\" to run a GGUF model in "
                "this process)")

    def _wait(self, attempt: int, retry_after: float | None, url: str, why: str) -> None:
        delay = min(MAX_BACKOFF_S, retry_after if retry_after is not None else self.backoff_s * 2 ** attempt)
        log.info("generation server %s: %s; retrying in %.1f s", url, why, delay)
        time.sleep(delay)


class OpenAIYesNoGenerator(OpenAIGenerator):
    """An OpenAIGenerator whose server returns `top_logprobs`, so the answerability gate can ask it."""

    def yes_probability(self, messages: list[Message]) -> float:
        body = {"model": self.model, "messages": list(messages), "max_tokens": 1, "temperature": 0.0,
                "seed": self.seed, "logprobs": True, "top_logprobs": 20}
        reply = self._post_json(f"{self._path}/chat/completions", body)
        top = _first_top_logprobs(reply)
        return p_yes_from_top_logprobs(top) if top else 0.5


def _first_top_logprobs(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    try:
        top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return []
    return [t for t in top if isinstance(t, dict) and "logprob" in t] if isinstance(top, list) else []


def _sse_events(resp: http.client.HTTPResponse) -> Iterator[str]:
    """The `data` of each server-sent event (multi-line data joined by newlines; comments skipped)."""
    data: list[str] = []
    while True:
        raw = resp.readline()
        if not raw:
            if data:
                yield "\n".join(data)
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        # 'event:', 'id:', 'retry:' and ': comments' carry nothing a chat completion needs


def _error_text(body: str | Mapping[str, Any]) -> str:
    """The message of an OpenAI-style error body, or the body's start.

    >>> _error_text('{"error": {"message": "model not found", "type": "invalid_request_error"}}')
    'model not found'
    """
    obj: Any = body
    if isinstance(body, str):
        try:
            obj = json.loads(body)
        except json.JSONDecodeError:
            return body.strip()[:300] or "no message"
    err = obj.get("error") if isinstance(obj, Mapping) else None
    if isinstance(err, Mapping):
        return str(err.get("message") or err)[:300]
    if isinstance(err, str):
        return err[:300]
    detail = obj.get("detail") if isinstance(obj, Mapping) else None
    return str(detail if detail is not None else obj)[:300]


def _fix_for(status: int, text: str) -> str:
    low = text.lower()
    if "context" in low and ("length" in low or "exceed" in low or "window" in low):
        return " (fix: lower top_k / passage_tokens, or n_ctx to the server's context size)"
    if status == 404:
        return " (fix: check llm_model against the server's /v1/models and llm_base_url ends in /v1)"
    return ""


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def api_key_from_env(cfg: Config, env: Mapping[str, str] | None = None) -> str:
    """The key from the variable `cfg.llm_api_key_env` names, else OPENAI_API_KEY, else ''."""
    env = os.environ if env is None else env
    return env.get(cfg.llm_api_key_env, "") or env.get("OPENAI_API_KEY", "")


def supports_logprobs(gen: OpenAIGenerator) -> bool:
    """Whether the server returns top_logprobs for a one-token chat completion (one tiny request)."""
    body = {"model": gen.model, "messages": [{"role": "user", "content": "Is 2 greater than 1? Reply yes or no."}],
            "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": 20}
    try:
        return bool(_first_top_logprobs(gen._post_json(f"{gen._path}/chat/completions", body, retry=False)))
    except RagError as err:
        log.info("%s: no logprobs (%s); the answerability gate is off", gen.base_url, err)
        return False


def load_openai_generator(cfg: Config) -> OpenAIGenerator:
    """The generator for `cfg.llm_backend == "openai"`; raises ServerError when the server is not there."""
    from rag.answer.gate import gate_rule

    kwargs: dict[str, Any] = dict(api_key=api_key_from_env(cfg), context_window=cfg.n_ctx,
                                  temperature=cfg.temperature, seed=cfg.seed, timeout_s=cfg.llm_timeout_s)
    gen = OpenAIGenerator(cfg.llm_base_url, cfg.llm_model, **kwargs)
    if gate_rule(cfg.gate_threshold, cfg.gate_rescue, cfg.llm_model) is not None and supports_logprobs(gen):
        yes_no = OpenAIYesNoGenerator(cfg.llm_base_url, gen.model, probe=False, **kwargs)
        yes_no.context_window, yes_no.tokenizer, yes_no.name = gen.context_window, gen.tokenizer, gen.name
        return yes_no
    return gen
