"""The Pipeline: one object that owns the loaded models and answers questions over one index.

    pipe = Pipeline(load_config())
    for event in pipe.stream("How much memory does a 7B model need?"):
        if isinstance(event, str): print(event, end="")   # answer text as it is generated
        else: answer = event                               # the final Answer, citations checked

The CLIs, the Streamlit app and the eval suite all go through it. Models load lazily and once;
the index is re-opened when an ingest switches generations, so a long-running app sees new
documents without a restart while queries in flight finish on the generation they started on.
"""
from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Generator as PyGenerator
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rag.config import Config
from rag.errors import IndexStateError, MissingDependencyError, RagError
from rag.records import Answer, Hit, Mode, Retraction, Status

if TYPE_CHECKING:
    from rag.answer.gate import GateRule
    from rag.answer.generate import Generator
    from rag.answer.prompt import Prompt
    from rag.answer.rerank import Reranker
    from rag.answer.retrieve import Retriever, SearchMode
    from rag.answer.verify import Verifier
    from rag.index.store import Store
    from rag.ingest.build import IngestReport, Progress
    from rag.models.embed import Embedder

log = logging.getLogger(__name__)

Message = dict[str, str]
Event = "str | Retraction | Answer"


class _Auto(enum.Enum):
    """The 'load it from the config' default, distinct from None ('do without it')."""

    AUTO = enum.auto()


_AUTO = _Auto.AUTO
EXTRACTIVE_NOTICE = ("extractive mode: no GGUF model loaded; answers are sentences selected from the documents "
                     "(add a model: python -m rag.models pull qwen2.5-coder-1.5b, or --model PATH.gguf)")


class Pipeline:
    def __init__(self, cfg: Config, *, embedder: Embedder | None = None,
                 generator: Generator | None | Literal[_Auto.AUTO] = _AUTO,
                 reranker: Reranker | None | Literal[_Auto.AUTO] = _AUTO, verifier: Verifier | None = None) -> None:
        """Backends left out are loaded from cfg on first use; pass `generator=None` to force
        extractive mode and `reranker=None` to skip reranking."""
        self.cfg = cfg
        self._embedder = embedder
        self._generator = generator
        self._generator_notice = EXTRACTIVE_NOTICE  # why there is no generator, once that is known
        self._reranker = reranker
        self._verifier = verifier
        self._index: Store | None = None
        self._retriever: Retriever | None = None
        self._lock = threading.RLock()
        self.notices: list[str] = []

    _GENERATOR_FIELDS = frozenset({"llm_model", "n_gpu_layers", "n_ctx", "n_threads", "n_threads_batch", "seed",
                                   "chat_prefix_cache", "weight_repack", "llm_backend", "llm_base_url",
                                   "llm_api_key_env", "llm_timeout_s"})
    _RERANKER_FIELDS = frozenset({"reranker_model"})
    _INDEX_FIELDS = frozenset({"index_dir", "embed_model", "embed_backend", "embed_device", "embed_languages"})

    def with_overrides(self, **changes: Any) -> Pipeline:
        """A Pipeline with some settings changed (top_k, rerank, fusion, temperature…) that shares
        every loaded model and the open index that the change does not affect."""
        cfg = self.cfg.with_overrides(**changes)
        changed = {k for k in changes if getattr(cfg, k) != getattr(self.cfg, k)}
        same_index = not (changed & self._INDEX_FIELDS)
        other = Pipeline(cfg,
                         embedder=self._embedder if same_index else None,
                         generator=_AUTO if changed & self._GENERATOR_FIELDS else self._generator,
                         reranker=_AUTO if changed & self._RERANKER_FIELDS else self._reranker,
                         verifier=self._verifier if not (changed & {"verifier", "support_threshold"}) and same_index
                         else None)
        if same_index:
            other._index = self._index
        if other._generator is self._generator:
            other._generator_notice = self._generator_notice
        other.notices = list(self.notices)
        return other

    # --- lazily loaded parts

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from rag.models.factory import load_embedder

                self._embedder = load_embedder(self.cfg)
            return self._embedder

    def gate_rule(self, question: str = "") -> GateRule | None:
        """The answerability gate's rule for the configured model and this question's script
        (rag.answer.gate.gate_rule), or None: no gate."""
        from rag.answer.gate import gate_rule

        return gate_rule(self.cfg.gate_threshold, self.cfg.gate_rescue, getattr(self._generator, "path", None)
                         or self.cfg.llm_model or None, question)

    @property
    def generator(self) -> Generator | None:
        """The GGUF generator, or None (extractive mode).

        A configured model that llama-cpp-python is not installed to run degrades to extractive
        mode with a notice naming the extra (as without a model); a model that cannot be found
        still raises ModelNotFoundError, since answering extractively would hide that mistake.
        """
        with self._lock:
            if self._generator is _AUTO:
                from rag.models.llama import load_generator

                try:
                    self._generator = load_generator(self.cfg)
                except MissingDependencyError as err:
                    self._generator = None
                    self._generator_notice = (f"extractive mode: a GGUF model is configured but {err}; answers "
                                              "are sentences selected from the documents")
                    log.warning(self._generator_notice)
            if self._generator is None:
                self._notice(self._generator_notice)
            return self._generator

    @property
    def reranker(self) -> Reranker | None:
        with self._lock:
            if self._reranker is _AUTO:
                from rag.models.factory import load_reranker

                self._reranker, notice = load_reranker(self.cfg)
                if notice:
                    self._notice(notice)
            return self._reranker

    @property
    def verifier(self) -> Verifier:
        with self._lock:
            if self._verifier is None:
                from rag.answer.verify import load_verifier

                gen = self.generator if self.cfg.verifier == "llm" else None
                self._verifier = load_verifier(self.cfg.verifier, embedder=self.embedder, generator=gen,
                                               threshold=self.cfg.support_threshold)
            return self._verifier

    def _notice(self, text: str) -> None:
        """Remember a degradation for Answer.notices (the UI and --json show it); the backend that
        failed has already logged it once."""
        if text not in self.notices:
            self.notices.append(text)

    @property
    def index(self) -> Store:
        """The live index generation; re-opened when an ingest has committed a newer one."""
        from rag.index.store import open_store

        with self._lock:
            if self._index is None or self._index.stale():
                self._index = open_store(self.cfg, reuse=self._index)
                self._retriever = None
            return self._index

    @property
    def retriever(self) -> Retriever:
        from rag.answer.retrieve import Retriever

        index = self.index
        with self._lock:
            if self._retriever is None or self._retriever.index is not index:
                self._retriever = Retriever(index, self.embedder, fusion=self.cfg.fusion, alpha=self.cfg.fusion_alpha,
                                            candidates=self.cfg.candidates)
            return self._retriever

    # --- stages

    def search(self, query: str, *, k: int = 10, mode: SearchMode = "hybrid",
               files: Sequence[str] | None = None) -> list[Hit]:
        """Fused retrieval without reranking (rag.cli.search). `files`: only chunks of these
        documents, applied inside both retrievers before fusion (None: every document)."""
        return self.retriever.search(query, k=k, mode=mode, files=files)

    def retrieve(self, query: str, *, k: int | None = None, rerank: bool | None = None,
                 timings: dict[str, float] | None = None, files: Sequence[str] | None = None) -> list[Hit]:
        """Fused retrieval, then the cross-encoder over the top candidates when one is available.
        A question over documents in another language is also searched in that language (`_retrieve`)."""
        return self._retrieve(query, k=k, rerank=rerank, timings=timings, files=files)[0]

    def _retrieve(self, query: str, *, k: int | None = None, rerank: bool | None = None,
                  timings: dict[str, float] | None = None,
                  files: Sequence[str] | None = None) -> tuple[list[Hit], dict[str, str]]:
        """`retrieve`'s hits, and the query in each language that was searched ({} when only `query` was).

        With a model loaded and `translate_queries` on, the question is translated into the collection's
        other languages (rag.answer.translate); each version is searched and reranked on its own, and
        the rankings are interleaved, the question's own language first.
        """
        from rag.answer.rerank import rerank as rerank_hits
        from rag.answer.translate import interleave, targets, translate_query

        k = k or self.cfg.top_k
        use_rerank = self.cfg.rerank if rerank is None else rerank
        depth = max(k, self.cfg.rerank_candidates) if use_rerank else k
        t0 = time.perf_counter()
        queries: dict[str, str] = {}
        generator = self.generator if self.cfg.translate_queries else None
        if generator is not None:
            from rag.answer.prompt import answer_language

            for target in targets(query, self.retriever.document_languages()):
                translated = translate_query(generator, query, target)
                if translated:
                    queries[target] = translated
            if queries:
                queries[answer_language(query)] = query
        t1 = time.perf_counter()
        versions = [query, *(q for q in queries.values() if q != query)]
        rankings = [self.search(q, k=depth, files=files) for q in versions]
        t2 = time.perf_counter()
        reranker = self.reranker if use_rerank else None
        if reranker is not None:
            rankings = [rerank_hits(reranker, q, hits, top_n=self.cfg.rerank_candidates) if hits else hits
                        for q, hits in zip(versions, rankings)]
        t3 = time.perf_counter()
        if timings is not None:
            if queries:
                timings["translate"] = round(t1 - t0, 4)
            timings["retrieve"] = round(t2 - t1, 4)
            timings["rerank"] = round(t3 - t2, 4)
        return (interleave(rankings, k) if len(rankings) > 1 else rankings[0][:k]), queries

    def _evidence(self, query: str, hits: Sequence[Hit], queries: dict[str, str]) -> float:
        """The evidence score of the hits, each group of hits judged against the query in its language."""
        from rag.answer.abstain import evidence_score

        if not queries:
            return evidence_score(query, hits)
        return max(evidence_score(q, group) for q, group in self._by_language(query, hits, queries))

    @staticmethod
    def _by_language(query: str, hits: Sequence[Hit],
                     queries: dict[str, str]) -> list[tuple[str, list[Hit]]]:
        """The hits grouped by the query in their language (`query` for a language not searched)."""
        from rag.answer.translate import chunk_language

        groups: dict[str, list[Hit]] = {}
        for h in hits:
            groups.setdefault(queries.get(chunk_language(h.chunk.text), query), []).append(h)
        return list(groups.items())

    def standalone_query(self, question: str, history: Sequence[Message]) -> str:
        """Rewrite a follow-up into a query that retrieval can use on its own."""
        from rag.answer.prompt import rewrite_followup, rewrite_messages

        if not history:
            return question
        gen = self.generator
        if gen is not None:
            from rag.answer.generate import complete

            try:
                text = complete(gen, list(rewrite_messages(question, history)), max_tokens=64, temperature=0.0)
                text = text.strip().splitlines()[0].strip(' "“”') if text.strip() else ""
                if 3 <= len(text) <= 300:
                    return text
            except RagError as err:
                log.warning("query rewrite by the model failed (%s); using the heuristic", err)
        return rewrite_followup(question, history)

    # --- answering

    def ask(self, question: str, *, history: Sequence[Message] = (), files: Sequence[str] | None = None) -> Answer:
        """Blocking answer: the last event of `stream`."""
        answer = None
        for event in self.stream(question, history=history, files=files):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    def stream(self, question: str, *, history: Sequence[Message] = (),
               files: Sequence[str] | None = None) -> Iterator[str | Retraction | Answer]:
        """Yield answer text pieces as they are produced, then the final Answer.

        A `Retraction` in between says the text streamed so far was not an answer (the junk guard
        caught it late, or the model looped): forget it; the final Answer is always what to show.
        An empty or punctuation-only question raises EmptyQuestionError (rag.question); one longer
        than cfg.max_question_chars is searched and answered by its beginning, and the Answer keeps
        the whole question with a notice saying so. `files` limits retrieval to those documents.
        """
        from rag.question import check_question

        q = check_question(question, max_chars=self.cfg.max_question_chars)
        for event in self._stream(q.text, history, files):
            if isinstance(event, Answer) and q.truncated:
                event = replace(event, question=question.strip(), notices=(*event.notices, q.notice()))
            yield event

    def _stream(self, question: str, history: Sequence[Message],
                files: Sequence[str] | None) -> Iterator[str | Retraction | Answer]:
        from rag.answer.abstain import should_abstain, unmentioned

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        query = self.standalone_query(question, history)
        timings["rewrite"] = round(time.perf_counter() - t0, 4)
        hits, queries = self._retrieve(query, timings=timings, files=files)
        evidence = self._evidence(query, hits, queries)
        if history and query != question:
            # A small model's rewrite can lose the subject ("它的缺点呢？" → "它的缺点是什么"); the
            # heuristic rewrite is kept when its passages hold the stronger evidence.
            from rag.answer.prompt import rewrite_followup

            other = rewrite_followup(question, history)
            if other != query:
                other_hits, other_queries = self._retrieve(other, files=files)
                other_evidence = self._evidence(other, other_hits, other_queries)
                if other_evidence > evidence:
                    query, hits, evidence, queries = other, other_hits, other_evidence, other_queries
        generator = self.generator
        mode: Mode = "generative" if generator is not None else "extractive"
        timings["evidence"] = round(evidence, 4)
        missing = unmentioned(question, [h.chunk.text for h in hits]) if hits else ()
        weak = should_abstain(evidence, self.cfg.abstain_threshold)
        gate = self.gate_rule(question) if generator is not None else None
        if missing and self.cfg.refuse_unmentioned:  # the question names something no passage mentions
            yield from self._refusal(question, query, hits, timings, missing)
            return
        # A weak evidence score refuses at once, unless a gate that can overrule it will be asked.
        if not hits or (weak and (gate is None or gate.rescue is None)):
            yield from self._refusal(question, query, hits, timings, missing)
            return
        t1 = time.perf_counter()
        fallback = ""
        if generator is not None:
            from rag.answer.focus import focus_passages
            from rag.answer.prompt import build_prompt

            by_id: dict[str, str] = {}
            for q, group in self._by_language(query, hits, queries):  # a passage is cut by the query in its language
                cut = focus_passages(q, group, budget=self.cfg.passage_tokens, count_tokens=generator.count_tokens)
                by_id.update((h.chunk.id, text) for h, text in zip(group, cut))
            passages = [by_id[h.chunk.id] for h in hits]

            def prompt_for(retry: bool) -> Prompt:
                assert generator is not None
                return build_prompt(question, hits, history=history, count_tokens=generator.count_tokens,
                                    context_window=generator.context_window,
                                    answer_tokens=self.cfg.max_answer_tokens, retry=retry, passages=passages)

            prompt = prompt_for(False)
            if not prompt.sources:
                yield from self._refusal(question, query, hits, timings, missing)
                return
            if gate is not None:
                from rag.answer.gate import answerable_probability

                t_gate = time.perf_counter()
                p_yes = answerable_probability(generator, prompt, question)
                if p_yes is not None:
                    timings["gate"] = round(time.perf_counter() - t_gate, 4)
                    timings["answerable"] = round(p_yes, 4)
                if gate.refuses(p_yes, weak=weak):
                    yield from self._refusal(question, query, hits, timings, missing)
                    return
            sources = list(prompt.sources)
            raw, junk = yield from self._write(generator, prompt, question)
            if junk is not None:  # one more try with a firmer last line, then the extractive answer
                log.info("the model's answer was unusable (%s); asking again", junk)
                timings["first_try"] = round(time.perf_counter() - t1, 4)
                raw, junk = yield from self._write(generator, prompt_for(True), question)
            if junk is not None:
                log.info("the model's second answer was unusable too (%s); answering extractively", junk)
                fallback, mode, sources = junk, "extractive", list(hits)
                raw = self._quotes(query, hits)
                if raw:
                    yield raw
        else:
            sources = list(hits)
            raw = self._quotes(query, hits)
            if raw:
                yield raw
        timings["generate"] = round(time.perf_counter() - t1, 4)
        answer = self._finish(question, query, mode, raw, sources, hits, timings, fallback=fallback)
        if answer.mode == "generative" and _nothing_supported(answer):
            # Every claim the model wrote is unsupported by what it cites (a wrong figure, an answer
            # from outside the passages): quote the documents instead of showing that, when the
            # quotes are in the question's language. Across languages the lexical verifier cannot
            # tell a translation from an invention, so the answer stays, its sentences flagged.
            from rag.answer.guard import wrong_language

            quotes = self._quotes(query, hits)
            if quotes and not wrong_language(quotes, question):
                log.info("no sentence of the model's answer is supported; answering extractively")
                yield Retraction("unsupported")
                yield quotes
                answer = self._finish(question, query, "extractive", quotes, list(hits), hits, timings,
                                      fallback="unsupported")
        yield replace(answer, unmentioned=missing)

    def _refusal(self, question: str, query: str, hits: Sequence[Hit], timings: dict[str, float],
                 missing: tuple[str, ...] = ()) -> Iterator[str | Answer]:
        """The fixed refusal in the question's language, streamed then answered, with the nearest
        passages; `missing`: the question's identifiers no passage mentions, said in a notice."""
        from rag.answer.prompt import answer_language, refusal_text

        text = refusal_text(question)
        yield text
        answer = replace(self._answer(question, query, "refused", text, text, hits, timings), unmentioned=missing)
        if missing and self.cfg.refuse_unmentioned:
            names = ", ".join(missing)
            why = (f"检索到的段落都没有提到 {names}，所以没有作答。" if answer_language(question) == "zh" else
                   f"none of the retrieved passages mentions {names}, so the question was not answered")
            answer = replace(answer, notices=(*answer.notices, why))
        yield answer

    def _quotes(self, query: str, hits: Sequence[Hit]) -> str:
        """The extractive answer: the no-model mode, and what replaces a model answer not to be shown."""
        from rag.answer.extractive import extractive_answer

        return extractive_answer(query, list(hits), embed=self.embedder.embed)

    def _write(self, generator: Generator, prompt: Prompt,
               question: str) -> PyGenerator[str | Retraction, None, tuple[str, str | None]]:
        """Stream the model's answer through the junk guard: yields what is safe to show, returns
        (answer text, None) or ('', why it is junk). Generation stops as soon as junk is seen."""
        from rag.answer.guard import StreamGuard, heading_lines

        guard = StreamGuard(question=question, source_names=sorted({h.chunk.source for h in prompt.sources}),
                            headings=heading_lines([h.chunk.text for h in prompt.sources]
                                                   + [p for h in prompt.sources for p in h.chunk.heading_path]))
        pieces = generator.stream(list(prompt.messages), max_tokens=self.cfg.max_answer_tokens,
                                  temperature=self.cfg.temperature)
        try:
            for piece in pieces:
                out = guard.feed(piece)
                if out:
                    yield out
                if guard.done:
                    break
        finally:  # closing a generator releases the model's lock when we stop early
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        junk = guard.finish()
        if junk is not None:
            if guard.shown:
                yield Retraction(junk)
            return "", junk
        text = guard.answer
        if guard.shown > len(text):  # a loop began inside text already shown: show the answer again
            yield Retraction("repetition")
            yield text
        elif guard.pending:
            yield guard.pending
        return text, None

    def _finish(self, question: str, query: str, mode: Mode, raw: str, sources: list[Hit], hits: list[Hit],
                timings: dict[str, float], *, fallback: str = "") -> Answer:
        from rag.answer.align import align_citations
        from rag.answer.cite import resolve, sentence_citations
        from rag.answer.prompt import is_refusal, refusal_text
        from rag.answer.verify import check_sentences

        if not raw.strip() or is_refusal(raw):
            text = refusal_text(question)  # the model's own refusal, in the question's language
            return self._answer(question, query, "refused", text, raw, hits, timings)
        t0 = time.perf_counter()
        texts = [h.chunk.text for h in sources]
        realigned = 0
        aligned = raw
        verifier = self.verifier
        generator = self.generator if mode == "generative" and self.cfg.translate_queries else None
        if generator is not None:  # a sentence citing a passage in another language is read in both
            from rag.answer.translate import CrossLingualVerifier

            verifier = CrossLingualVerifier(verifier, generator)
        if mode == "generative":  # answer first, citations aligned after (extractive answers quote exactly)
            aligned, realigned = align_citations(raw, texts, verifier, threshold=self.cfg.support_threshold)
        invalid = resolve(raw, sources)[2]  # markers the model wrote that point to no source
        text, citations, _ = resolve(aligned, sources)
        checks = check_sentences(sentence_citations(text), texts, verifier, threshold=self.cfg.support_threshold)
        timings["verify"] = round(time.perf_counter() - t0, 4)
        notices = tuple(self.notices)
        if fallback == "unsupported":
            notices += ("no sentence of the model's answer was supported by the passages it cited; these are "
                        "sentences quoted from the documents instead",)
        elif fallback:
            notices += (f"the model's answer was unusable ({fallback}), twice; these are sentences quoted "
                        "from the documents instead",)
        return Answer(question=question, query=query, mode=mode, text=text, raw_text=raw, citations=citations,
                      sentences=checks, sources=tuple(sources), invalid_markers=invalid,
                      notices=notices, timings=timings, fallback=fallback, realigned=realigned)

    def _answer(self, question: str, query: str, mode: Mode, text: str, raw: str, hits: Sequence[Hit],
                timings: dict[str, float]) -> Answer:
        return Answer(question=question, query=query, mode=mode, text=text, raw_text=raw, sources=tuple(hits),
                      notices=tuple(self.notices), timings=timings)

    # --- collection management (used by the UI)

    def ingest(self, folder: str | Path, *, progress: Progress | None = None, rebuild: bool = False) -> IngestReport:
        from rag.ingest.build import ingest

        return ingest(folder, self.cfg, embedder=self.embedder, rebuild=rebuild, progress=progress)

    def status(self) -> Status:
        """Collection and model facts for the UI sidebar; an index that cannot be opened is
        reported in `Status.error` (the exception itself, for matching by class), not raised."""
        base = Status(index_dir=str(self.cfg.index_dir), notices=tuple(self.notices))
        try:
            idx = self.index
        except IndexStateError as err:
            return replace(base, error=err)
        return replace(base, documents=len(idx.files()), chunks=idx.n_chunks, embed_model=idx.embed_model,
                       generation=idx.generation, created=idx.manifest.get("created"),
                       dense_index=idx.manifest.get("dense_index"))


def _nothing_supported(answer: Answer) -> bool:
    """An answer that makes claims, none of which its citations support."""
    claims = [s for s in answer.sentences if s.reason != "no claim"]
    return bool(claims) and not any(s.supported for s in claims)


def answer_to_json(answer: Answer) -> dict[str, Any]:
    """The `--json` view of an Answer (rag.cli.ask, the eval cache)."""
    return {
        "question": answer.question, "query": answer.query, "mode": answer.mode, "answer": answer.text,
        "raw_text": answer.raw_text, "invalid_markers": answer.invalid_markers, "notices": list(answer.notices),
        "fallback": answer.fallback, "realigned": answer.realigned, "unmentioned": list(answer.unmentioned),
        "citations": [{"n": c.n, "chunk_id": c.chunk_id, "source": c.source, "pages": list(c.pages),
                       "page_labels": list(c.page_labels), "quote": c.quote} for c in answer.citations],
        "sentences": [{"text": s.text, "cited": list(s.cited), "support": round(s.support, 4),
                       "supported": s.supported, "reason": s.reason, "start": s.start, "end": s.end}
                      for s in answer.sentences],
        "sources": [{"n": i, "chunk_id": h.chunk.id, "source": h.chunk.source, "pages": list(h.chunk.pages),
                     "page_labels": list(h.chunk.page_labels), "score": round(h.score, 4),
                     "rerank_score": h.rerank_score}
                    for i, h in enumerate(answer.sources, 1)],
        "timings": answer.timings,
    }
