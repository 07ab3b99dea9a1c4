"""Retrieval for prompts: chunk documents, embed them with a sentence encoder (MiniLM: mean pooling + L2 norm),
find the top-k by cosine similarity (FAISS when installed, NumPy otherwise), write a prompt that names its
sources, and a response cache that answers repeated and near-repeated prompts without the model."""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ui
from .models import load_tokenizer, resolve


def chunk_articles(articles: Sequence[dict[str, str]], max_words: int = 120,
                   max_chunks_per_article: int | None = None) -> list[dict[str, str]]:
    """Split each article ({id, title, text}) into chunks of whole paragraphs, at most about `max_words` words
    (a longer paragraph is cut at sentence ends). Chunk ids are '<article id>#<n>', so a citation names its article.
    `max_chunks_per_article` keeps only the first chunks (an article's lead summarizes it)."""
    if max_words < 10:
        raise ValueError(f"max_words={max_words} is too small for a useful chunk (try 100-200)")
    chunks = []
    for art in articles:
        missing = {"id", "title", "text"} - set(art)
        if missing:
            raise ValueError(f"article {art.get('id', '?')} lacks {sorted(missing)}: expected id, title and text")
        pieces = []
        for para in re.split(r"\n\s*\n", art["text"]):
            para = re.sub(r"^\s*=.*=\s*$", "", para, flags=re.M).strip()  # drop section headings
            if not para:
                continue
            pieces.extend(_split_long(para, max_words))
        current: list[str] = []
        for piece in pieces:
            if current and len(" ".join(current + [piece]).split()) > max_words:
                chunks.append(_chunk(art, len([c for c in chunks if c["source"] == art["id"]]) + 1, current))
                current = []
            current.append(piece)
        if current:
            chunks.append(_chunk(art, len([c for c in chunks if c["source"] == art["id"]]) + 1, current))
    if max_chunks_per_article:
        chunks = [c for c in chunks if int(c["id"].rsplit("#", 1)[1]) <= max_chunks_per_article]
    return chunks


def _chunk(article: dict[str, str], n: int, pieces: list[str]) -> dict[str, str]:
    return {"id": f"{article['id']}#{n}", "source": article["id"], "title": article["title"],
            "text": " ".join(pieces)}


def _split_long(paragraph: str, max_words: int) -> list[str]:
    if len(paragraph.split()) <= max_words:
        return [paragraph]
    out, current = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
        if current and len((current + " " + sentence).split()) > max_words:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    return out + ([current] if current else [])


class Embedder:
    """Sentence embeddings from a BERT-style encoder through transformers: mean of the token vectors (padding
    masked out), L2-normalized, so that a dot product is the cosine similarity (what all-MiniLM-L6-v2 was
    trained for; its sentence-transformers config says mean pooling + normalize)."""

    def __init__(self, name_or_path: str, max_length: int = 256, batch_size: int = 32) -> None:
        from transformers import AutoModel

        self.tokenizer = load_tokenizer(name_or_path)
        self.model = AutoModel.from_pretrained(resolve(name_or_path)).eval()
        self.max_length, self.batch_size = max_length, batch_size

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors."""
        import torch

        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts; wrap a single text in a list")
        out = []
        starts = range(0, len(texts), self.batch_size)
        for i in ui.progress(starts, show=progress, desc="embedding"):
            batch = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(mean, dim=-1).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)


def faiss_available() -> bool:
    """True when the optional `faiss` package (faiss-cpu) is importable."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class VectorIndex:
    """Exact top-k search by inner product over unit vectors (= cosine similarity): a FAISS IndexFlatIP when
    faiss is installed and `backend` allows it, else one NumPy matrix product. Both give the same neighbours."""

    def __init__(self, vectors: np.ndarray, backend: str = "auto") -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or not len(vectors):
            raise ValueError(f"expected a non-empty (n, dim) matrix of embeddings, got shape {vectors.shape}")
        if backend not in ("auto", "faiss", "numpy"):
            raise ValueError(f"unknown backend '{backend}': use 'auto', 'faiss' or 'numpy'")
        if backend == "faiss" and not faiss_available():
            raise ValueError("backend 'faiss' asked for but faiss is not installed: pip install faiss-cpu")
        self.backend = "faiss" if backend == "faiss" or (backend == "auto" and faiss_available()) else "numpy"
        self.vectors = vectors
        if self.backend == "faiss":
            import faiss

            self._index = faiss.IndexFlatIP(vectors.shape[1])
            self._index.add(vectors)

    def search(self, queries: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices), each (n_queries, k), best first."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"query vectors have {queries.shape[1]} dimensions, the index {self.vectors.shape[1]}: "
                             "embed queries with the same model as the documents")
        k = min(k, len(self.vectors))
        if self.backend == "faiss":
            return self._index.search(queries, k)
        scores = queries @ self.vectors.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, top, axis=1), top


class Retriever:
    """Chunks + their embeddings + an index: `retrieve(question, k)` returns the k closest chunks with scores."""

    def __init__(self, chunks: list[dict[str, str]], embedder: Embedder, backend: str = "auto",
                 progress: bool = False) -> None:
        if not chunks:
            raise ValueError("no chunks to index: chunk_articles() returned nothing")
        self.chunks, self.embedder = chunks, embedder
        self.index = VectorIndex(embedder.encode([f"{c['title']}: {c['text']}" for c in chunks], progress), backend)

    def retrieve(self, question: str, k: int = 3) -> list[dict[str, Any]]:
        scores, idx = self.index.search(self.embedder.encode([question]), k)
        return [{**self.chunks[i], "score": float(s)} for s, i in zip(scores[0], idx[0])]


def hit_rate(retriever: Retriever, questions: Sequence[dict[str, str]], k: int = 3) -> dict[str, Any]:
    """For questions with a known source article ({question, source}): the share whose source is among the top-k
    retrieved chunks, and the rank at which it first appears (None when it does not)."""
    ranks = []
    for q in questions:
        sources = [h["source"] for h in retriever.retrieve(q["question"], k)]
        ranks.append(sources.index(q["source"]) + 1 if q["source"] in sources else None)
    return {"k": k, "hit_rate": sum(r is not None for r in ranks) / len(ranks), "ranks": ranks}


def rag_prompt(question: str, hits: Sequence[dict[str, Any]], max_words: int | None = None) -> str:
    """A prompt that puts each retrieved chunk under its source id and asks for an answer that cites one."""
    blocks = []
    for h in hits:
        words = h["text"].split()
        text = " ".join(words[:max_words]) if max_words else h["text"]
        blocks.append(f"[{h['source']}] {h['title']}: {text}")
    sources = "\n".join(blocks)
    return (f"Answer the question from the sources below and cite the source id in brackets.\n\n{sources}\n\n"
            f"Question: {question}\nAnswer (with source id):")


def cited_sources(answer: str) -> list[str]:
    """Source ids cited in brackets, e.g. '[astronomy-03]', in order of appearance."""
    return re.findall(r"\[([a-z]+-\d+)(?:#\d+)?\]", answer)


@dataclass
class ResponseCache:
    """Answers already given, looked up before the model runs: an identical prompt (after whitespace and case
    folding) is an exact hit; otherwise the most similar cached prompt counts when its cosine similarity is at
    least `threshold`. Keeps hit counts and the generation time saved (the cost of the original answer). Safe to
    share between threads: lookups and stores take a lock, generation runs outside it."""

    embed: Callable[[list[str]], np.ndarray]
    threshold: float = 0.92
    prompts: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=lambda: {"exact": 0, "similar": 0, "miss": 0, "saved_s": 0.0})

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold={self.threshold} must be in (0, 1]: it is a cosine similarity")
        self._keys: dict[str, int] = {}
        self._vectors: list[np.ndarray] = []
        self._lock = threading.Lock()

    @staticmethod
    def key(prompt: str) -> str:
        return " ".join(prompt.lower().split())

    def _find(self, prompt: str) -> tuple[int | None, str, float]:
        if self.key(prompt) in self._keys:
            return self._keys[self.key(prompt)], "exact", 1.0
        if not self._vectors:
            return None, "miss", 0.0
        sims = np.stack(self._vectors) @ self.embed([prompt])[0]
        best = int(sims.argmax())
        if sims[best] >= self.threshold:
            return best, "similar", float(sims[best])
        return None, "miss", float(sims[best])

    def lookup(self, prompt: str) -> tuple[str | None, str, float]:
        """(answer or None, 'exact' | 'similar' | 'miss', similarity of the closest cached prompt)."""
        idx, kind, sim = self._find(prompt)
        return (self.answers[idx] if idx is not None else None), kind, sim

    def answer(self, prompt: str, generate: Callable[[str], str]) -> dict[str, Any]:
        """The cached answer when there is one, else `generate(prompt)` (timed and stored)."""
        start = time.perf_counter()
        with self._lock:
            idx, kind, sim = self._find(prompt)
            if idx is not None:
                seconds = time.perf_counter() - start
                self.stats[kind] += 1
                self.stats["saved_s"] += max(self.costs[idx] - seconds, 0.0)
                return {"prompt": prompt, "answer": self.answers[idx], "cache": kind, "similarity": sim,
                        "seconds": seconds}
        text = generate(prompt)
        seconds = time.perf_counter() - start
        vector = self.embed([prompt])[0]
        with self._lock:
            self._keys[self.key(prompt)] = len(self.prompts)
            self.prompts.append(prompt)
            self.answers.append(text)
            self.costs.append(seconds)
            self._vectors.append(vector)
            self.stats["miss"] += 1
        return {"prompt": prompt, "answer": text, "cache": "miss", "similarity": sim, "seconds": seconds}

    @property
    def hit_rate(self) -> float:
        total = self.stats["exact"] + self.stats["similar"] + self.stats["miss"]
        return (self.stats["exact"] + self.stats["similar"]) / total if total else 0.0
