"""Generate the sample document collection for the local RAG project.

Running ``python data/make_sample.py`` (re)writes the ten documents of the
sample collection into ``data/docs/``. All text lives in this script; it was
written for this project and is released under CC0. The collection covers one
topic, "how local LLM question answering works", in English and Simplified
Chinese, as Markdown, plain text, HTML and multi-page PDF files.

The output is deterministic: text files are written as UTF-8 with LF line
endings, and the PDFs (made with fpdf2) use a fixed creation date, so two runs
produce byte-identical files. The Chinese PDF embeds subsets of DejaVu Sans
(Latin) and Droid Sans Fallback (CJK); on Debian/Ubuntu install them with
``apt-get install fonts-dejavu-core fonts-droid-fallback``.

``python data/make_sample.py --check`` does not write anything. It validates
``data/eval/questions.jsonl`` and ``data/eval/crosslingual.jsonl`` against the generated files: the schema of every
record, and for every answerable question that one of its reference answers
occurs (case-insensitively, NFKC- and whitespace-normalized) in the text of the
gold document, on the gold page for PDFs (text extracted with pypdf; HTML text
excludes <script> and <style>). It prints counts and exits non-zero on any
problem.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS_DIR = HERE / "docs"
QUESTIONS = HERE / "eval" / "questions.jsonl"
CROSSLINGUAL = HERE / "eval" / "crosslingual.jsonl"
DIRECTIONS = ("en→zh", "zh→en")  # question language → language of the gold documents
CREATION_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)

LATIN_FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/DejaVuSans.ttf",
]
CJK_FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/google-droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/TTF/DroidSansFallbackFull.ttf",
]

# ---------------------------------------------------------------------------
# Markdown and plain-text documents
# ---------------------------------------------------------------------------

TOKENIZATION_MD = """\
# How a Language Model Reads Text: Tokens and Transformers

A local question answering system is built around a language model that runs on your own machine. Before looking at retrieval, quantization or hardware, it helps to know what the model actually does with the words you give it. This note walks from raw text to generated answer and introduces the numbers that come back in the other documents of this collection.

## From characters to tokens

A language model never sees characters directly. Text is first split into tokens, small units taken from a fixed vocabulary, and every token is replaced by an integer ID. Most current models use byte pair encoding (BPE). BPE starts from single bytes and repeatedly merges the most frequent adjacent pair of symbols into a new symbol, until the vocabulary reaches its target size. Frequent words end up as one token, rare words are split into several pieces.

Vocabulary sizes differ between model families. The Llama 2 tokenizer has a vocabulary of 32,000 tokens and was trained with SentencePiece. Llama 3 moved to a much larger BPE vocabulary of 128,256 tokens. GPT-2 used 50,257 tokens.

A useful rule of thumb for English: one token is about three quarters of a word, or roughly four characters, so 1,000 tokens correspond to about 750 words. Chinese is less predictable. The 32,000-token Llama 2 vocabulary contains relatively few Chinese characters, so many characters fall back to their UTF-8 bytes and cost up to three tokens each, while the larger Llama 3 vocabulary encodes most common Chinese characters in a single token. Because every UTF-8 character is one to four bytes long, a tokenizer with byte fallback never has to emit an unknown token.

Tokenizers also define special tokens. In Llama 2 the beginning-of-sequence token is written <s> and the end-of-sequence token </s>. Chat models additionally expect a chat template: Llama 2 chat wraps each user turn in [INST] and [/INST] markers. Using the wrong template is a common reason why a local model rambles or ignores instructions.

## Turning token IDs into vectors

Each token ID selects one row of the embedding matrix. In Llama 2 7B every row holds 4,096 numbers, which is the model's hidden size, so the input embedding matrix alone has 32,000 x 4,096, or about 131 million, parameters. From here on the model works only with vectors of length 4,096.

## The transformer block

Models such as Llama and Mistral are decoder-only transformers: a stack of identical blocks applied one after another. Llama 2 7B has 32 such blocks, usually called layers. Each block contains two parts, each wrapped in a residual connection and preceded by RMSNorm normalization:

- Self-attention. Every token computes a query, a key and a value vector. A token's query is compared with the keys of all earlier tokens, and the resulting weights mix their values. Llama 2 7B uses 32 attention heads of dimension 128 (32 x 128 = 4,096).
- Feed-forward network. A small two-layer network applied to each position independently; in Llama 2 7B its intermediate size is 11,008 with a SwiGLU activation.

Attention is causal: a token may look only at itself and at earlier tokens, never at later ones. Word order is injected with rotary position embeddings (RoPE), which rotate query and key vectors by an angle that depends on the token's position.

The cost of attention grows quadratically with the sequence length. Doubling a prompt from 2,000 to 4,000 tokens roughly quadruples the attention work during prompt processing, while the feed-forward work only doubles. This is one reason why long prompts full of retrieved passages are slow on modest hardware.

## Generating text one token at a time

Generation is autoregressive. After processing the prompt, the last layer produces logits, one score for every entry in the vocabulary (32,000 scores for Llama 2). A softmax turns the logits into probabilities, one token is chosen, appended to the sequence, and the whole step repeats until an end-of-sequence token appears or a length limit is reached.

How the token is chosen is controlled by sampling settings:

- Temperature divides the logits before the softmax. Values below 1 make the distribution sharper; a temperature of 0 is treated as greedy decoding, which always picks the most likely token.
- Top-k keeps only the k most likely tokens.
- Top-p, also called nucleus sampling, keeps the smallest set of tokens whose cumulative probability reaches p.

The llama.cpp command-line tools default to a temperature of 0.8, top-k 40 and top-p 0.95. For question answering over documents a low temperature between 0 and 0.2 is recommended, because creativity is not wanted when the answer must match the sources.

## Why this matters for question answering

Everything a model reads and writes is counted in tokens. The context window, for example 4,096 tokens for Llama 2, must hold the system prompt, the retrieved passages, the question and the answer together. Knowing roughly how many tokens a passage costs, and that Chinese text may cost more tokens per character with small vocabularies, is the first step in planning a retrieval-augmented system.
"""

EMBEDDINGS_MD = """\
# Embeddings and Vector Search

Dense retrieval finds passages whose meaning is close to the question, even when they share no words with it. It rests on two pieces: an embedding model that turns text into vectors, and an index that finds the nearest vectors quickly. This note explains both and compares the index types offered by FAISS.

## What an embedding is

An embedding model maps a piece of text to a fixed-length vector of floating-point numbers, arranged so that texts with similar meaning end up close together. Retrieval models are usually bi-encoders: the question and each passage are encoded independently, so passage vectors can be computed once at indexing time and only the question has to be embedded at query time.

Some common models and their output sizes:

- all-MiniLM-L6-v2 produces 384-dimensional vectors and reads at most 256 word pieces; it is small and fast but English-only.
- bge-base-en-v1.5 produces 768-dimensional vectors.
- bge-m3 produces 1,024-dimensional vectors, supports more than 100 languages and accepts inputs of up to 8,192 tokens, which makes it a good default for mixed English and Chinese collections.

Some models expect instructions or prefixes. The multilingual E5 models are trained with the prefixes "query: " for questions and "passage: " for documents; leaving them out measurably lowers retrieval quality.

## Measuring similarity

The usual similarity measure is cosine similarity, the dot product of two vectors divided by the product of their lengths. It ranges from -1 to 1. If all vectors are normalized to unit length when they are stored, the plain inner product equals the cosine similarity, so an inner-product index can be used directly. For unit vectors, squared Euclidean distance and cosine similarity are linked by d^2 = 2 - 2 cos, so both give the same ranking.

## Exact search with a flat index

FAISS (Facebook AI Similarity Search) is a library for vector search from Meta's Fundamental AI Research team, open-sourced in 2017. It is written in C++ with Python bindings and has optional GPU support.

The simplest FAISS index is IndexFlatIP (or IndexFlatL2 for Euclidean distance). It stores all vectors as they are and compares the query with every one of them. This brute-force search has 100 % recall by definition and is the reference against which approximate indexes are measured. Its cost grows linearly with the number of vectors, and so does its memory: float32 needs 4 bytes per dimension, so one 768-dimensional vector takes 3,072 bytes and one million of them take about 3.07 GB. For collections below roughly 100,000 chunks a flat index is usually the right choice; a flat search over 100,000 vectors of 768 dimensions takes on the order of 10 milliseconds on a modern CPU.

## IVF: the inverted file index

IVF indexes (IndexIVFFlat in FAISS) first run k-means to split the vector space into nlist clusters. Each vector is stored in the list of its nearest centroid. At query time the query is compared with the centroids and only the nprobe closest lists are scanned. The FAISS default is nprobe = 1, which is fast but often misses neighbours that sit near a cluster border; values between 8 and 64 are common in practice.

A common rule is to choose nlist between 4 x sqrt(N) and 16 x sqrt(N) for N vectors, so about 4,096 lists for one million vectors. IVF indexes must be trained before vectors are added, and FAISS prints a warning when fewer than 39 training points per centroid are supplied.

## HNSW: navigable small-world graphs

HNSW (Hierarchical Navigable Small World) was described by Yury Malkov and Dmitry Yashunin in 2016. It builds a layered graph: the top layers are sparse and contain long links, the bottom layer contains every vector. A search starts at the top layer, greedily walks towards the query, and descends layer by layer.

Three parameters control it:

- M, the number of neighbours per node, typically 16 to 64. In FAISS the bottom layer keeps 2 x M links, so with M = 32 every vector carries 64 neighbour IDs, about 256 bytes of extra memory.
- efConstruction, the breadth of the search while building the graph; the FAISS default is 40.
- efSearch, the breadth of the search at query time; the FAISS default is 16. Raising efSearch increases recall and latency.

HNSW needs no training and accepts new vectors at any time, but deleting vectors is awkward, and the graph adds memory on top of the raw vectors.

## Product quantization

When memory is the limit, product quantization (PQ) compresses the vectors themselves. A 768-dimensional vector is split into 96 sub-vectors of 8 dimensions; each sub-vector is replaced by the 8-bit ID of its nearest entry in a 256-entry codebook. The vector then needs 96 bytes instead of 3,072, a 32-fold reduction. IndexIVFPQ combines IVF partitioning with PQ codes. Compression loses some recall, which can be recovered by re-scoring the top candidates with the original vectors.

## Choosing an index

- Up to about 100,000 vectors: a flat index, exact and simple.
- Up to tens of millions of vectors with enough RAM: HNSW, with efSearch tuned for the recall you need.
- Very large collections or little memory: IVF with PQ codes.

Whatever you choose, measure recall@10 against a flat index on a sample of real questions before trusting an approximate index.
"""

GLOSSARY_MD = """\
# Glossary of Local LLM Question Answering

Short definitions of the terms used across this collection, in alphabetical order.

## A to E

Abstention: the system declines to answer, for example with "I don't know based on the provided documents", because the retrieved sources do not support an answer. A good system abstains on unanswerable questions instead of guessing.

ANN (approximate nearest neighbour) search: vector search that trades a little recall for much higher speed. HNSW and IVF are ANN methods; a flat index is exact.

BM25: a lexical ranking function that scores documents by how often query terms occur in them, weighted by how rare the terms are and normalized by document length. Its usual parameters are k1 = 1.2 and b = 0.75.

BPE (byte pair encoding): a tokenization method that builds a vocabulary by repeatedly merging the most frequent adjacent pair of symbols.

Chunk: a piece of a document, typically a few hundred tokens long, that is indexed and retrieved as a unit. Each chunk keeps its source path and page number so that answers can cite it.

Context window: the maximum number of tokens a model can process at once, counting the prompt and the generated answer together.

Cosine similarity: the dot product of two vectors divided by the product of their lengths; 1 means the vectors point in the same direction.

Cross-encoder: a model that reads the question and one passage together and outputs a single relevance score. It is more accurate than a bi-encoder but must run once for every candidate, so it is used for reranking.

Embedding: a fixed-length vector representing the meaning of a text, produced by an embedding model such as bge-m3.

## F to L

FAISS: Meta's open-source library for vector similarity search, offering flat, IVF, HNSW and product-quantized indexes.

Faithfulness: the share of statements in an answer that are supported by the retrieved context. An answer with four supported statements out of five has a faithfulness of 0.8.

GGUF: the single-file model format of llama.cpp, introduced in August 2023. It stores tensors together with metadata such as the architecture, tokenizer and chat template.

Hallucination: generated content that is not supported by, or contradicts, the sources or known facts.

HNSW (Hierarchical Navigable Small World): a graph-based ANN index with parameters M, efConstruction and efSearch.

IVF (inverted file index): an ANN index that clusters vectors with k-means and searches only the nprobe nearest clusters.

KV cache: the stored key and value vectors of earlier tokens, kept for every layer so they are not recomputed at each generation step. Its size grows linearly with the context length.

llama.cpp: an open-source C/C++ inference engine for running quantized models on CPUs and GPUs, first released in March 2023.

## M to R

MRR (mean reciprocal rank): the average over questions of 1 divided by the rank of the first relevant result, counting 0 when nothing relevant is retrieved.

Offloading: placing some or all model layers on a GPU; in llama.cpp this is set with --n-gpu-layers (-ngl).

Perplexity: a measure of how well a model predicts a text; lower is better. It is used to compare quantization levels against the FP16 original.

Prefill: the first phase of generation, in which the whole prompt is processed in parallel and the KV cache is filled.

Quantization: storing model weights with fewer bits, for example 4 or 8 instead of 16, to save memory and increase speed.

Q4_K_M: a llama.cpp k-quant mix that averages about 4.85 bits per weight; the usual default when memory is limited.

RAG (retrieval-augmented generation): answering a question by first retrieving relevant passages and then letting a language model write an answer grounded in them.

Reranker: a second-stage model, usually a cross-encoder, that re-scores the top candidates of a fast first-stage retriever.

RRF (reciprocal rank fusion): a method for merging ranked lists by summing 1 / (k + rank) for each document, usually with k = 60.

## S to Z

Temperature: a sampling setting that sharpens (below 1) or flattens (above 1) the probability distribution over next tokens; 0 means greedy decoding.

Token: the unit a model reads and writes, drawn from a fixed vocabulary; an English token is about four characters on average.

Top-p: nucleus sampling; the model samples only from the smallest set of tokens whose cumulative probability reaches p.

Vector index: a data structure that returns the stored vectors nearest to a query vector.
"""

BM25_TXT = """\
BM25 AND LEXICAL RETRIEVAL
==========================

Dense vectors are not the only way to find relevant passages. Lexical retrieval
ranks documents by the words they share with the query, and its best-known
ranking function, BM25, is still a strong baseline. In a local question
answering system it is cheap to run next to a vector index and catches exact
matches that embeddings often miss.


1. THE INVERTED INDEX
---------------------

A lexical search engine stores an inverted index: for every term, a posting
list of the documents (or chunks) that contain it, together with the number of
occurrences. Answering a query means reading the posting lists of the query
terms and combining their scores, so the work depends on how common the query
terms are, not on the size of the whole collection.


2. THE BM25 SCORING FUNCTION
----------------------------

BM25 stands for "Best Matching 25". It was developed for the Okapi retrieval
system at City University London by Stephen Robertson, Karen Spärck Jones and
colleagues, and was first used at the TREC-3 evaluation in 1994. The score of a
document D for a query Q is a sum over the query terms q:

    score(D, Q) = sum of IDF(q) * f(q, D) * (k1 + 1)
                  / ( f(q, D) + k1 * (1 - b + b * |D| / avgdl) )

where f(q, D) is how often q occurs in D, |D| is the length of D in tokens and
avgdl is the average document length in the collection. The inverse document
frequency used by Lucene and most modern libraries is

    IDF(q) = ln( 1 + (N - n(q) + 0.5) / (n(q) + 0.5) )

with N the number of documents and n(q) the number of documents containing q.
This form is never negative, unlike the original Robertson-Spärck Jones weight.


3. THE PARAMETERS K1 AND B
--------------------------

k1 controls term frequency saturation. Each extra occurrence of a term adds
less than the previous one, and the term frequency part can never exceed
k1 + 1, however often the term appears. Typical values lie between 1.2 and 2.0.

b controls length normalization. With b = 0 document length is ignored; with
b = 1 term frequencies are fully normalized by the document length relative to
avgdl. The usual defaults, used by Lucene and Elasticsearch, are k1 = 1.2 and
b = 0.75.


4. A WORKED EXAMPLE
-------------------

Take a collection of N = 1,000 chunks. The term "quantization" appears in 10
of them, the term "model" in 600.

    IDF(quantization) = ln(1 + 990.5 / 10.5)  = ln(95.33) = about 4.557
    IDF(model)        = ln(1 + 400.5 / 600.5) = ln(1.667) = about 0.511

The rare term therefore weighs almost nine times as much as the common one.

Now take a chunk of exactly average length (|D| = avgdl) that contains
"quantization" three times, with k1 = 1.2 and b = 0.75. The length factor is 1,
and the term frequency part is 3 * 2.2 / (3 + 1.2) = 1.571. The contribution of
"quantization" is 4.557 * 1.571, about 7.16. A single occurrence would give a
term frequency part of exactly 1.0, so three occurrences score only about 57 %
more than one, not three times as much.

If the chunk were twice the average length, the length factor would be
1 - 0.75 + 0.75 * 2 = 1.75, and the same three occurrences would give
3 * 2.2 / (3 + 1.2 * 1.75) = 1.294.


5. TOKENIZING CHINESE AND OTHER TEXT
------------------------------------

BM25 only works as well as the tokenizer that produces its terms. English text
is usually lowercased, split on non-letters, and sometimes stemmed: the Porter
stemmer, published by Martin Porter in 1980, maps "quantized" and "quantizing"
to the same stem. Removing stopwords such as "the" and "of" shrinks the index,
although BM25's IDF already gives them very little weight.

Chinese is written without spaces between words, so there are two common
options. A dictionary-based segmenter such as jieba splits text into words. The
simpler alternative is overlapping character bigrams: "向量检索" becomes
"向量", "量检" and "检索". Bigrams need no dictionary and never miss a new
word, at the price of a larger index and some meaningless terms such as "量检".
Single characters alone are too ambiguous to rank well. Whatever is chosen,
the same tokenizer must be applied to documents and queries, and NFKC
normalization should fold full-width letters and digits to their ASCII forms.


6. STRENGTHS, WEAKNESSES AND HYBRID SEARCH
------------------------------------------

BM25 shines on exact, rare strings: error codes, function names, model names
such as "Q4_K_M", part numbers and people's names. It needs no training and no
GPU, it is fast, and its scores are easy to explain. Its weakness is vocabulary
mismatch: a query about a "car" will not find a passage that only says
"automobile", and a Chinese question will not match an English passage.

Because dense and lexical retrieval fail in different ways, many systems run
both and merge the two ranked lists, for example with reciprocal rank fusion.
This hybrid search is a robust default for a local question answering system.


7. IMPLEMENTATIONS
------------------

- Lucene, and Elasticsearch on top of it. Elasticsearch switched its default
  similarity from TF-IDF to BM25 in version 5.0, released in 2016.
- SQLite FTS5 provides a bm25() ranking function with k1 = 1.2 and b = 0.75.
  It returns more negative values for better matches, so results are sorted
  in ascending order.
- The Python package rank_bm25, whose BM25Okapi class is handy for
  experiments on small collections.
- Tantivy, a full-text search library written in Rust.
"""

KV_CACHE_ZH_MD = """\
# KV 缓存与上下文窗口

本文说明本地大模型在生成回答时如何使用 KV 缓存，以及上下文窗口的大小如何决定显存占用。文中的模型结构数字与本资料集其他文档一致。

## 为什么需要 KV 缓存

大模型按自回归方式生成文本：每次只生成一个词元，然后把它接到序列末尾，再生成下一个。在每一步里，注意力层都需要之前所有词元的键（Key）向量和值（Value）向量。如果每一步都从头重新计算，生成第 n 个词元的代价就与 n 成正比，整段回答的总代价随长度呈平方增长。

KV 缓存的做法是把每一层已经算好的 K 和 V 保存下来。生成新词元时，模型只需为这个新词元计算自己的 K 和 V，追加到缓存中，再与缓存中的全部条目做注意力。这样每一步的计算量大大减少，代价是占用额外的内存。

## 两个阶段：预填充与解码

一次生成分为两个阶段。预填充（prefill）阶段并行处理整段提示词，同时把 KV 缓存填满，这一阶段主要受算力限制。解码（decode）阶段逐个生成词元，每一步都要读取全部权重和缓存，因此主要受内存带宽限制。

首词元延迟（TTFT，time to first token）主要由预填充决定：提示越长，等待第一个字出现的时间越长。在检索增强问答中，塞进提示的段落越多，首词元延迟就越高。

## KV 缓存占多少内存

KV 缓存的大小可以用下面的公式计算：

KV 缓存字节数 = 2 × 层数 × KV 头数 × 头维度 × 上下文长度 × 每个元素的字节数

公式中的 2 表示 K 和 V 各一份。缓存通常以 FP16 存储，每个元素 2 字节。

例一：Llama 2 7B 有 32 层、32 个 KV 头、头维度 128。每个词元需要 2 × 32 × 32 × 128 × 2 = 524,288 字节，即 0.5 MiB。上下文为 4096 个词元时，KV 缓存共 2 GiB。

例二：Mistral 7B 和 Llama 3 8B 使用分组查询注意力（GQA）：32 个查询头共享 8 个 KV 头。每个词元只需 128 KiB，是例一的四分之一；上下文为 8192 个词元时，KV 缓存为 1 GiB。

如果把 Llama 3.1 8B 的上下文开到最大的 131,072 个词元，FP16 的 KV 缓存就需要 16 GiB，比 Q4_K_M 量化后的权重本身还大得多。因此上下文长度应按实际需要设置，而不是一律开到最大。

## 并发与缓存量化

每个并发请求都需要自己的一份缓存。llama.cpp 的 llama-server 会把总上下文平均分给各个槽位：用 -c 16384 --parallel 4 启动时，每个槽位只有 4096 个词元的上下文。

llama.cpp 还支持量化 KV 缓存，例如 --cache-type-k q8_0 --cache-type-v q8_0。q8_0 每个元素约 8.5 位，缓存大约缩小到 FP16 的一半，质量损失通常很小。注意：量化 V 缓存需要同时开启 Flash Attention（-fa 参数）。

## 上下文窗口

上下文窗口是模型一次能处理的最大词元数，提示词和生成的回答都计算在内。常见模型的上下文窗口：Llama 2 为 4096 个词元，Llama 3 为 8192 个词元，Llama 3.1 扩展到 131,072 个词元（128K）。Mistral 7B 的第一个版本还使用了窗口为 4096 的滑动窗口注意力，每层只关注最近的 4096 个词元。

对话超出窗口时，常见做法有三种：丢弃最早的消息；把旧的对话压缩成摘要；或者只保留与当前问题相关的历史轮次。

## 位置编码与上下文扩展

Llama 系列使用旋转位置编码（RoPE）。超出训练长度后，模型效果通常会迅速下降。RoPE 缩放方法（如线性插值、NTK 缩放和 YaRN）可以把上下文扩展到训练长度之外，但一般需要少量微调才能保持质量。

## 对问答系统的启示

上下文窗口大并不代表模型能用好其中的全部信息。对于检索增强问答，更好的做法是：检索少量高质量段落，把最相关的放在最前面，并为回答预留足够的词元。这样既节省 KV 缓存，又能降低首词元延迟。
"""

EVALUATION_ZH_TXT = """\
检索增强问答系统的评测：忠实度与幻觉
====================================

一个本地问答系统是否可靠，不能只看几个演示问题。本文介绍评测检索增强生成（RAG）系统时常用的指标和流程，重点是忠实度、幻觉和拒答。


一、为什么要分别评测检索和生成

RAG 系统的错误可能来自两个环节：检索没有找到正确的段落，或者模型拿到了正确的段落却答错了。如果只看最终答案，就无法判断该改进哪一环。因此评测集里的每个问题，除了参考答案，还应标注“金标准来源”，即答案所在的文件和页码。


二、检索指标

召回率@k（Recall@k）：前 k 个检索结果中至少包含一个相关段落的问题所占的比例。例如 50 个问题中有 42 个在前 5 个结果里找到了相关段落，Recall@5 就是 0.84。

平均倒数排名（MRR）：对每个问题取第一个相关结果排名的倒数，再对所有问题求平均。第一个相关结果排在第 3 位时，倒数排名为 1/3，约等于 0.333；前 k 个结果中没有相关段落时记为 0。MRR 对排在最前面的结果最敏感。


三、生成指标

忠实度（faithfulness）衡量答案是否有依据，计算方法是：答案中能被检索上下文支持的陈述数，除以答案中陈述的总数。例如一个答案包含 5 条陈述，其中 4 条能在检索到的段落中找到依据，忠实度就是 0.8。忠实度只看答案与上下文是否一致，不看答案本身是否正确。

答案正确性通常用完全匹配（EM）和 F1 衡量。英文按单词计算 F1；中文没有空格分词，一般按字计算 F1。


四、幻觉的两种类型

内在幻觉：答案与来源内容相矛盾。例如文档写明 Q4_K_M 约为每个权重 4.85 位，模型却回答“3.5 位”。

外在幻觉：答案包含来源中无法验证的内容。它不一定是错的，但用户无法通过引用核实。

在检索增强问答中，两种幻觉都应该计为不忠实。


五、拒答评测

评测集中应当包含一部分资料集无法回答的问题，建议占 25% 到 35%。对这些问题，正确的行为是明确说明资料中没有答案，而不是编造。

两个对应的指标：拒答准确率，即不可回答的问题中被正确拒答的比例；误拒率，即可回答的问题被错误拒答的比例。调高检索分数阈值会提高拒答准确率，但误拒率也会随之上升，需要在开发集上权衡。


六、引用评测

引用精确率：被引用的来源中确实支持答案的比例。引用召回率：答案所依据的来源中被引用出来的比例。对 PDF 文档，最好评测到页码级别：引用了正确的文件但页码错误，用户仍然需要自己翻找。


七、用大模型当裁判

用另一个大模型给答案打分（LLM-as-a-judge）可以节省人工，但裁判模型有已知的偏差：位置偏差（偏爱先出现的答案）、冗长偏差（偏爱更长的答案）和自我偏好（偏爱与自己风格相近的答案）。常见对策包括：把温度设为 0，随机交换两个答案的顺序后各评一次，以及至少抽取 10% 的样本做人工复核。


八、样本量与置信区间

评测集太小时，结论并不可靠。以 50 个问题、准确率 80% 为例，95% 置信区间大约是正负 11 个百分点。因此在 50 题的评测集上，两个系统相差 5 个百分点并不能说明哪个更好。要比较细微的改动，需要几百个问题，或者对同一批问题做配对比较。


九、一个最小评测流程

1. 收集问题，标注参考答案和金标准来源（文件和页码），并加入不可回答的问题。
2. 固定检索参数和生成参数，温度设为 0，保证结果可复现。
3. 分别计算检索指标（Recall@k、MRR）和生成指标（忠实度、正确性、引用精确率）。
4. 单独统计拒答准确率和误拒率。
5. 每次修改系统后在同一评测集上重新运行，并保存全部输出，方便逐题比较。
"""

# ---------------------------------------------------------------------------
# HTML documents (script/style/nav/footer are boilerplate that must not be
# indexed as content; the script and style blocks contain decoy tokens)
# ---------------------------------------------------------------------------

HTML_TEMPLATE = """\
<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
/* Site theme. DECOY-STYLE-{decoy}: text inside style blocks must never be indexed. */
body {{ font-family: Georgia, serif; max-width: 46rem; margin: 2rem auto; line-height: 1.55; color: #1d1d1f; }}
nav a {{ margin-right: 1rem; color: #0b6e69; text-decoration: none; }}
h1, h2 {{ font-family: Helvetica, Arial, sans-serif; }}
code, pre {{ background: #f3f3f3; padding: 0.1rem 0.3rem; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; }}
footer {{ margin-top: 3rem; font-size: 0.85rem; color: #666; }}
</style>
<script>
// Page analytics stub. DECOY-SCRIPT-{decoy}: text inside script blocks must never be indexed.
window.siteConfig = {{ analyticsId: "LQA-{decoy}-7731", theme: "teal", build: "2026.01" }};
document.addEventListener("DOMContentLoaded", function () {{
  var links = document.querySelectorAll("nav a");
  for (var i = 0; i < links.length; i++) {{ links[i].setAttribute("data-index", String(i)); }}
}});
</script>
</head>
<body>
<nav>
<a href="index.html">Home</a>
<a href="retrieval.html">Retrieval</a>
<a href="generation.html">Generation</a>
<a href="glossary.html">Glossary</a>
</nav>
<main>
{body}
</main>
<footer>
<p>Local QA Notes. Written for the local RAG sample collection, released under CC0.</p>
</footer>
</body>
</html>
"""

RAG_HTML_BODY = """\
<h1>Retrieval-Augmented Generation with Citations</h1>

<p>A language model only knows what was in its training data, and it cannot tell you where a fact came from. Retrieval-augmented generation (RAG) fixes both problems: before the model answers, the system searches your own documents and puts the most relevant passages into the prompt. The model then answers from those passages and cites them. This page describes a complete pipeline that runs on a single local machine.</p>

<h2>Where the idea comes from</h2>

<p>The term was introduced by Patrick Lewis and colleagues at Facebook AI Research in the 2020 paper "Retrieval-Augmented Generation for Knowledge-Intensive NLP Tasks". They combined parametric memory, the knowledge stored in the model's weights, with non-parametric memory, a searchable index of documents. For a local assistant the benefits are practical: answers can use private and recent documents, a smaller model is often enough because it does not have to memorize facts, and every claim can be checked against a cited source.</p>

<h2>The pipeline in six steps</h2>

<ol>
<li>Load and extract. Read Markdown, text, HTML and PDF files and extract plain text. Keep the source path and, for PDFs, the page number of every piece of text. Drop boilerplate such as scripts, style sheets and navigation menus.</li>
<li>Chunk. Split the text into passages of a few hundred tokens.</li>
<li>Embed and index. Compute an embedding for every chunk and store it in a vector index; optionally build a BM25 index over the same chunks for hybrid search.</li>
<li>Retrieve. Embed the question, fetch the best candidates from the indexes, and optionally rerank them with a cross-encoder.</li>
<li>Build the prompt. Place the top chunks, numbered, into a prompt together with instructions and the question.</li>
<li>Generate and verify. Let the model answer with citations, then check the citations before showing the answer.</li>
</ol>

<h2>Chunking</h2>

<p>A good starting point is chunks of 512 tokens with an overlap of 64 tokens, which is 12.5 % of the chunk length. The overlap keeps a sentence that straddles a boundary available in at least one chunk. Split at headings and paragraph breaks first and only cut inside a paragraph when it is too long. If answers should cite pages, never let a chunk span two PDF pages. Each chunk should carry a chunk ID, its source path, its page number and its character offsets, so that a citation can be turned back into a link to the exact place in the document.</p>

<h2>Budgeting the context window</h2>

<p>The retrieved chunks compete for space with everything else in the context window. Take a model with a 4,096-token window. If the system prompt and instructions need about 300 tokens and 512 tokens are reserved for the answer, 3,284 tokens remain for the sources and the question. That is room for six chunks of 512 tokens (3,072 tokens) plus a question of up to about 200 tokens. Sending more chunks than fit is worse than sending fewer: the runtime silently truncates the prompt, usually cutting off the instructions or the question.</p>

<h2>Prompt format</h2>

<p>Number each source and give it a short header with its file name and page, for example "[1] quantization-guide.pdf, page 3". Then instruct the model:</p>

<ul>
<li>answer only from the numbered sources;</li>
<li>cite the supporting source after each sentence with its number in square brackets, such as [2];</li>
<li>if the sources do not contain the answer, reply exactly "I don't know based on the provided documents.";</li>
<li>answer in the language of the question, even if the sources are in another language.</li>
</ul>

<p>Order matters. Liu and colleagues showed in 2023, in a study titled "Lost in the Middle", that models use information at the beginning and at the end of a long context much better than information in the middle. Put the highest-scoring chunk first.</p>

<h2>Verifying citations</h2>

<p>Models sometimes cite sources that do not say what the sentence claims, or invent source numbers. After generation, parse every bracketed number. Remove citations that point to a source number that was never given. For the remaining ones, check that the cited chunk actually supports the sentence, for example by requiring a minimum word overlap or by asking a small model to judge entailment. An answer that ends up with no valid citation should be treated as unsupported and replaced by an abstention. Finally, map each number back to its file and page so that the user can open the source.</p>

<h2>Knowing when not to answer</h2>

<p>The cheapest hallucination to prevent is the one the model never gets a chance to produce. If the best reranker score is below a threshold tuned on a development set, skip generation entirely and abstain. This also saves time, since no tokens are generated for questions the collection cannot answer.</p>

<h2>Follow-up questions</h2>

<p>In a conversation, a question such as "And how much memory does it need?" cannot be searched on its own because "it" refers to an earlier turn. Before retrieval, rewrite the follow-up into a standalone query using the chat history, for example "How much memory does a 7B model in Q4_K_M need?". This step is called query rewriting or question condensation. The rewritten query is used for retrieval, while the answer is still written for the original question.</p>
"""

BACKENDS_HTML_BODY = """\
<h1>Running Local Models on CPU, Metal and CUDA</h1>

<p>The same quantized model file can run on a laptop CPU, an Apple Silicon GPU or an NVIDIA card. What changes is speed, and the reason is almost always memory bandwidth. This page explains the backends of llama.cpp, the most widely used local inference engine, and how to estimate the speed you will get.</p>

<h2>llama.cpp and its backends</h2>

<p>llama.cpp was started by Georgi Gerganov and first released in March 2023. It is written in plain C and C++ on top of the ggml tensor library and has no required dependencies. The same code base supports several backends:</p>

<ul>
<li>CPU, with optimized kernels for x86 (AVX2, AVX-512) and ARM (NEON);</li>
<li>Metal, for the GPUs in Apple Silicon Macs;</li>
<li>CUDA, for NVIDIA GPUs;</li>
<li>HIP, for AMD GPUs through ROCm;</li>
<li>Vulkan, a cross-vendor GPU backend;</li>
<li>SYCL, mainly for Intel GPUs.</li>
</ul>

<p>Several popular tools are built on llama.cpp. Ollama wraps it in a model manager and serves an HTTP API on port 11434. The llama-server program that ships with llama.cpp offers an OpenAI-compatible HTTP API, including the /v1/chat/completions endpoint, and listens on port 8080 by default.</p>

<h2>Two phases, two bottlenecks</h2>

<p>Prompt processing (prefill) handles all prompt tokens in parallel as large matrix multiplications. It is limited by compute, and GPUs are many times faster than CPUs here, often processing thousands of prompt tokens per second.</p>

<p>Token generation (decode) produces one token at a time, and for every token the runtime has to read essentially all model weights from memory. It is therefore limited by memory bandwidth. A simple ceiling follows:</p>

<p>maximum tokens per second = memory bandwidth / size of the model in memory</p>

<p>Real systems reach roughly 60 to 70 % of this ceiling on CPUs and somewhat more on GPUs.</p>

<h2>CPU</h2>

<p>On a desktop with dual-channel DDR5-5600 memory, the theoretical bandwidth is 89.6 GB/s (5,600 million transfers per second, 8 bytes per transfer, two channels). For a 4.4 GB model such as a 7B model in Q4_K_M, the ceiling is about 20 tokens per second, and about 12 to 14 tokens per second is realistic.</p>

<p>Set the number of threads with -t to the number of physical performance cores. Hyper-threads and efficiency cores rarely help token generation and can even slow it down, because the cores end up waiting for memory anyway. llama.cpp memory-maps the model file by default; the --mlock option additionally keeps the model in RAM so the operating system cannot swap it out.</p>

<h2>Metal on Apple Silicon</h2>

<p>Apple Silicon Macs have unified memory: CPU and GPU share the same RAM, so no data has to be copied to a separate graphics card and a Mac with a lot of memory can run large models. The Metal backend is enabled by default when llama.cpp is built on macOS. Memory bandwidth depends on the chip:</p>

<table>
<tr><th>Chip</th><th>Memory bandwidth</th></tr>
<tr><td>M1</td><td>68 GB/s</td></tr>
<tr><td>M2 Pro</td><td>200 GB/s</td></tr>
<tr><td>M2 Max</td><td>400 GB/s</td></tr>
<tr><td>M2 Ultra</td><td>800 GB/s</td></tr>
</table>

<p>macOS limits how much of the unified memory the GPU may use, typically to roughly two thirds to three quarters of the total. On recent macOS versions the limit can be raised with the sysctl setting iogpu.wired_limit_mb.</p>

<h2>CUDA on NVIDIA GPUs</h2>

<p>Build llama.cpp with the CMake option -DGGML_CUDA=ON to enable CUDA. The most important runtime option is --n-gpu-layers, or -ngl for short: the number of transformer layers placed on the GPU. A value larger than the number of layers, such as -ngl 99, offloads the whole model.</p>

<p>If the model does not fit, a smaller -ngl value offloads only part of it and the remaining layers run on the CPU. This works, but the CPU part becomes the bottleneck and speed drops sharply, often to not much more than a pure CPU run. Reducing the context size with -c, or choosing a smaller quantization, is usually the better fix.</p>

<p>Two consumer examples: an RTX 4090 has 24 GB of VRAM and about 1,008 GB/s of bandwidth, which gives a ceiling of about 229 tokens per second for a 4.4 GB model. An RTX 3060 has 12 GB of VRAM and 360 GB/s. With several GPUs, --tensor-split sets how the model is divided between them, for example --tensor-split 3,1. The environment variable CUDA_VISIBLE_DEVICES selects which GPUs llama.cpp may use, and -fa turns on Flash Attention, which saves memory at long context lengths.</p>

<h2>Choosing hardware for a local QA system</h2>

<ul>
<li>For experiments with 7B models, any machine with 16 GB of RAM works on the CPU, at around ten tokens per second.</li>
<li>For interactive use, a GPU or Apple Silicon chip whose memory holds the whole model plus its KV cache gives the biggest improvement.</li>
<li>For long prompts full of retrieved passages, prompt processing speed matters as much as generation speed, and GPUs are far ahead here.</li>
</ul>

<p>When a run fails with an out-of-memory error, lower -ngl, lower the context size, or pick a smaller quantization, in that order.</p>
"""

# ---------------------------------------------------------------------------
# PDF documents: one list entry per page, (heading, blocks). A block is a
# paragraph string or ("table", [rows]).
# ---------------------------------------------------------------------------

QUANT_PDF_TITLE = "Quantization for Local LLMs: GGUF, K-Quants and Memory Math"

QUANT_PDF_PAGES = [
    (
        "1. Why quantize a model?",
        [
            "A model's weights are normally stored as floating-point numbers. FP32 takes 4 bytes per weight, "
            "FP16 and BF16 take 2 bytes. Mistral 7B, a typical \"7B\" model, has about 7.24 billion parameters, "
            "so in FP16 its weights alone need about 14.5 GB. That is more than the 8 to 12 GB found on most "
            "consumer GPUs and more than many laptops can spare.",
            "Quantization stores each weight with fewer bits, typically 4 to 8, together with a small number "
            "of scale factors shared by a block of weights. The runtime turns the small integers back into "
            "approximate floating-point values when it needs them. Local runtimes such as llama.cpp use "
            "weight-only quantization: the activations, the intermediate values computed while the model runs, "
            "stay in FP16 or FP32, and the quantized blocks are dequantized on the fly inside the matrix "
            "multiplication kernels.",
            "Quantization brings two benefits. The first is memory: a 4-bit model is roughly a quarter of the "
            "FP16 size. The second is speed. Generating a token requires reading essentially every weight once, "
            "so token generation is limited by memory bandwidth, and a file half the size generates tokens "
            "roughly twice as fast on the same hardware.",
            "A note on the 16-bit formats: FP16 has 5 exponent bits and 10 mantissa bits, while BF16 has 8 "
            "exponent bits, the same range as FP32, and only 7 mantissa bits. Most open models are published in "
            "BF16 and converted to FP16 or directly to a quantized format for local use.",
        ],
    ),
    (
        "2. The GGUF file format",
        [
            "GGUF is the single-file model format used by llama.cpp and by the many tools built on it, such as "
            "Ollama and LM Studio. It was introduced in August 2023 as the successor of the older GGML and GGJT "
            "formats, which could not store enough metadata and broke whenever a new model architecture was added.",
            "A GGUF file starts with the four magic bytes \"GGUF\" (hex 47 47 55 46), followed by the format "
            "version, currently version 3, the number of tensors and the number of metadata key-value pairs. "
            "The metadata describes everything needed to run the model: general.architecture (for example "
            "llama), llama.context_length, the tokenizer vocabulary in tokenizer.ggml.tokens, the chat template "
            "in tokenizer.chat_template, and the quantization type in general.file_type. Tensor data follows, "
            "aligned to 32 bytes by default.",
            "Because the tokenizer and the chat template travel inside the file, one GGUF file is all a runtime "
            "needs. The layout also allows the file to be memory-mapped: the operating system loads pages on "
            "demand, start-up is nearly instant when the file is already in the page cache, and several "
            "processes can share one copy of the weights.",
            "Conversion is a two-step process. The script convert_hf_to_gguf.py turns a Hugging Face checkpoint "
            "into a GGUF file with F16 weights. The llama-quantize tool then produces the quantized file, for "
            "example: llama-quantize model-f16.gguf model-Q4_K_M.gguf Q4_K_M",
        ],
    ),
    (
        "3. Quantization types and bits per weight",
        [
            "The simplest llama.cpp types quantize blocks of 32 weights. Q8_0 stores 32 8-bit integers plus one "
            "FP16 scale, (32 x 8 + 16) / 32 = 8.5 bits per weight. Q4_0 stores 32 4-bit integers plus one FP16 "
            "scale, which gives 4.5 bits per weight. Q4_1 adds an FP16 minimum to each block and reaches 5.0 bits "
            "per weight.",
            "The k-quants, added to llama.cpp in June 2023 by Iwan Kawrakow, use super-blocks of 256 weights that "
            "are divided into sub-blocks. The sub-block scales are themselves quantized, to 6 bits in Q4_K, so "
            "the overhead per weight is smaller and the precision is spent where it matters. Q4_K on its own "
            "uses 4.5 bits per weight.",
            "Names ending in S, M or L are mixes that use different types for different tensors. Q4_K_M uses "
            "Q6_K for half of the attention value (attn_v) and feed-forward down-projection (ffn_down) tensors "
            "and Q4_K for everything else. On average Q4_K_M uses about 4.85 bits per weight. The table lists "
            "common types with their file sizes for a model with 7.24 billion parameters.",
            ("table", [
                ("Type", "Bits per weight", "Size for 7.24B"),
                ("F16", "16.0", "14.5 GB"),
                ("Q8_0", "8.5", "7.7 GB"),
                ("Q6_K", "6.56", "5.9 GB"),
                ("Q5_K_M", "5.69", "5.1 GB"),
                ("Q4_K_M", "4.85", "4.4 GB"),
                ("Q4_0", "4.5", "4.1 GB"),
                ("Q3_K_M", "3.91", "3.5 GB"),
            ]),
        ],
    ),
    (
        "4. Memory math: will it fit?",
        [
            "The memory needed for the weights follows directly from the number of parameters and the bits per "
            "weight: bytes = parameters x bits per weight / 8.",
            "For Mistral 7B in Q4_K_M this gives 7.24 billion x 4.85 / 8, so a 7B model in Q4_K_M needs about "
            "4.4 GB. A 13B model in Q4_K_M needs about 7.9 GB, and a 70B model in Q4_K_M needs about 42 GB, which "
            "calls for two 24 GB GPUs or a Mac with 64 GB of unified memory.",
            "The weights are not the only cost. The KV cache stores keys and values for every token in the "
            "context. Mistral 7B has 32 layers, 8 key-value heads and a head dimension of 128, so with an FP16 "
            "cache it needs 128 KiB per token, and 1 GiB for a context of 8,192 tokens. On top of that the "
            "runtime allocates compute buffers, usually a few hundred megabytes.",
            "Adding it up for Mistral 7B in Q4_K_M with an 8,192-token context: 4.4 GB of weights, about 1.1 GB "
            "of KV cache and about 0.5 GB of buffers, roughly 6 GB in total. The model therefore fits on a GPU "
            "with 8 GB of memory.",
            "Watch the units. Vendors state memory in GB (10^9 bytes), while many tools report GiB (2^30 bytes); "
            "1 GiB is about 1.074 GB. As a rule of thumb, leave 10 to 20 percent of the memory free for the "
            "operating system, the display and fragmentation.",
        ],
    ),
    (
        "5. Quality and choosing a level",
        [
            "The usual way to measure the damage done by quantization is perplexity, a measure of how well the "
            "model predicts a reference text; lower is better. Because absolute values depend on the text and "
            "the window size, compare every quantized file with the FP16 original on the same text, for example "
            "with the llama-perplexity tool.",
            "Q8_0 is practically indistinguishable from FP16. Q6_K and Q5_K_M are very close. Q4_K_M typically "
            "raises perplexity by roughly 1 to 2 percent, which is rarely noticeable in question answering. "
            "Below 4 bits quality falls faster, and small models suffer more than large ones.",
            "An importance matrix (imatrix) improves low-bit quantization. The llama-imatrix tool runs the model "
            "on calibration text and records which weights have the largest influence on the activations; "
            "llama-quantize then spends more precision on those weights. It helps most at 3 bits and below.",
            "Practical recommendations:",
            "- Use Q4_K_M as the default when memory is limited.",
            "- Use Q5_K_M or Q6_K if the model still fits with room for the KV cache.",
            "- Use Q8_0 as a reference when evaluating the system, to separate quantization errors from "
            "retrieval errors.",
            "- Prefer a larger model at lower precision over a smaller model at higher precision: a 13B model in "
            "Q4_K_M (about 7.9 GB) usually answers better than a 7B model in Q8_0 (about 7.7 GB).",
        ],
    ),
]

RERANK_PDF_TITLE = "交叉编码器重排序：原理与实践"

RERANK_PDF_PAGES = [
    (
        "第一部分：两阶段检索",
        [
            "本地问答系统的检索通常分为两个阶段。第一阶段是召回：用 BM25 或向量检索从整个资料集中快速取出前 50 个左右的候选段落。"
            "这一阶段要求快，宁可多取，也不要漏掉相关段落。",
            "第二阶段是重排序：用一个更精确但更慢的模型，即交叉编码器（cross-encoder），为每个候选段落重新打分，"
            "只把得分最高的前 5 个段落放进大模型的提示词。",
            "为什么不直接用向量检索的结果？向量检索使用双编码器（bi-encoder），查询和段落分别编码成向量，"
            "两者之间只通过一次点积发生交互，细节信息容易丢失。交叉编码器把查询和段落放在一起读，"
            "能够判断“段落是否真正回答了这个问题”，而不只是“话题是否相近”。",
            "两阶段的分工很清楚：召回阶段决定答案有没有机会被找到，重排序阶段决定答案能不能排进前几名。"
            "如果召回阶段漏掉了正确段落，重排序也无能为力。",
        ],
    ),
    (
        "第二部分：交叉编码器的工作原理",
        [
            "交叉编码器的输入是把查询和段落拼接成一个序列，形式为 [CLS] 查询 [SEP] 段落 [SEP]。"
            "模型内部的每一层注意力都能同时看到查询和段落中的所有词元，最后输出一个相关性分数（logit）。"
            "这个分数可以经过 sigmoid 函数映射到 0 到 1 之间，便于设置阈值。",
            "由于分数依赖于具体的查询，交叉编码器无法像双编码器那样预先为段落计算向量。"
            "每个查询与每个候选段落的组合都需要一次完整的前向计算。",
            "常见的重排序模型有两类。ms-marco-MiniLM-L-6-v2 是英文模型，只有 6 层，约 2270 万个参数，速度很快。"
            "bge-reranker-v2-m3 是多语言模型，基于 bge-m3，约 5.68 亿个参数，能够处理中英文混合的资料集。",
            "这些模型的最大输入长度一般为 512 个词元，超出部分会被截断。因此段落不宜过长，"
            "否则段落后半部分的内容在重排序时会被忽略。",
            "许多英文重排序模型是在 MS MARCO 数据集上训练的。该数据集来自真实的搜索日志，包含约 880 万个段落。",
        ],
    ),
    (
        "第三部分：延迟与成本",
        [
            "重排序的计算量与候选数量成正比：重排 50 个候选段落，就要做 50 次前向计算，通常分批执行。"
            "候选数量一般取 20 到 100 个：太少会限制召回，太多则延迟过高。",
            "粗略估算：在 8 核 CPU 上，用 MiniLM-L6 重排 50 个 256 词元的段落大约需要 0.2 到 0.5 秒。"
            "bge-reranker-v2-m3 的参数量约为它的 25 倍，在 CPU 上往往需要数秒，建议放在 GPU 上运行。"
            "在 GPU 上，重排序通常比 CPU 快一个数量级。",
            "几条降低延迟的经验：",
            "1. 批大小设为 16 到 32，充分利用矩阵运算。",
            "2. 把段落截断到 512 个词元以内，最好在切块时就控制长度。",
            "3. 对重复出现的查询缓存重排序结果。",
            "4. 与生成阶段相比，重排序的开销通常很小：生成一个几百词元的回答往往需要好几秒，"
            "而重排序只增加几百毫秒，却能明显提高答案质量。",
        ],
    ),
    (
        "第四部分：结果融合与拒答阈值",
        [
            "混合检索会同时得到 BM25 和向量检索两份排名列表。最常用的合并方法是倒数排名融合（RRF），"
            "由 Cormack 等人在 2009 年提出。每个文档的融合分数为：score(d) = Σ 1 / (k + rank_i(d))，"
            "其中 rank_i(d) 是文档在第 i 个列表中的名次，常数 k 通常取 60。",
            "举例：某段落在 BM25 结果中排第 1 名，在向量检索结果中排第 3 名，"
            "融合分数为 1/61 + 1/63 ≈ 0.0323。只在一个列表中排第 1 名的段落，分数约为 0.0164。"
            "因此同时被两种方法认可的段落会排在前面。RRF 只使用名次，不使用原始分数，"
            "所以不需要把 BM25 分数和余弦相似度归一化到同一尺度。",
            "重排序分数还可以用来决定是否拒答：如果经过 sigmoid 之后的最高分低于 0.3，就说明资料集中很可能没有答案，"
            "系统应直接回答“无法根据资料回答”，而不是让大模型猜测。这个阈值需要在开发集上调整。",
            "评测重排序的效果时，可以比较重排前后的 Recall@5：重排序的目标正是把正确段落从前 50 名提升到前 5 名。",
        ],
    ),
]


# ---------------------------------------------------------------------------
# Collection layout
# ---------------------------------------------------------------------------

TEXT_FILES = {
    "tokenization-and-transformers.md": TOKENIZATION_MD,
    "embeddings-and-vector-search.md": EMBEDDINGS_MD,
    "glossary.md": GLOSSARY_MD,
    "bm25-lexical-retrieval.txt": BM25_TXT,
    "kv-cache-context-window-zh.md": KV_CACHE_ZH_MD,
    "rag-evaluation-zh.txt": EVALUATION_ZH_TXT,
}

HTML_FILES = {
    "rag-with-citations.html": ("Retrieval-Augmented Generation with Citations", "en", "RAG", RAG_HTML_BODY),
    "running-on-cpu-metal-cuda.html": ("Running Local Models on CPU, Metal and CUDA", "en", "HW", BACKENDS_HTML_BODY),
}

PDF_FILES = {
    "quantization-guide.pdf": ("en", QUANT_PDF_TITLE, QUANT_PDF_PAGES),
    "reranking-cross-encoders-zh.pdf": ("zh", RERANK_PDF_TITLE, RERANK_PDF_PAGES),
}


def all_doc_names() -> list[str]:
    return sorted([*TEXT_FILES, *HTML_FILES, *PDF_FILES])


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------


def write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def find_font(candidates: list[str], package: str) -> str:
    for cand in candidates:
        if Path(cand).is_file():
            return cand
    sys.exit(f"error: font not found (tried {', '.join(candidates)}); install the Debian package {package}")


def _wrap_lines(pdf, text: str, width: float) -> list[str]:
    """Greedy line breaking that may break between CJK characters and at
    spaces, but never inside a run of ASCII characters (so English words and
    identifiers such as Q4_K_M stay intact). CJK closing punctuation is kept
    on the line of the preceding character."""
    tokens = re.findall(r"[\x21-\x7e]+|\s+|.", text)
    merged: list[str] = []
    for tok in tokens:
        if merged and tok in "，。、；：！？）》”" and tok:
            merged[-1] += tok
        else:
            merged.append(tok)
    lines: list[str] = []
    cur = ""
    for tok in merged:
        cand = cur + tok
        if cur and pdf.get_string_width(cand.rstrip()) > width:
            lines.append(cur.rstrip())
            cur = tok.lstrip()
        else:
            cur = cand
    if cur.strip():
        lines.append(cur.rstrip())
    return lines


def write_pdf(path: Path, lang: str, title: str, pages: list) -> None:
    from fpdf import FPDF

    doc_title = title

    class DocPDF(FPDF):
        def footer(self):  # noqa: D401 - fpdf2 hook
            self.set_y(-15)
            if lang == "zh":
                self.set_font("droid", size=8)
            self.set_font(body_font, size=8)
            self.set_text_color(110, 110, 110)
            label = f"{doc_title} - page {self.page_no()} of {{nb}}"
            self.cell(0, 8, label, align="C")
            self.set_text_color(0, 0, 0)

    pdf = DocPDF(format="A4", unit="mm")
    pdf.set_creation_date(CREATION_DATE)
    pdf.set_title(title)
    pdf.set_author("Local RAG sample collection (CC0)")
    pdf.set_subject("How local LLM question answering works")
    pdf.set_lang("zh-CN" if lang == "zh" else "en")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.alias_nb_pages()

    if lang == "zh":
        pdf.add_font("dejavu", "", find_font(LATIN_FONT_CANDIDATES, "fonts-dejavu-core"))
        pdf.add_font("droid", "", find_font(CJK_FONT_CANDIDATES, "fonts-droid-fallback"))
        body_font, head_font, head_style = "dejavu", "dejavu", ""
        pdf.set_fallback_fonts(["droid"], exact_match=False)
        line_h = 7.0
    else:
        body_font, head_font, head_style = "Helvetica", "Helvetica", "B"
        line_h = 5.8

    def put_line(w: float, h: float, text: str, **kwargs) -> None:
        if lang == "zh":
            # fpdf2 does not re-select the main font in the content stream when
            # the previous cell ended with a fallback-font glyph; toggling the
            # font forces an explicit font selection before every line.
            family, style, size = pdf.font_family, pdf.font_style, pdf.font_size_pt
            pdf.set_font("droid", "", size)
            pdf.set_font(family, style, size)
        pdf.cell(w, h, text, **kwargs)

    width = pdf.w - pdf.l_margin - pdf.r_margin
    for number, (heading, blocks) in enumerate(pages, start=1):
        pdf.add_page()
        if number == 1:
            pdf.set_font(body_font, size=9)
            pdf.set_text_color(110, 110, 110)
            for line in _wrap_lines(pdf, title, width):
                put_line(width, 5, line, new_x="LMARGIN", new_y="NEXT")
            pdf.set_text_color(0, 0, 0)
            pdf.ln(3)
        pdf.set_font(head_font, head_style, 15)
        for line in _wrap_lines(pdf, heading, width):
            put_line(width, 8, line, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        pdf.set_font(body_font, size=11)
        for block in blocks:
            if isinstance(block, tuple) and block[0] == "table":
                rows = block[1]
                col_w = [width * 0.3, width * 0.35, width * 0.35]
                for r, row in enumerate(rows):
                    pdf.set_font(body_font, "B" if (r == 0 and lang != "zh") else "", 10.5)
                    for c, cell in enumerate(row):
                        last = c == len(row) - 1
                        put_line(col_w[c], 6.5, cell, border=1,
                                 new_x="LMARGIN" if last else "RIGHT",
                                 new_y="NEXT" if last else "TOP")
                pdf.set_font(body_font, size=11)
                pdf.ln(3)
                continue
            for line in _wrap_lines(pdf, block, width):
                put_line(width, line_h, line, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2.5)
        if pdf.page_no() != number:
            sys.exit(f"error: {path.name}: content of page {number} overflowed onto another page")
    pdf.output(str(path))


def generate() -> None:
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in TEXT_FILES.items():
        write_text(DOCS_DIR / name, text)
    for name, (title, lang, decoy, body) in HTML_FILES.items():
        write_text(DOCS_DIR / name, HTML_TEMPLATE.format(title=title, lang=lang, decoy=decoy, body=body.rstrip("\n")))
    for name, (lang, title, pages) in PDF_FILES.items():
        write_pdf(DOCS_DIR / name, lang, title, pages)
    for name in all_doc_names():
        print(f"wrote {(DOCS_DIR / name).relative_to(HERE.parent)} ({(DOCS_DIR / name).stat().st_size} bytes)")


# ---------------------------------------------------------------------------
# Checker
# ---------------------------------------------------------------------------


class _VisibleText(HTMLParser):
    """Collects HTML text outside <script> and <style>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def doc_pages(path: Path) -> list[str]:
    """Text of a document as a list of pages (one page for non-PDF files)."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        from pypdf import PdfReader

        return [page.extract_text() or "" for page in PdfReader(str(path)).pages]
    raw = path.read_text(encoding="utf-8")
    if suffix in (".html", ".htm"):
        parser = _VisibleText()
        parser.feed(raw)
        parser.close()
        return [" ".join(parser.parts)]
    return [raw]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def _found(answer: str, page_text: str) -> bool:
    a, t = _norm(answer), _norm(page_text)
    if a and a in t:
        return True
    # Line breaks inside CJK text become spaces; also compare without any whitespace.
    a2, t2 = a.replace(" ", ""), t.replace(" ", "")
    return bool(a2) and a2 in t2


def doc_language(name: str) -> str:
    """The language of a sample document, from its name: the Chinese ones end in '-zh'."""
    return "zh" if Path(name).stem.endswith("-zh") else "en"


def _lang_len(text: str) -> tuple[int, int]:
    words = len(re.findall(r"[A-Za-z0-9][A-Za-z0-9'_.\-]*", text))
    cjk = len(re.findall(r"[\u4e00-\u9fff]", text))
    return words, cjk


def check() -> int:
    errors: list[str] = []
    names = all_doc_names()
    cache: dict[str, list[str]] = {}
    for name in names:
        path = DOCS_DIR / name
        if not path.is_file():
            errors.append(f"missing document {name}; run python data/make_sample.py")
            continue
        cache[name] = doc_pages(path)
        words, cjk = _lang_len(" ".join(cache[name]))
        print(f"  {name}: {len(cache[name])} page(s), {words} words, {cjk} CJK chars, "
              f"{path.stat().st_size} bytes")
        if path.suffix == ".pdf" and name in PDF_FILES:
            # Every character written on a page must come back from text extraction.
            for number, (heading, blocks) in enumerate(PDF_FILES[name][2], start=1):
                parts = [heading]
                for block in blocks:
                    if isinstance(block, tuple):
                        parts.extend(cell for row in block[1] for cell in row)
                    else:
                        parts.append(block)
                want = re.sub(r"\s+", "", _norm(" ".join(parts)))
                got = re.sub(r"\s+", "", _norm(cache[name][number - 1])) if number <= len(cache[name]) else ""
                if want not in got:
                    errors.append(f"{name}: text of page {number} does not round-trip through pypdf")
    extra = sorted(p.name for p in DOCS_DIR.iterdir() if p.name not in names) if DOCS_DIR.is_dir() else []
    if extra:
        errors.append(f"unexpected files in data/docs: {extra}")

    for path in (QUESTIONS, CROSSLINGUAL):
        check_questions(path, cache, errors)
    for err in errors:
        print(f"ERROR {err}")
    if errors:
        print(f"check FAILED with {len(errors)} error(s)")
        return 1
    print("check OK: every reference answer was found on its gold page")
    return 0


def check_questions(path: Path, cache: dict[str, list[str]], errors: list[str]) -> None:
    """Validate one questions file against the documents' pages in `cache`; problems go to `errors`."""
    total = unanswerable = zh = followup = answerable = 0
    ids: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{lineno}"
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: invalid JSON ({exc})")
            continue
        total += 1
        missing = {"id", "question", "lang", "answers", "gold", "type"} - set(q)
        if missing:
            errors.append(f"{where}: missing fields {sorted(missing)}")
            continue
        qid = q["id"]
        if qid in ids:
            errors.append(f"{where}: duplicate id {qid}")
        ids.add(qid)
        if q["lang"] not in ("en", "zh"):
            errors.append(f"{qid}: bad lang {q['lang']!r}")
        if q["type"] not in ("factoid", "unanswerable", "followup"):
            errors.append(f"{qid}: bad type {q['type']!r}")
        if not isinstance(q["question"], str) or not q["question"].strip():
            errors.append(f"{qid}: empty question")
        zh += q["lang"] == "zh"
        if "direction" in q:
            # A cross-lingual question: asked in one language, answered only by documents in the other.
            if q["direction"] not in DIRECTIONS or q["direction"].split("→")[0] != q["lang"]:
                errors.append(f"{qid}: direction {q['direction']!r} is not one of {DIRECTIONS} "
                              f"starting with its lang {q['lang']!r}")
            elif any(doc_language(g.get("source", "")) != q["direction"].split("→")[1] for g in q["gold"]):
                errors.append(f"{qid}: a gold source is not in the language its direction names")
        if "history" in q or q["type"] == "followup":
            followup += q["type"] == "followup"
            hist = q.get("history")
            if not (isinstance(hist, list) and hist and all(
                    isinstance(h, dict) and h.get("role") in ("user", "assistant") and isinstance(h.get("content"), str)
                    for h in hist)):
                errors.append(f"{qid}: followup needs a non-empty history of {{role, content}} turns")
        if q["type"] == "unanswerable" or not q["answers"]:
            if q["answers"] or q["gold"]:
                errors.append(f"{qid}: unanswerable questions must have empty answers and gold")
            if q["type"] != "unanswerable":
                errors.append(f"{qid}: empty answers but type {q['type']!r}")
            unanswerable += 1
            continue
        answerable += 1
        if not q["gold"]:
            errors.append(f"{qid}: answerable question without gold")
        for g in q["gold"]:
            src, page = g.get("source"), g.get("page")
            if src not in cache:
                errors.append(f"{qid}: unknown gold source {src!r}")
                continue
            if not isinstance(page, int) or not 1 <= page <= len(cache[src]):
                errors.append(f"{qid}: page {page!r} out of range for {src} ({len(cache[src])} pages)")
                continue
            if not any(_found(ans, cache[src][page - 1]) for ans in q["answers"]):
                errors.append(f"{qid}: none of {q['answers']} found in {src} page {page}")

    print(f"{path.name}: {total} questions, answerable: {answerable}, unanswerable: {unanswerable} "
          f"({100.0 * unanswerable / max(total, 1):.0f} %), zh: {zh}, followup: {followup}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="validate the data/eval question files against data/docs instead of writing files")
    args = parser.parse_args()
    if args.check:
        return check()
    generate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
