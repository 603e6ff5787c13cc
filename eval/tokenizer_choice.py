"""Which BM25 tokens? Paragraph retrieval recall for the tokenizer variants behind `rag.index.tokenize`.

    python eval/tokenizer_choice.py [--data ../shared/data]

CMRC 2018 trial (Chinese, SQuAD format) compares four ways to cut CJK runs: character bigrams,
unigrams+bigrams, jieba search-mode words, jieba words+bigrams. SQuAD 2.0 dev (answerable
questions only) compares the Latin path with and without stemming and stopwords. Every paragraph
`context` is one document; a question's gold document is its own paragraph. Prints R@1, R@5 and
the seconds spent tokenizing and indexing. Runs in well under a minute.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.datasets import load_squad  # noqa: E402
from rag.index.tokenize import cjk_bigrams, tokenize_with  # noqa: E402


def cjk_uni_bigrams(run: str) -> list[str]:
    return list(run) + (cjk_bigrams(run) if len(run) > 1 else [])


def cjk_jieba(run: str) -> list[str]:
    import jieba
    return jieba.lcut_for_search(run)


def cjk_jieba_bigrams(run: str) -> list[str]:
    return cjk_jieba(run) + (cjk_bigrams(run) if len(run) > 1 else [])


def load_squad_format(path: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Paragraph texts and (question, index of its paragraph) for the answerable questions,
    read by eval.datasets.load_squad."""
    qs = load_squad(path)
    position = {d.source: i for i, d in enumerate(qs.docs)}
    return [d.text for d in qs.docs], [(q.question, position[q.gold[0].source]) for q in qs.questions if q.answerable]


def recall(docs: list[str], queries: list[tuple[str, int]],
           tok: Callable[[str], list[str]]) -> tuple[float, float, float]:
    """(R@1, R@5, seconds to tokenize everything and index) for one tokenizer."""
    import bm25s
    import numpy as np

    from rag.config import Config

    t0 = time.perf_counter()
    retriever = bm25s.BM25(k1=Config.bm25_k1, b=Config.bm25_b)  # the index's BM25 parameters
    retriever.index([tok(d) for d in docs], show_progress=False)
    query_tokens = [tok(q) for q, _ in queries]
    seconds = time.perf_counter() - t0
    found, _ = retriever.retrieve(query_tokens, k=5, show_progress=False)
    gold = np.array([g for _, g in queries])[:, None]
    return float((found[:, :1] == gold).any(1).mean()), float((found == gold).any(1).mean()), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)

    import jieba
    jieba.setLogLevel(60)
    jieba.initialize()  # load its dictionary before the clock starts

    cmrc = load_squad_format(args.data / "cmrc2018-trial" / "cmrc2018_trial.json")
    squad = load_squad_format(args.data / "squad2-dev" / "dev-v2.0.json")
    latin = dict(stem=True, stopwords=True)
    runs = [
        ("CMRC 2018 trial", cmrc, "bigrams (default)", dict(latin, cjk=cjk_bigrams)),
        ("CMRC 2018 trial", cmrc, "unigrams+bigrams", dict(latin, cjk=cjk_uni_bigrams)),
        ("CMRC 2018 trial", cmrc, "jieba search words", dict(latin, cjk=cjk_jieba)),
        ("CMRC 2018 trial", cmrc, "jieba + bigrams", dict(latin, cjk=cjk_jieba_bigrams)),
        ("SQuAD 2.0 dev", squad, "stem + stopwords (default)", dict(latin, cjk=cjk_bigrams)),
        ("SQuAD 2.0 dev", squad, "stem, keep stopwords", dict(latin, stopwords=False, cjk=cjk_bigrams)),
        ("SQuAD 2.0 dev", squad, "no stem, drop stopwords", dict(latin, stem=False, cjk=cjk_bigrams)),
        ("SQuAD 2.0 dev", squad, "no stem, keep stopwords", dict(stem=False, stopwords=False,
                                                                  cjk=cjk_bigrams)),
    ]
    print(f"{'dataset':<16} {'docs':>5} {'qs':>5}  {'variant':<28} {'R@1':>6} {'R@5':>6} {'tok+index s':>11}")
    for name, (docs, queries), variant, opts in runs:
        r1, r5, secs = recall(docs, queries, lambda t, o=opts: tokenize_with(t, **o))
        print(f"{name:<16} {len(docs):>5} {len(queries):>5}  {variant:<28} "
              f"{r1:>6.3f} {r5:>6.3f} {secs:>11.2f}")


if __name__ == "__main__":
    main()
