"""The NLI verifier: entailment probability from a cross-encoder, max over evidence windows.

    verifier = load_verifier("nli:cross-encoder/nli-deberta-v3-small")   # a local path or the HF cache

The model is read from a local folder or the Hugging Face cache, never downloaded here; torch
and sentence-transformers are imported only when one is loaded.

Deliberately skipped: batching across sentences of one answer (each sentence's premises form a
batch) and models that need remote code.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.answer.verify.features import windows
from rag.errors import MissingDependencyError, ModelNotFoundError
from rag.text import logistic


class NLIVerifier:
    """Entailment probability from an NLI cross-encoder, max over evidence windows.

    Premise = an evidence window (up to 3 sentences, and the whole text when short), hypothesis =
    the claim. The entailment column comes from `config.id2label`; a single-logit model (HHEM-style
    "consistency" scores) is read through a sigmoid.
    """

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 16, max_length: int = 512) -> None:
        from rag.models.embed import resolve_model_path

        try:  # before importing torch: a missing model should fail fast
            path = resolve_model_path(model)
        except ModelNotFoundError as err:
            raise ModelNotFoundError(str(err).replace("embedding model", "NLI model")) from err
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as err:
                raise MissingDependencyError("sentence-transformers") from err
        try:
            # A resolved local path, read without the network: nothing here sets HF_HUB_OFFLINE.
            self.model = CrossEncoder(path, device=device, max_length=max_length, local_files_only=True)
        except Exception as err:  # surface every loading failure the same way
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


def _model_config(cross_encoder: Any) -> Any:
    cfg = getattr(cross_encoder, "config", None)
    if cfg is None:
        cfg = getattr(getattr(cross_encoder, "model", None), "config", None)
    if cfg is None:
        raise ModelNotFoundError("the NLI model has no config with id2label (fix: use a Hugging Face "
                                 "sequence-classification model)")
    return cfg


def entailment_index(config: Any) -> int | None:
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
        return np.array([logistic(float(z)) for z in logits.reshape(-1)])
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e[:, index] / e.sum(axis=1))
