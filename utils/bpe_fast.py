"""The BPE tokenizer of `utils.bpe` made fast, with the same interface and exactly the same merges and ids.

Training works on the unique pre-split chunks with their counts, and after each merge updates the pair counts
of only the chunks that contained the pair (a heap finds the next best pair), instead of recounting everything.
Encoding replays the merges by rank per chunk and caches the ids of chunks it has seen.

Its benchmark against `utils.bpe` and Hugging Face `tokenizers` is in `utils.bpe_benchmark`.
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict

from .bpe import Tokenizer, _progress, check_text, merge

_IDENTITY = list(range(256))


class FastTokenizer(Tokenizer):
    """`utils.bpe.Tokenizer` with incremental training and cached encoding; `cache_size` caps the chunk cache."""

    cache_size = 100_000

    def _rebuild(self) -> None:
        super()._rebuild()
        self._cache: dict[str, list[int]] = {}  # chunk -> ids; cleared whenever the merges change

    def train(self, text: str, vocab_size: int, progress: bool = False) -> FastTokenizer:
        """Learn the same merges as `Tokenizer.train`, updating pair counts incrementally."""
        vocab_size = self._check_vocab_size(vocab_size)
        self.merges = {}
        self._rebuild()
        chunk_counts = Counter(self.split_text(text))
        words = [[self.byte_ids[b] for b in chunk.encode("utf-8")] for chunk in chunk_counts]
        counts = list(chunk_counts.values())
        stats: dict[tuple[int, int], int] = defaultdict(int)  # pair -> count, weighted by chunk frequency
        where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> chunks that (may) contain it
        for w, (word, n) in enumerate(zip(words, counts)):
            for pair in zip(word, word[1:]):
                stats[pair] += n
                where[pair].add(w)
        # A max-heap of (count, pair) with lazy deletion; the key (-count, pair) is the shared tie-break rule.
        # Invariant: every live pair has an entry whose count is >= its current count.
        heap = [(-n, pair) for pair, n in stats.items()]
        heapq.heapify(heap)
        by_bytes = {token: idx for idx, token in self.vocab.items()}
        next_id = max(self.vocab) + 1
        bar = _progress(progress, vocab_size - len(self.vocab), "BPE training (fast)")
        while len(self.vocab) < vocab_size and heap:
            neg, pair = heapq.heappop(heap)
            current = stats.get(pair, 0)
            if current != -neg:
                if 0 < current < -neg:  # the count fell since this entry was pushed: put it back with the true one
                    heapq.heappush(heap, (-current, pair))
                continue
            token = self.vocab[pair[0]] + self.vocab[pair[1]]
            idx = by_bytes.get(token)
            if idx is None:
                idx, next_id = next_id, next_id + 1
                self.vocab[idx] = by_bytes[token] = token
                bar.update(1)
            self.merges[pair] = idx
            grown = set()
            for w in where.pop(pair):
                word = words[w]
                new = merge(word, pair, idx)
                if len(new) == len(word):
                    continue  # an earlier merge already removed the pair from this chunk
                n = counts[w]
                for p in zip(word, word[1:]):
                    stats[p] -= n
                for p in zip(new, new[1:]):
                    stats[p] += n
                    if idx in p:  # only pairs with the new token can be new to this chunk or grow
                        where[p].add(w)
                        grown.add(p)
                words[w] = new
            del stats[pair]
            for p in grown:
                if stats[p] > 0:
                    heapq.heappush(heap, (-stats[p], p))
        bar.close()
        self._rebuild()
        return self

    long_chunk = 64  # from this many bytes on, a chunk is encoded with a heap instead of rescanning its pairs

    def _encode_chunk(self, data: bytes) -> list[int]:
        """The rank loop of `Tokenizer._encode_chunk` (same result): lowest rank first, the leftmost on ties."""
        ids = list(data) if self.byte_ids == _IDENTITY else [self.byte_ids[b] for b in data]
        if len(ids) >= self.long_chunk:
            return self._encode_long(ids)
        ranks, merges, never = self.ranks, self.merges, len(self.ranks)
        while len(ids) >= 2:
            pairs = list(zip(ids, ids[1:]))
            best = min(pairs, key=lambda p: ranks.get(p, never))  # min() keeps the leftmost of equal ranks
            if best not in ranks:
                break
            i = pairs.index(best)
            ids[i:i + 2] = [merges[best]]
        return ids

    def _encode_long(self, ids: list[int]) -> list[int]:
        """The same loop in O(n log n) for long chunks: a heap of (rank, position) over a linked list of symbols."""
        ranks, merges, n = self.ranks, self.merges, len(ids)
        nxt, prv, alive = list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
        heap = [(ranks[p], i) for i, p in enumerate(zip(ids, ids[1:])) if p in ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = nxt[i]
            if not alive[i] or j >= n or ranks.get((ids[i], ids[j])) != rank:
                continue  # a stale entry: this pair was changed by an earlier merge
            ids[i], alive[j], nxt[i] = merges[ids[i], ids[j]], False, nxt[j]
            if nxt[i] < n:
                prv[nxt[i]] = i
                pair = (ids[i], ids[nxt[i]])
                if pair in ranks:
                    heapq.heappush(heap, (ranks[pair], i))
            if prv[i] >= 0:
                pair = (ids[prv[i]], ids[i])
                if pair in ranks:
                    heapq.heappush(heap, (ranks[pair], prv[i]))
        return [idx for idx, keep in zip(ids, alive) if keep]

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text` ignoring special tokens; chunks seen before come from the cache."""
        check_text(text)
        chunks = self.compiled.findall(text) if self.compiled is not None else ([text] if text else [])
        cache, out = self._cache, []
        for chunk in chunks:
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk.encode("utf-8"))
                if len(cache) < self.cache_size:
                    cache[chunk] = ids
            out.extend(ids)
        return out
