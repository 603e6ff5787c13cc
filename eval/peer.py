"""The peer in the harness: the plain recipe people start with, on the same retrieval and model.

`--peer naive` answers with LangChain RetrievalQA's default "stuff" prompt over the same top-k
passages the product retrieves, with the same GGUF model and sampling, and no checks at all: no
refusal gate, no junk guard, no citations, no verifier. Its answers are judged by the same
judge as the product's: the independent one (eval.judge, `--judge-model`), or else the offline
verifier, which is the product's own, so the product's faithfulness column then grades itself and
only the gold-based metrics (answer recall, refusals, language) compare like with like.
The prompt is LangChain's text, reproduced here so the peer needs no LangChain install.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from eval.datasets import Question

STUFF_PROMPT = ("Use the following pieces of context to answer the question at the end. If you don't know the "
                "answer, just say that you don't know, don't try to make up an answer.\n\n{context}\n\n"
                "Question: {question}\nHelpful Answer:")
_DONT_KNOW = re.compile(r"\b(?:i|we)\s+(?:do not|don't|dont)\s+know\b|不知道|无法回答|没有提到|未提及", re.IGNORECASE)


def stuff_messages(question: str, passages: Sequence[str]) -> list[dict[str, str]]:
    """The one user message of the recipe.

    >>> stuff_messages("Q?", ["a", "b"])[0]["content"].splitlines()[2:4]
    ['a', '']
    """
    return [{"role": "user", "content": STUFF_PROMPT.format(context="\n\n".join(passages), question=question)}]


def is_dont_know(text: str) -> bool:
    """The recipe's refusal ("I don't know"), or any refusal the product would recognise.

    >>> is_dont_know("I don't know."), is_dont_know("It is 4.4 GB.")
    (True, False)
    """
    from rag.answer.prompt import is_refusal

    return bool(_DONT_KNOW.search(text)) and len(text) < 300 or is_refusal(text)


def peer_question(pipe: Any, q: Question, *, independent: Any, max_tokens: int) -> dict:
    """One question through the recipe: a cache record in the shape eval.faithfulness scores."""
    from eval.faithfulness import RETRIEVAL_DEPTH, JudgeRule, independent_verdicts, language_ok
    from rag.answer.cite import sentence_citations
    from rag.answer.generate import complete

    query = pipe.standalone_query(q.question, [{"role": r, "content": c} for r, c in q.history])
    hits = pipe.retrieve(query, k=max(RETRIEVAL_DEPTH, pipe.cfg.top_k))
    passages = [h.chunk.text for h in hits[:pipe.cfg.top_k]]
    text = complete(pipe.generator, stuff_messages(q.question, passages), max_tokens=max_tokens,
                    temperature=pipe.cfg.temperature).strip()
    refused = not text or is_dont_know(text)
    offline = JudgeRule(pipe.verifier, pipe.cfg.support_threshold) if independent is None else None
    sentences, citations = [], []
    if not refused:
        from rag.answer.verify import is_claim

        for s in sentence_citations(text):
            row: dict[str, Any] = {"text": s.text, "cited": [], "support": 0.0, "reason": "",
                                   "supported": True,  # the recipe flags nothing: every sentence is shown as is
                                   "faithful": False}
            if is_claim(s.text):
                if offline is not None:  # the offline judge: the product's verifier over all passages
                    row["faithful"] = bool(offline(s.text, passages))
                else:
                    row.update(independent_verdicts(s.text, (), passages, independent))
                citations.append({"recall": False, "precise": []})  # nothing cited: no citation recall
            else:
                row["reason"] = "no claim"
                citations.append({"recall": None, "precise": []})
            sentences.append(row)
    return {
        "query": query, "mode": "peer-naive", "model_refused": refused, "evidence": 1.0,  # never gated
        "answer": "" if refused else text, "text": text,
        "retrieved": [[h.chunk.source, list(h.chunk.pages)] for h in hits],
        "sentences": sentences, "citations": citations, "reranked": False, "notices": [], "timings": {},
        "fallback": "", "lang_ok": language_ok(q.question, text), "judged": True,
    }
