"""Does the cited source support the sentence? Verifiers score a claim against evidence, 0..1.

Three backends behind one small protocol, picked by `load_verifier(cfg.verifier)`:

- `OfflineVerifier` (default): no model beyond the embedder it is given. Lexical coverage of the
  claim's content tokens (stemmed Latin words, CJK bigrams), numbers and name-like words that must
  appear in the evidence, and — with an embedder — cosine similarity to the best evidence window,
  combined by a logistic model whose constants were fitted by `python -m eval.detector --fit`.
- `NLIVerifier`: an NLI cross-encoder (local path or Hugging Face cache); entailment probability,
  max over evidence windows.
- `LLMVerifier`: the local generator splits the sentence into atomic claims and judges each one
  "Supported" / "Not supported"; support is the share supported.

`check_sentences` turns scores into `SentenceCheck`s with a reason the UI can show.

    >>> missing_numbers("It scored 4.8 in 2,000 tests.", ["A score of 4.9 over 2000 tests."])
    ('4.8',)

Deliberately skipped: Chinese numerals and names (CJK claims are checked by bigram coverage and
Arabic digits only), coreference across sentences, and contradiction detection beyond numbers and
names (the offline verifier measures support, it does not reason).
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from rag.errors import ConfigError, ModelNotFoundError, RagError
from rag.records import SentenceCheck
from rag.index.tokenize import CJK_CHARS, STOPWORDS, query_language, tokenize


@runtime_checkable
class Verifier(Protocol):
    name: str

    def support(self, claim: str, evidence: Sequence[str]) -> float:
        """0..1: how well the evidence (one or more source texts) supports the claim."""
        ...


# ---------------------------------------------------------------------------------------------
# Pure text helpers

# Words that carry no checkable claim on their own: answers such as "Yes." or "In summary:".
_NON_CLAIM = frozenset("yes also however thus therefore summary overall conclus addit furthermor "
                       "moreov final answer note".split())

# A sentence ends at . ! ? followed by space, at CJK full stops, at line breaks, and where a
# lower-case word runs straight into a capital ("century.First": scraped text glues sentences).
_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)|(?<=[。！？；])|\n+|(?<=[a-z]{2}[.!?])(?=[A-Z][a-z])")

_NUM = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)*)(?:s|st|nd|rd|th)?(?![\d])")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70",
                      "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000",
                      "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5"})
_WORD_RE = re.compile(r"[^\W\d_][\w'’-]*")
_CJK_TOKEN = re.compile(f"[{CJK_CHARS}]")


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, stripped; CJK full stops and glued sentences are cut too.

    >>> split_sentences("Arthur's Magazine was American.First for Women is German. 北京是首都。它很大")
    ["Arthur's Magazine was American.", 'First for Women is German.', '北京是首都。', '它很大']
    """
    return [s.strip() for s in _SENT_SPLIT.split(text) if s and s.strip()]


def windows(text: str, *, size: int = 2) -> list[str]:
    """Each sentence and each run of up to `size` consecutive sentences: what a claim is compared to.

    >>> windows("A b. C d. E f.")
    ['A b.', 'C d.', 'E f.', 'A b. C d.', 'C d. E f.']
    """
    sents = split_sentences(text)
    out = list(sents)
    for n in range(2, size + 1):
        out += [" ".join(sents[i:i + n]) for i in range(len(sents) - n + 1)]
    return out or [text]


def content_tokens(text: str) -> list[str]:
    """Stemmed content words and CJK bigrams, without words that claim nothing on their own.

    >>> content_tokens("Yes, the magazines were founded in 1844.")
    ['magazin', 'found', '1844']
    """
    return [t for t in tokenize(text) if t not in _NON_CLAIM]


def numbers(text: str) -> list[str]:
    """Numbers written with digits, normalised: thousands separators dropped, '1990s' → '1990'.

    >>> numbers("In the 1990s, 2,000 people paid $4.80 on May 3rd.")
    ['1990', '2000', '4.8', '3']
    """
    text = unicodedata.normalize("NFKC", text)
    return [_norm_number(m.group(1)) for m in _NUM.finditer(text)]


def _norm_number(raw: str) -> str:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", raw):
        raw = raw.replace(",", "")
    raw = raw.replace(",", ".") if re.fullmatch(r"\d+,\d{1,2}", raw) else raw  # European decimal
    if "." in raw and re.fullmatch(r"\d+\.\d+", raw):
        raw = raw.rstrip("0").rstrip(".")
    return raw


def _evidence_numbers(text: str) -> set[str]:
    found = set(numbers(text))
    for part in re.split(r"[,.]", " ".join(numbers(text))):
        found.add(part)  # "1844–1846" or "3.5.1" parts, for claims that quote one of them
    words = re.findall(r"[a-z]+", unicodedata.normalize("NFKC", text).lower())
    found.update(_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS)
    return found


def missing_numbers(claim: str, evidence: Sequence[str]) -> tuple[str, ...]:
    """Numbers in the claim that appear in none of the evidence texts (digits or number words)."""
    have: set[str] = set()
    for text in evidence:
        have |= _evidence_numbers(text)
    return tuple(dict.fromkeys(n for n in numbers(claim) if n not in have))


def names(text: str) -> list[str]:
    """Name-like words: capitalised words that do not start a sentence, and acronyms anywhere.

    >>> names("The film starred Scarlett Johansson and was shown by the BBC.")
    ['Scarlett', 'Johansson', 'BBC']
    """
    out: list[str] = []
    for sent in split_sentences(unicodedata.normalize("NFKC", text)):
        for i, m in enumerate(_WORD_RE.finditer(sent)):
            word = m.group().strip("'’-")
            if len(word) < 2 or word.lower() in STOPWORDS or word.lower() in _NON_CLAIM:
                continue
            acronym = word.isupper() and sum(c.isalpha() for c in word) >= 2
            if acronym or (i > 0 and word[0].isupper()):
                out.append(word)
    return list(dict.fromkeys(out))


def missing_names(claim: str, evidence: Sequence[str]) -> tuple[str, ...]:
    """Name-like words of the claim found in none of the evidence texts (case-insensitive, stemmed)."""
    if query_language(claim) == "cjk":
        return ()
    lowered = " ".join(unicodedata.normalize("NFKC", t).lower() for t in evidence)
    stems = set(tokenize(lowered))
    out = []
    for name in names(claim):
        low = name.lower()
        if re.search(r"(?<!\w)" + re.escape(low) + r"(?!\w)", lowered):
            continue
        toks = tokenize(low)
        if toks and all(t in stems for t in toks):
            continue
        out.append(name)
    return tuple(out)


def coverage(claim_tokens: Sequence[str], evidence_tokens: Iterable[str]) -> float:
    """Share of the claim's distinct tokens found in the evidence; 1.0 for a claim without tokens.

    >>> coverage(["capit", "franc", "pari"], ["pari", "capit", "citi"])
    0.6666666666666666
    """
    claim = set(claim_tokens)
    if not claim:
        return 1.0
    return len(claim & set(evidence_tokens)) / len(claim)


def bigram_coverage(claim_tokens: Sequence[str], evidence_tokens: Sequence[str]) -> float:
    """Share of the claim's adjacent token pairs that are adjacent (either order) in the evidence.

    Coverage alone accepts a claim that reuses the source's words in a new relation
    ("Nixon named Groening"); pairs keep some of the word order. 1.0 when the claim has < 2 tokens.
    """
    pairs = {(a, b) for a, b in zip(claim_tokens, claim_tokens[1:]) if a != b}
    if not pairs:
        return 1.0
    have = set(zip(evidence_tokens, evidence_tokens[1:]))
    have |= {(b, a) for a, b in have}
    return len(pairs & have) / len(pairs)


# ---------------------------------------------------------------------------------------------
# Offline verifier

@dataclass(frozen=True)
class SupportFeatures:
    """What the offline verifier looks at, each 0..1 except `unsupported_tokens` (a count) and n_tokens."""

    coverage: float  # claim tokens found anywhere in the evidence
    window_coverage: float  # … found in the single best window (1-2 sentences)
    bigram_coverage: float  # claim token pairs found adjacent in the evidence
    unsupported_tokens: float  # claim tokens found nowhere (a CJK bigram counts one half)
    number_missing: float  # share of the claim's numbers missing from the evidence
    name_missing: float  # share of the claim's name-like words missing
    similarity: float | None  # cosine to the best window/whole text; None without a usable embedder
    n_tokens: int

    def vector(self) -> list[float]:
        """Inputs of the logistic model, in the order of the weight tuples below."""
        base = [self.coverage, self.window_coverage, self.bigram_coverage,
                math.log1p(self.unsupported_tokens), self.number_missing, self.name_missing]
        # Only similarity above 0.5 counts: below it MiniLM pairs are topical, not paraphrases, and
        # a short correct answer ("Delhi") is far from any sentence.
        return base + ([max(self.similarity - 0.5, 0.0)] if self.similarity is not None else [])


# Logistic weights (features in SupportFeatures.vector order, then the intercept). Fitted by
# `python -m eval.detector --fit`: L2-regularised logistic regression on the first halves (seeded
# shuffle, seed 0, grouped by context) of HaluEval QA and BEGIN dev, each set weighing the same;
# the second halves are held out. Weights are bounded to the sign a support signal must have
# (coverage and similarity up, misses down) so a data-set quirk cannot invert one — HaluEval's
# correct answers are short spans, which makes raw similarity look like a sign of hallucination.
WEIGHTS_LEXICAL = (0.0, 0.942, 2.214, -2.323, -0.961, -1.627, -0.751)
WEIGHTS_EMBED = (0.0, 0.824, 2.213, -2.328, -0.958, -1.623, 0.458, -0.765)
# A number that is not in the source is the most harmful hallucination; the fit sees few of them.
NUMBER_PENALTY = 0.5  # support is multiplied by this when any claimed number is missing


class OfflineVerifier:
    """Lexical + numeric + name checks, plus embedding similarity when an embedder is given."""

    name = "offline"

    def __init__(self, embedder=None, *, cache_size: int = 4096) -> None:
        self.embedder = embedder
        self._cache: dict[str, np.ndarray] = {}  # text → embedding; evidence repeats across sentences
        self._cache_size = cache_size

    def support(self, claim: str, evidence: Sequence[str]) -> float:
        feats = self.features(claim, evidence)
        if feats.n_tokens == 0 and feats.number_missing == 0:
            return 1.0  # nothing checkable is claimed ("Yes.", "In summary:")
        return score_features(feats)

    def features(self, claim: str, evidence: Sequence[str]) -> SupportFeatures:
        claim_toks = content_tokens(claim)
        texts = [t for t in evidence if t and t.strip()]
        ev_toks_seq = [tokenize(t) for t in texts]
        ev_toks = {t for toks in ev_toks_seq for t in toks}
        wins = [w for t in texts for w in windows(t)]
        win_cov = max((coverage(claim_toks, tokenize(w)) for w in wins), default=0.0) if claim_toks else 1.0
        found = set(claim_toks) & ev_toks
        nums = numbers(claim)
        miss_nums = missing_numbers(claim, texts)
        claim_names = names(claim) if query_language(claim) != "cjk" else []
        miss_names = missing_names(claim, texts)
        return SupportFeatures(
            coverage=coverage(claim_toks, ev_toks) if texts else 0.0,
            window_coverage=win_cov if texts else 0.0,
            bigram_coverage=max((bigram_coverage(claim_toks, toks) for toks in ev_toks_seq), default=0.0),
            unsupported_tokens=_unsupported_count(set(claim_toks) - found),
            number_missing=len(miss_nums) / len(set(nums)) if nums else 0.0,
            name_missing=len(miss_names) / len(claim_names) if claim_names else 0.0,
            similarity=self._similarity(claim, texts, wins),
            n_tokens=len(set(claim_toks)),
        )

    def _similarity(self, claim: str, texts: list[str], wins: list[str]) -> float | None:
        emb = self.embedder
        if emb is None or not texts:
            return None
        langs = getattr(emb, "languages", None)
        if langs is not None and query_language(claim) not in langs:
            return None  # an English-only model says nothing useful about a Chinese claim
        cands = list(dict.fromkeys(wins + texts))
        vecs = self._embed([claim] + cands)
        return float(np.clip(np.max(vecs[1:] @ vecs[0]), 0.0, 1.0))

    def _embed(self, texts: list[str]) -> np.ndarray:
        have = {t: self._cache[t] for t in texts if t in self._cache}
        todo = [t for t in dict.fromkeys(texts) if t not in have]
        if todo:
            have.update(zip(todo, np.asarray(self.embedder.embed(todo), dtype=np.float32)))
            if len(self._cache) + len(todo) > self._cache_size:
                self._cache.clear()  # crude but bounded; evidence repeats within one answer
            self._cache.update((t, have[t]) for t in todo)
        return np.stack([have[t] for t in texts])


def _unsupported_count(tokens: set[str]) -> float:
    """Missing tokens; a CJK bigram counts one half, since one new character breaks two bigrams.

    >>> _unsupported_count({"mumbai", "中国", "国的"})
    2.0
    """
    return sum(0.5 if _CJK_TOKEN.match(t) else 1.0 for t in tokens)


def score_features(feats: SupportFeatures, *, weights: Sequence[float] | None = None) -> float:
    """The logistic combination: sigmoid(w·x + b), with the number penalty applied after."""
    x = feats.vector()
    w = weights if weights is not None else (WEIGHTS_EMBED if feats.similarity is not None else WEIGHTS_LEXICAL)
    z = float(np.dot(w[:-1], x) + w[-1])
    p = 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))
    return p * NUMBER_PENALTY if feats.number_missing > 0 else p


# ---------------------------------------------------------------------------------------------
# NLI cross-encoder

class NLIVerifier:
    """Entailment probability from an NLI cross-encoder, max over evidence windows.

    Premise = an evidence window (up to 3 sentences, and the whole text when short), hypothesis =
    the claim. The entailment column comes from `config.id2label`; a single-logit model (HHEM-style
    "consistency" scores) is read through a sigmoid.
    """

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 16, max_length: int = 512) -> None:
        import os

        from rag.models.embed import resolve_model_path

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:  # before importing torch: a missing model should fail fast
            path = resolve_model_path(model)
        except ModelNotFoundError as err:
            raise ModelNotFoundError(str(err).replace("embedding model", "NLI model")) from err
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as err:
            from rag.errors import MissingDependencyError

            raise MissingDependencyError("sentence-transformers", "core") from err
        try:
            self.model = CrossEncoder(path, device=device, max_length=max_length)
        except Exception as err:  # noqa: BLE001 - surface every loading failure the same way
            raise ModelNotFoundError(
                f"could not load NLI model {model!r} from {path}: {err} "
                "(fix: pass a sequence-classification NLI model, or use verifier='offline')") from err
        self.name = f"nli:{model}"
        self.batch_size = batch_size
        self.entail_index = entailment_index(_model_config(self.model))

    def support(self, claim: str, evidence: Sequence[str]) -> float:
        premises = []
        for text in evidence:
            if text and text.strip():
                premises += windows(text, size=3)
                if len(text) < 2000:
                    premises.append(text)
        premises = list(dict.fromkeys(premises))
        if not premises:
            return 0.0
        import torch

        logits = np.asarray(self.model.predict([(p, claim) for p in premises], batch_size=self.batch_size,
                                               activation_fn=torch.nn.Identity(), show_progress_bar=False),
                            dtype=np.float64)
        return float(np.max(entailment_probs(logits, self.entail_index)))


def _model_config(cross_encoder):
    cfg = getattr(cross_encoder, "config", None)
    if cfg is None:
        cfg = getattr(getattr(cross_encoder, "model", None), "config", None)
    if cfg is None:
        raise ModelNotFoundError("the NLI model has no config with id2label (fix: use a Hugging Face "
                                 "sequence-classification model)")
    return cfg


def entailment_index(config) -> int | None:
    """Column of the entailment label in `config.id2label`; None for a single-logit model.

    >>> from types import SimpleNamespace
    >>> entailment_index(SimpleNamespace(id2label={0: "contradiction", 1: "entailment", 2: "neutral"}))
    1
    """
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if len(id2label) <= 1:
        return None
    for i, label in sorted(id2label.items()):
        low = label.lower()
        if low.startswith("entail") or low in ("supported", "consistent"):
            return i
    raise ModelNotFoundError(f"the NLI model's labels {sorted(id2label.values())} name no entailment class "
                             "(fix: use an NLI model whose config.id2label has 'entailment')")


def entailment_probs(logits: np.ndarray, index: int | None) -> np.ndarray:
    """Softmax column `index` of (n, labels) logits; sigmoid for single-logit (n,) or (n, 1) output."""
    logits = np.asarray(logits, dtype=np.float64)
    if index is None:
        return 1.0 / (1.0 + np.exp(-logits.reshape(-1)))
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, index] / e.sum(axis=1)


# ---------------------------------------------------------------------------------------------
# LLM judge

_EXTRACT_PROMPT = (
    "Split the sentence into short, self-contained factual claims. Write one claim per line and "
    "nothing else. If the sentence states no fact, write NONE.\n\nSentence: {sentence}")
_JUDGE_PROMPT = (
    "Evidence:\n{evidence}\n\nClaim: {claim}\n\nIs the claim fully supported by the evidence above? "
    "Answer with exactly one of: Supported, Not supported.")


class LLMVerifier:
    """Atomic claims judged one by one by the local generator (FActScore-style); support = share supported.

    `generator` is anything with `stream(messages, max_tokens=..., temperature=...)` yielding text.
    """

    name = "llm"

    def __init__(self, generator, *, max_claims: int = 6) -> None:
        self.generator = generator
        self.max_claims = max_claims

    def _ask(self, prompt: str, max_tokens: int) -> str:
        messages = [{"role": "system", "content": "You check facts carefully and answer tersely."},
                    {"role": "user", "content": prompt}]
        return "".join(self.generator.stream(messages, max_tokens=max_tokens, temperature=0))

    def claims(self, sentence: str) -> list[str]:
        return parse_claims(self._ask(_EXTRACT_PROMPT.format(sentence=sentence), 256), sentence)[: self.max_claims]

    def support(self, claim: str, evidence: Sequence[str]) -> float:
        claims = self.claims(claim)
        if not claims:
            return 1.0  # the judge found no factual claim in the sentence
        text = "\n\n".join(t.strip() for t in evidence if t and t.strip())
        verdicts = [parse_verdict(self._ask(_JUDGE_PROMPT.format(evidence=text, claim=c), 8)) for c in claims]
        return sum(verdicts) / len(verdicts)


def parse_claims(text: str, sentence: str) -> list[str]:
    """Claim lines from the model's reply, bullets and numbering stripped; the sentence if none parse.

    >>> parse_claims("1. Paris is in France.\\n- It is the capital.", "s")
    ['Paris is in France.', 'It is the capital.']
    >>> parse_claims("NONE", "In summary:")
    []
    """
    if text.strip().upper().startswith("NONE"):
        return []
    out = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip() for line in text.splitlines()]
    out = [c for c in out if c and not c.lower().startswith(("claims:", "here are"))]
    return out or [sentence]


def parse_verdict(text: str) -> int:
    """1 for 'Supported', 0 for 'Not supported' or anything unclear (unclear is not support).

    >>> parse_verdict(" Supported."), parse_verdict("Not supported"), parse_verdict("unsupported")
    (1, 0, 0)
    """
    low = text.strip().lower()
    if low.startswith(("not", "un", "no")) or "not supported" in low:
        return 0
    return 1 if low.startswith(("support", "yes")) else 0


# ---------------------------------------------------------------------------------------------
# Factory and sentence checks

def load_verifier(spec: str, *, embedder=None, generator=None) -> Verifier:
    """'offline' | 'nli:<hf name or path>' | 'llm' → a Verifier; errors say what to set instead."""
    spec = (spec or "").strip()
    if spec == "offline":
        return OfflineVerifier(embedder)
    if spec.startswith("nli:"):
        name = spec[4:].strip()
        if not name:
            raise ConfigError("verifier 'nli:' needs a model, e.g. 'nli:cross-encoder/nli-deberta-v3-small' "
                              "(a local path or a model in the Hugging Face cache)")
        return NLIVerifier(name)
    if spec == "llm":
        if generator is None or not callable(getattr(generator, "stream", None)):
            raise RagError("verifier 'llm' needs a local generator (fix: set llm_model to a .gguf file, "
                           "or use verifier='offline')")
        return LLMVerifier(generator)
    raise ConfigError(f"unknown verifier {spec!r} (known: 'offline', 'nli:<model>', 'llm')")


def is_claim(text: str) -> bool:
    """False for connective sentences such as 'In summary:' — fewer than 3 content tokens, no digits, no names."""
    return len(set(content_tokens(text))) >= 3 or bool(numbers(text)) or bool(names(text))


def check_sentences(sentences: Sequence[tuple[str, tuple[int, ...]]], sources: Sequence[str],
                    verifier: Verifier, *, threshold: float) -> tuple[SentenceCheck, ...]:
    """One SentenceCheck per (text, cited markers); sources[n-1] is the text of source [n].

    - uncited, no claim ('In summary:') → supported, reason 'no claim';
    - uncited claim → unsupported, reason 'no citation' (+ 'supported by [k]' when a source backs it;
      `support` is the best single source's, so the UI can say so);
    - cited → scored against the cited sources together; flagged below `threshold`, or when a
      number is missing from them whatever the verifier says (a wrong figure is never fine).
    """
    out = []
    for text, cited in sentences:
        valid = tuple(n for n in dict.fromkeys(cited) if 1 <= n <= len(sources))
        if not cited:
            if not is_claim(text):
                out.append(SentenceCheck(text, (), 1.0, True, "no claim"))
                continue
            scores = [verifier.support(text, [s]) for s in sources]
            best = max(range(len(scores)), key=scores.__getitem__) if scores else -1
            s = scores[best] if scores else 0.0
            reason = f"no citation (supported by [{best + 1}])" if scores and s >= threshold else "no citation"
            out.append(SentenceCheck(text, (), s, False, reason))
            continue
        if not valid:
            bad = ", ".join(f"[{n}]" for n in cited)
            out.append(SentenceCheck(text, tuple(cited), 0.0, False, f"cites missing source {bad}"))
            continue
        evidence = [sources[n - 1] for n in valid]
        s = float(verifier.support(text, evidence))
        where = "cited source" + ("s" if len(valid) > 1 else "")
        miss = missing_numbers(text, evidence)
        if miss:
            label = "number" if len(miss) == 1 else "numbers"
            out.append(SentenceCheck(text, tuple(cited), s, False, f"{label} {', '.join(miss)} not in {where}"))
            continue
        if s >= threshold:
            out.append(SentenceCheck(text, tuple(cited), s, True, ""))
            continue
        gone = missing_names(text, evidence)
        if gone:
            reason = f"{'name' if len(gone) == 1 else 'names'} {', '.join(gone)} not in {where}"
        elif verifier.name == "offline":
            reason = f"low overlap with {where} ({s:.2f})"
        else:
            reason = f"not supported by {where} ({s:.2f})"
        out.append(SentenceCheck(text, tuple(cited), s, False, reason))
    return tuple(out)
