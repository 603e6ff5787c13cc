"""Verifiers, sentence checks and the abstention score, with a deterministic fake embedder."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from rag.answer.abstain import EvidenceFeatures, evidence_score, features_score, hit_features, should_abstain
from rag.answer.verify import (
    LLMVerifier,
    NLIVerifier,
    OfflineVerifier,
    Verifier,
    check_sentences,
    entailment_index,
    entailment_probs,
    is_claim,
    load_verifier,
    missing_names,
    missing_numbers,
    names,
    numbers,
    parse_claims,
    parse_verdict,
    split_sentences,
    windows,
)
from rag.errors import ConfigError, ModelNotFoundError, RagError
from rag.records import Chunk, Hit


class HashEmbedder:
    """Bag of lower-cased words hashed into 64 dimensions, L2-normalised: same words, same vector."""

    name = "hash-64"
    dim = 64
    languages = None

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def count_tokens(self, text):
        return len(text.split())


SOURCE = ("The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the company of "
          "Gustave Eiffel and completed in 1889. The tower is 330 metres tall and was the tallest "
          "structure in the world until 1930.")
SOURCES = [SOURCE, "Rust is a programming language that guarantees memory safety without a garbage collector."]


@pytest.fixture(params=["lexical", "embedder"])
def verifier(request) -> OfflineVerifier:
    return OfflineVerifier(HashEmbedder() if request.param == "embedder" else None)


# --- helpers ----------------------------------------------------------------------------------

def test_numbers_are_normalised():
    assert numbers("2,000 fans in the 1990s paid 4.80 on the 3rd") == ["2000", "1990", "4.8", "3"]


@pytest.mark.parametrize("claim, missing", [
    ("It was completed in 1889.", ()),
    ("It was completed in 1899.", ("1899",)),
    ("It is 330 metres tall.", ()),
    ("It has three decks and stands 4.8 km away.", ("4.8",)),
])
def test_missing_numbers(claim, missing):
    assert missing_numbers(claim, [SOURCE]) == missing


def test_number_words_in_evidence_match_digits():
    assert missing_numbers("There are 3 decks.", ["The tower has three decks."]) == ()


def test_names_skip_sentence_starts_and_stopwords():
    assert names("The tower was designed by Gustave Eiffel for the EXPO. Paris loved it.") == \
        ["Gustave", "Eiffel", "EXPO"]
    assert missing_names("It was designed by Gustave Eiffel and Nouguier.", [SOURCE]) == ("Nouguier",)


def test_split_sentences_and_windows():
    assert split_sentences("One fact here.Second fact there. 第三句。第四句") == \
        ["One fact here.", "Second fact there.", "第三句。", "第四句"]
    assert windows("A b. C d.") == ["A b.", "C d.", "A b. C d."]


def test_is_claim():
    assert not is_claim("In summary:")
    assert not is_claim("Yes.")
    assert is_claim("It was completed in 1889.")
    assert is_claim("The tower is made of wrought iron.")


# --- offline verifier ---------------------------------------------------------------------------

def test_offline_verifier_satisfies_protocol(verifier):
    assert isinstance(verifier, Verifier)
    assert verifier.name == "offline"


def test_supported_claim_beats_wrong_number_and_wrong_entity(verifier):
    good = verifier.support("The Eiffel Tower in Paris was completed in 1889.", [SOURCE])
    wrong_number = verifier.support("The Eiffel Tower in Paris was completed in 1899.", [SOURCE])
    wrong_entity = verifier.support("The Eiffel Tower in Berlin was completed in 1889.", [SOURCE])
    unrelated = verifier.support("Bananas are rich in potassium and grow in tropical climates.", [SOURCE])
    assert good > 0.5
    assert good > wrong_number and good > wrong_entity
    assert max(wrong_number, unrelated) < 0.5
    assert 0.0 <= unrelated <= 1.0


def test_paraphrase_scores_above_unrelated(verifier):
    para = verifier.support("Gustave Eiffel's company designed the tower, which was completed in 1889.", [SOURCE])
    other = verifier.support("Gustave Eiffel also designed a bridge over the Douro in Porto.", [SOURCE])
    assert para > other


def test_support_uses_every_evidence_text(verifier):
    claim = "Rust guarantees memory safety without a garbage collector."
    assert verifier.support(claim, SOURCES) > verifier.support(claim, SOURCES[:1])


def test_empty_evidence_is_no_support(verifier):
    assert verifier.support("The tower is 330 metres tall.", []) < 0.2


def test_chinese_claim_support():
    v = OfflineVerifier(None)
    src = "北京是中华人民共和国的首都，也是全国的政治和文化中心。"
    good = v.support("北京是中华人民共和国的首都。", [src])
    paraphrase = v.support("北京是中国的首都和文化中心。", [src])
    bad = v.support("上海是一座以金融业闻名的港口城市。", [src])
    assert good > 0.5 > bad
    assert good > paraphrase > bad


def test_embedding_cache_is_bounded():
    v = OfflineVerifier(HashEmbedder(), cache_size=8)
    for i in range(5):
        v.support(f"Claim number {i} about towers in Paris.", [SOURCE])
    assert len(v._cache) <= 8 + 10  # one call may add its own texts after a clear


# --- sentence checks --------------------------------------------------------------------------

def test_check_sentences_reasons():
    v = OfflineVerifier(None)
    checks = check_sentences([
        ("The Eiffel Tower in Paris was completed in 1889.", (1,)),
        ("It is 4.8 kilometres tall.", (1,)),
        ("The tower is 330 metres tall.", ()),
        ("In summary:", ()),
        ("Rust guarantees memory safety.", (7,)),
        ("The tower was designed by Gustave Eiffel together with Koechlin and Nouguier.", (1,)),
    ], SOURCES, v, threshold=0.5)
    ok, number, uncited, connective, missing_source, name = checks
    assert ok.supported and ok.reason == "" and ok.cited == (1,)
    assert not number.supported and number.reason == "number 4.8 not in cited source"
    assert not uncited.supported and uncited.reason.startswith("no citation")
    assert "[1]" in uncited.reason and uncited.support > 0.5  # backed by source 1, just not cited
    assert connective.supported and connective.reason == "no claim"
    assert not missing_source.supported and "[7]" in missing_source.reason
    assert not name.supported and "Koechlin" in name.reason


def test_uncited_unsupported_claim():
    [check] = check_sentences([("Bananas grow in tropical climates.", ())], SOURCES, OfflineVerifier(None),
                              threshold=0.5)
    assert check.reason == "no citation" and not check.supported


def test_low_overlap_reason_shows_score():
    [check] = check_sentences([("Rust programs compile quickly on embedded microcontrollers.", (2,))], SOURCES,
                              OfflineVerifier(None), threshold=0.5)
    assert not check.supported
    assert re.fullmatch(r"low overlap with cited source \(0\.\d\d\)", check.reason)


def test_cited_sources_are_pooled():
    claim = "The Eiffel Tower was completed in 1889, and Rust has no garbage collector."
    [one] = check_sentences([(claim, (1,))], SOURCES, OfflineVerifier(None), threshold=0.5)
    [both] = check_sentences([(claim, (1, 2))], SOURCES, OfflineVerifier(None), threshold=0.5)
    assert both.support > one.support


# --- other verifiers and the factory ---------------------------------------------------------------

class FakeGenerator:
    """Answers the claim-splitting prompt with fixed claims, and judges by substring in the evidence."""

    def __init__(self, claims: str):
        self.claims = claims
        self.calls = 0

    def stream(self, messages, max_tokens=256, temperature=0.0):
        self.calls += 1
        prompt = messages[-1]["content"]
        if prompt.startswith("Split"):
            yield from self.claims.splitlines(keepends=True)
            return
        evidence = prompt.split("Claim:")[0]
        claim = prompt.split("Claim:")[1].split("\n")[0].strip().rstrip(".")
        yield "Supported" if claim.lower() in evidence.lower() else "Not supported"


def test_llm_verifier_share_of_supported_claims():
    gen = FakeGenerator("1. the tower is 330 metres tall\n2. the tower is painted green\n")
    v = LLMVerifier(gen)
    assert v.support("The tower is 330 metres tall and painted green.", [SOURCE]) == 0.5
    assert gen.calls == 3


def test_llm_verifier_no_claims_is_supported():
    assert LLMVerifier(FakeGenerator("NONE")).support("In summary:", [SOURCE]) == 1.0


def test_parse_helpers():
    assert parse_claims("- a\n* b\n3) c", "s") == ["a", "b", "c"]
    assert parse_claims("", "the sentence") == ["the sentence"]
    assert [parse_verdict(t) for t in ("Supported", "Not supported", "NOT SUPPORTED.", "maybe")] == [1, 0, 0, 0]


def test_load_verifier_specs():
    emb = HashEmbedder()
    v = load_verifier("offline", embedder=emb)
    assert isinstance(v, OfflineVerifier) and v.embedder is emb
    assert isinstance(load_verifier("llm", generator=FakeGenerator("NONE")), LLMVerifier)


@pytest.mark.parametrize("spec, error", [
    ("", ConfigError), ("bogus", ConfigError), ("nli:", ConfigError), ("llm", RagError),
    ("nli:/no/such/model-dir", ModelNotFoundError),
])
def test_load_verifier_errors(spec, error):
    with pytest.raises(error):
        load_verifier(spec)


def test_entailment_label_mapping():
    from types import SimpleNamespace

    assert entailment_index(SimpleNamespace(id2label={"0": "ENTAILMENT", "1": "NEUTRAL", "2": "CONTRADICTION"})) == 0
    assert entailment_index(SimpleNamespace(id2label={0: "LABEL_0"})) is None
    with pytest.raises(ModelNotFoundError):
        entailment_index(SimpleNamespace(id2label={0: "LABEL_0", 1: "LABEL_1"}))
    probs = entailment_probs(np.array([[0.0, np.log(3.0)], [0.0, 0.0]]), 1)
    assert probs == pytest.approx([0.75, 0.5])
    assert entailment_probs(np.array([0.0]), None) == pytest.approx([0.5])


def test_nli_verifier_with_tiny_local_model(tmp_path):
    """A random 3-label BERT saved on the spot: checks loading, label mapping and the max over windows."""
    import string

    pytest.importorskip("torch")
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase + string.digits + ".,")
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=512, num_labels=3,
                        id2label={0: "contradiction", 1: "entailment", 2: "neutral"},
                        label2id={"contradiction": 0, "entailment": 1, "neutral": 2})
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=True).save_pretrained(tmp_path)

    def hub_settings() -> dict[str, str]:  # torch itself sets KMP_* variables on import: not ours to check
        return {k: v for k, v in os.environ.items() if k.startswith(("HF_", "TRANSFORMERS_"))}

    before = hub_settings()
    v = load_verifier(f"nli:{tmp_path}")
    assert hub_settings() == before  # local files are read as such; the process's HF_HUB_OFFLINE is not ours to set
    assert isinstance(v, NLIVerifier) and v.entail_index == 1 and v.name == f"nli:{tmp_path}"
    claim = "the tower is tall."
    s = v.support(claim, ["the tower is tall. it is in paris."])
    single = v.support(claim, ["the tower is tall."])
    # Windows include the single sentence and support is their max; padding moves the last digits.
    assert 0.0 <= single <= s + 1e-6 <= 1.0 + 1e-6
    assert v.support(claim, []) == 0.0


# --- abstention ---------------------------------------------------------------------------------

def _hit(text: str, *, dense: float | None = 0.6, rerank: float | None = None) -> Hit:
    chunk = Chunk(id=text[:8], source="doc.txt", text=text, start=0, end=len(text), pages=())
    return Hit(chunk, score=1.0, dense_score=dense, rerank_score=rerank, paginated=False)


def test_evidence_score_prefers_passages_that_answer():
    q = "When was the Eiffel Tower completed?"
    on_topic = evidence_score(q, [_hit(SOURCE, dense=0.7)])
    off_topic = evidence_score(q, [_hit(SOURCES[1], dense=0.1)])
    assert 0.0 <= off_topic < on_topic <= 1.0
    assert evidence_score(q, []) == 0.0


def test_evidence_features_see_missing_names_numbers_and_negation():
    f = hit_features("Why did Nouguier not finish the tower in 1901?", _hit(SOURCE))
    assert f.name_missing == 1.0 and f.number_missing == 1.0 and f.negation_mismatch == 1.0
    lexical = EvidenceFeatures(1.0, 1.0, 1.0, 0.0, 0.0, 0.0, None)
    assert features_score(lexical) > features_score(EvidenceFeatures(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, None))


def test_chinese_questions_over_chinese_passages_get_their_own_weights():
    """A Chinese passage on another topic scores below the refusal threshold, the one about the
    question's subject above it (the CJK weights; known weak spot: another subject with the same
    predicate, "银杏…分布在…地区", still passes). A Chinese question over an English passage keeps
    the English lexical weights: bigram coverage says nothing across scripts, so the CJK weights
    (coverage-heavy) would refuse every such hit."""
    from rag.answer.abstain import WEIGHTS_CJK, WEIGHTS_LEXICAL

    q = "雪松分布在哪些地区？"
    about = _hit("雪松是松科雪松属的乔木，分布在喜马拉雅山西部和阿富汗，高可达五十米。")
    other = _hit("这家餐厅以烤鸭闻名，每天中午营业到两点，周末需要提前预订座位。")
    assert hit_features(q, about).cjk and hit_features(q, about).dense is None
    assert evidence_score(q, [other]) < 0.39 <= evidence_score(q, [about])
    english = hit_features(q, _hit("Cedars grow in the western Himalayas and in Afghanistan."))
    assert not english.cjk
    assert features_score(english) == features_score(english, weights=WEIGHTS_LEXICAL)
    assert features_score(english) != features_score(english, weights=WEIGHTS_CJK)


def test_rerank_score_wins_when_present():
    hits = [_hit(SOURCE, rerank=-3.0), _hit(SOURCES[1], rerank=2.0)]
    assert evidence_score("anything", hits) == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_should_abstain():
    assert should_abstain(0.2, 0.4) and not should_abstain(0.4, 0.4) and not should_abstain(0.0, 0.0)


# --- settled verdicts: the embedding only where it can change the verdict ------------------------

ROOT_DOCS = Path(__file__).resolve().parents[1] / "data" / "docs"


class CountingEmbedder(HashEmbedder):
    """HashEmbedder that counts the texts it is asked to embed."""

    def __init__(self):
        self.texts = 0

    def embed(self, texts):
        self.texts += len(texts)
        return super().embed(texts)


def _claims_and_evidence():
    """Sentences of the sample documents against their own paragraph, another document's paragraph,
    and with their last content word swapped: supported, unsupported and borderline claims."""
    from rag.answer.verify import split_sentences

    docs = [(ROOT_DOCS / name).read_text(encoding="utf-8") for name in
            ("bm25-lexical-retrieval.txt", "embeddings-and-vector-search.md", "glossary.md", "rag-evaluation-zh.txt")]
    paras = [p for d in docs for p in d.split("\n\n") if len(p) > 200]
    out = []
    for i, para in enumerate(paras):
        other = paras[(i + 7) % len(paras)]
        for sent in split_sentences(para)[:4]:
            words = sent.split()
            swapped = " ".join(words[:-2] + ["tokenizer"] + words[-1:]) if len(words) > 4 else sent
            out += [(sent, [para]), (sent, [other]), (swapped, [para]), (sent, [other, para])]
    return out


@pytest.mark.parametrize("threshold", [0.3, 0.4, 0.5])
def test_settled_verdicts_equal_the_full_scores_verdicts(threshold):
    cases = _claims_and_evidence()
    assert len(cases) > 100
    full_emb, settled_emb = CountingEmbedder(), CountingEmbedder()
    full, settled = OfflineVerifier(full_emb), OfflineVerifier(settled_emb, settle_at=threshold)
    disagreements = [(c, e) for c, e in cases
                     if (full.support(c, e) >= threshold) != (settled.support(c, e) >= threshold)]
    assert disagreements == []
    assert settled_emb.texts < full_emb.texts


def test_at_the_product_threshold_most_verdicts_need_no_embedding():
    from rag.config import Config

    full_emb, settled_emb = CountingEmbedder(), CountingEmbedder()
    full = OfflineVerifier(full_emb)
    settled = OfflineVerifier(settled_emb, settle_at=Config().support_threshold)
    for claim, evidence in _claims_and_evidence():
        full.support(claim, evidence)
        settled.support(claim, evidence)
    assert settled_emb.texts < full_emb.texts / 4


def test_settled_score_is_a_lower_bound_of_the_full_score():
    full, settled = OfflineVerifier(HashEmbedder()), OfflineVerifier(HashEmbedder(), settle_at=0.4)
    for claim, evidence in _claims_and_evidence()[:80]:
        assert settled.support(claim, evidence) <= full.support(claim, evidence) + 1e-9


def test_load_verifier_passes_the_threshold_and_at_threshold_shares_the_cache():
    emb = HashEmbedder()
    v = load_verifier("offline", embedder=emb, threshold=0.4)
    assert v.settle_at == 0.4
    twin = OfflineVerifier(emb).at_threshold(0.3)
    assert twin.settle_at == 0.3 and twin.embedder is emb
