import numpy as np
import pytest

from utils import rag

ARTICLES = [
    {"id": "space-01", "title": "Moon", "text": "The Moon orbits the Earth.\n\n = = Origin = = \n\n"
     "A giant impact made it. " * 3},
    {"id": "food-01", "title": "Bread", "text": "Bread is baked from flour and water. Yeast makes it rise."},
]


@pytest.fixture(scope="module")
def embedder():
    return rag.Embedder("local:minilm")


def test_chunks_are_paragraphs_with_ids_that_name_their_article():
    chunks = rag.chunk_articles(ARTICLES, max_words=12)
    assert [c["id"] for c in chunks][:2] == ["space-01#1", "space-01#2"] and chunks[-1]["id"] == "food-01#1"
    assert all(len(c["text"].split()) <= 12 for c in chunks)
    assert not any("=" in c["text"] for c in chunks)  # section headings are not content
    assert {c["source"] for c in rag.chunk_articles(ARTICLES, 12, max_chunks_per_article=1)} == {"space-01", "food-01"}
    assert len(rag.chunk_articles(ARTICLES, 12, max_chunks_per_article=1)) == 2
    with pytest.raises(ValueError, match="too small"):
        rag.chunk_articles(ARTICLES, max_words=2)
    with pytest.raises(ValueError, match="lacks \\['text'\\]"):
        rag.chunk_articles([{"id": "x", "title": "y"}])


def test_minilm_embeddings_are_unit_vectors_and_rank_paraphrases_first(embedder):
    vecs = embedder.encode(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock prices fell today."])
    assert vecs.shape == (3, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert vecs[0] @ vecs[1] > 0.6 > vecs[0] @ vecs[2]
    with pytest.raises(TypeError, match="list of texts"):
        embedder.encode("one text")


def test_numpy_index_finds_the_exact_cosine_top_k():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = rag.VectorIndex(vecs, backend="numpy")
    scores, idx = index.search(vecs[[3, 7]], k=4)
    assert idx[0, 0] == 3 and idx[1, 0] == 7 and np.allclose(scores[:, 0], 1)
    assert list(idx[0]) == list(np.argsort(-(vecs @ vecs[3]))[:4])
    with pytest.raises(ValueError, match="same model"):
        index.search(np.ones((1, 5)), 2)
    with pytest.raises(ValueError, match="non-empty"):
        rag.VectorIndex(np.zeros((0, 8)))


def test_faiss_is_optional_and_agrees_with_numpy():
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(30, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    auto = rag.VectorIndex(vecs)
    assert auto.backend == ("faiss" if rag.faiss_available() else "numpy")
    if rag.faiss_available():
        assert (auto.search(vecs[:5], 3)[1] == rag.VectorIndex(vecs, "numpy").search(vecs[:5], 3)[1]).all()
    else:
        with pytest.raises(ValueError, match="pip install faiss-cpu"):
            rag.VectorIndex(vecs, backend="faiss")


def test_retrieval_hit_rate_prompt_and_citations(embedder):
    retriever = rag.Retriever(rag.chunk_articles(ARTICLES, 40), embedder)
    hits = retriever.retrieve("How is bread made?", k=1)
    assert hits[0]["source"] == "food-01" and 0 < hits[0]["score"] <= 1
    result = rag.hit_rate(retriever, [{"question": "What orbits the Earth?", "source": "space-01"},
                                      {"question": "What makes dough rise?", "source": "food-01"}], k=1)
    assert result["hit_rate"] == 1.0 and result["ranks"] == [1, 1]
    prompt = rag.rag_prompt("How is bread made?", hits)
    assert "[food-01] Bread:" in prompt and prompt.endswith("Answer (with source id):")
    assert rag.cited_sources("It is baked [food-01], see also [space-01#2].") == ["food-01", "space-01"]


def test_response_cache_exact_similar_and_miss():
    table = {"what is the moon?": [1, 0, 0], "what's the moon?": [0.99, 0.14, 0], "what is bread?": [0, 1, 0]}

    def embed(texts):
        vecs = np.array([table[" ".join(t.lower().split())] for t in texts], dtype=np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    calls = []
    cache = rag.ResponseCache(embed, threshold=0.95)
    generate = lambda p: calls.append(p) or f"answer to {p}"  # noqa: E731
    assert cache.answer("What is the Moon?", generate)["cache"] == "miss"
    assert cache.answer("  what is THE moon? ", generate)["cache"] == "exact"
    similar = cache.answer("What's the Moon?", generate)
    assert similar["cache"] == "similar" and similar["answer"] == "answer to What is the Moon?"
    assert cache.answer("What is bread?", generate)["cache"] == "miss"
    assert calls == ["What is the Moon?", "What is bread?"] and cache.hit_rate == 0.5
    assert cache.stats["saved_s"] >= 0
    with pytest.raises(ValueError, match="cosine similarity"):
        rag.ResponseCache(embed, threshold=1.5)
