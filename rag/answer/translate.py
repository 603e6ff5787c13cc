"""Cross-lingual search: a question in one language over documents in another.

An English question shares no word with a Chinese page, and the embedders that run here barely
bridge the two (multilingual-e5 prefers pages in the question's language). When the collection holds
documents in another language than the question's and a model is loaded, the model translates the
question into each such language (one short completion, ~0.7 s with the 0.5B model on 2 cores), every
version is searched, and the rankings are interleaved, the question's own language first: rank 1 of
the original, rank 1 of the translation, rank 2 of the original, ... (`interleave`).

Measured on the shipped sets with Qwen2.5-Coder-0.5B translating (MiniLM hybrid retrieval, page recall;
`python -m eval.retrieval --dataset crosslingual --model M.gguf`, the "translated" row):

| search | cross-lingual R@5: all / en→zh / zh→en | shipped set (same language) R@1 / R@5 |
|---|---|---|
| the question alone (before) | .479 / .333 / .605 | .853 / .961 |
| interleaved with the translation (chosen) | **.930 / .970 / .895** | .853 / .961 |

Other fusions, measured on the same translations (an earlier prompt, whose replies were usable less
often), cross-lingual R@1 / R@5 and shipped-set R@1 / R@5: the translation alone .782 / .930 and
.402 / .735; the max of the two lists' fused scores .592 / .894 and .725 / .961; reciprocal rank fusion
(k = 60) .451 / .866 and .667 / .931; choosing the list with the higher evidence score .578 / .761 and
.833 / .951. Interleaving is the one rule that costs same-language questions nothing; it gives up R@1
on cross-lingual ones (.239), which the answer prompt (five passages) does not need.

The checks read across languages too: an answer sentence citing a passage in another language is also
verified as the model translates it into that language (`CrossLingualVerifier`).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from rag.answer.generate import Generator, complete
from rag.answer.prompt import answer_language
from rag.answer.verify import Verifier
from rag.errors import RagError
from rag.records import Hit
from rag.text import CJK_CHAR

# The languages a question is translated into; the writer models (Qwen2.5) translate between these.
NAMES = {"en": "English", "zh": "Simplified Chinese", "ja": "Japanese", "ko": "Korean"}
SYSTEM = {
    "en": "You are a translator. Translate the user's question into English. Do not answer it. Keep numbers, units, "
          "names and model names as written. Output only the translation.",
    "zh": "你是翻译。把用户的问题翻译成简体中文，不要回答问题。数字、单位、名称和模型名保持原样。只输出译文。",
    "ja": "あなたは翻訳者です。ユーザーの質問を日本語に翻訳してください。質問には答えないでください。数字、単位、名前、"
          "モデル名はそのままにしてください。訳文だけを出力してください。",
    "ko": "당신은 번역가입니다. 사용자의 질문을 한국어로 번역하세요. 질문에 답하지 마세요. "
          "숫자, 단위, 이름, 모델 이름은 그대로 두세요. 번역문만 출력하세요.",
}
# The same for an answer sentence that cites a passage in another language (`CrossLingualVerifier`).
SENTENCE_SYSTEM = {
    "en": "You are a translator. Translate the user's sentence into English. Do not add or leave out anything. "
          "Keep numbers, units, names and model names as written. Output only the translation.",
    "zh": "你是翻译。把用户的句子翻译成简体中文，不要增加或省略任何内容。"
          "数字、单位、名称和模型名保持原样。只输出译文。",
}
PROMPTS = frozenset({*SYSTEM.values(), *SENTENCE_SYSTEM.values()})  # what a test double answers apart
MAX_TOKENS = 64
MAX_TARGETS = 2  # translations per question, at most (each is a completion)


def translation_messages(question: str, target: str) -> list[dict[str, str]]:
    """Chat messages asking for `question` in `target` (a key of NAMES), and nothing else. The
    instruction is written in the target language: measured with the 0.5B model on the cross-lingual
    set, 62 of 71 replies were usable translations, against 61 for an English instruction in the
    system message and 60 for one in the user message."""
    return [{"role": "system", "content": SYSTEM[target]}, {"role": "user", "content": question.strip()}]


def usable(translation: str, question: str, target: str) -> bool:
    """A translation worth searching: in the target's script, not the question again, not a ramble.

    >>> usable("Llama 2 7B 每个 token 需要多少 KV 缓存？", "How much KV cache per token?", "zh")
    True
    >>> usable("How much KV cache per token?", "How much KV cache per token?", "zh")
    False
    >>> usable("How much KV cache does it need?", "它需要多少 KV 缓存？", "en")
    True
    """
    t = translation.strip()
    if not t or t.casefold() == question.strip().casefold() or len(t) > 4 * len(question) + 40:
        return False
    return answer_language(t) == target if target != "en" else not CJK_CHAR.search(t)


def translate_query(generator: Generator, question: str, target: str) -> str | None:
    """The question in `target`, or None when the model's reply is not a usable translation."""
    return _translate(generator, translation_messages(question, target), question, target)


def translate_sentence(generator: Generator, sentence: str, target: str) -> str | None:
    """An answer sentence in `target` (English or Chinese), or None."""
    if target not in SENTENCE_SYSTEM:
        return None
    messages = [{"role": "system", "content": SENTENCE_SYSTEM[target]}, {"role": "user", "content": sentence.strip()}]
    return _translate(generator, messages, sentence, target)


def _translate(generator: Generator, messages: list[dict[str, str]], text: str, target: str) -> str | None:
    try:
        reply = complete(generator, messages, max_tokens=2 * MAX_TOKENS, temperature=0.0)
    except RagError:
        return None
    lines = [line.strip(" \"“”'") for line in reply.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if usable(first, text, target) else None


class CrossLingualVerifier:
    """A verifier that also reads a sentence in the language of the passages it cites.

    The offline verifier compares words and vectors, so an English sentence is never supported by the
    Chinese passage it translates. Where the evidence is in another language than the claim, the
    model translates the claim (not seeing the evidence) and the claim's support is the better of the
    two readings. Claims and evidence in one language cost nothing extra.
    """

    def __init__(self, inner: Verifier, generator: Generator) -> None:
        self.inner = inner
        self.generator = generator
        self.name = f"{inner.name}+translation"
        self._memo: dict[tuple[str, str], str | None] = {}

    def support(self, claim: str, evidence: Sequence[str]) -> float:
        score = float(self.inner.support(claim, evidence))
        others = sorted({chunk_language(e) for e in evidence} - {answer_language(claim)})
        for lang in others[:MAX_TARGETS]:
            key = (claim, lang)
            if key not in self._memo:
                self._memo[key] = translate_sentence(self.generator, claim, lang)
            translated = self._memo[key]
            if translated:
                score = max(score, float(self.inner.support(translated, evidence)))
        return score


def targets(question: str, present: Iterable[str]) -> list[str]:
    """The collection's languages other than the question's, that a question is translated into.

    >>> targets("What is GGUF?", {"en", "zh"}), targets("GGUF 是什么？", {"zh"}), targets("Hi", {"en"})
    (['zh'], [], [])
    """
    own = answer_language(question)
    return sorted(lang for lang in present if lang != own and lang in NAMES)[:MAX_TARGETS]


def chunk_language(text: str) -> str:
    """The language a chunk is written in, as `answer_language` names a question's."""
    return answer_language(text[:2000])


def interleave(rankings: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """Rank 1 of each ranking in turn, then rank 2, ...; a chunk keeps its first place only.

    >>> from rag.records import Chunk
    >>> hit = lambda i: Hit(chunk=Chunk(id=str(i), source="d", text="", start=0, end=0, pages=(1,)), score=0.0)
    >>> [h.chunk.id for h in interleave([[hit(1), hit(2), hit(3)], [hit(4), hit(1), hit(5)]], 5)]
    ['1', '4', '2', '3', '5']
    """
    out: list[Hit] = []
    seen: set[str] = set()
    depth = max((len(r) for r in rankings), default=0)
    for i in range(depth):
        for ranking in rankings:
            if i < len(ranking) and ranking[i].chunk.id not in seen:
                seen.add(ranking[i].chunk.id)
                out.append(ranking[i])
                if len(out) == k:
                    return out
    return out
