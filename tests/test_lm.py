import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils import lm, models
from utils.data import DataError


class Uniform(torch.nn.Module):
    """A language model that gives every one of `vocab` tokens the same probability, whatever the context."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        return torch.zeros(*input_ids.shape, self.vocab)


@pytest.fixture(scope="module")
def gpt2():
    return models.load_causal_lm("local:tiny-gpt2")


@pytest.fixture(scope="module")
def tok():
    return models.load_tokenizer("local:tiny-gpt2")


# --- text ---------------------------------------------------------------------------------------------------

def test_load_texts_reads_the_shipped_corpus_with_its_headings():
    texts = lm.load_texts("local:corpus")
    assert set(texts) == {"train", "valid"}
    assert any(lm.is_heading(line) for line in texts["train"]) and "" in texts["valid"]


@pytest.mark.parametrize("source", ["wikitext", "local:wikitext", "Salesforce/wikitext:", ":wikitext-2-raw-v1"])
def test_load_texts_rejects_an_unknown_source(source):
    with pytest.raises(DataError, match="unknown text source.*'path:config'"):
        lm.load_texts(source)


def test_load_texts_wants_a_name():
    with pytest.raises(TypeError, match="source must be a string"):
        lm.load_texts(None)


def test_clean_lines_drops_empty_lines_and_wikitext_headings():
    raw = [" = Valkyria = \n", " \n", " The game began in 2010 . \n", " = = Plot = = \n", "",
           " = = = Early life = = = ", " In math , x = 5 = y holds . \n", "=== not a heading"]
    assert lm.clean_lines(raw) == ["The game began in 2010 .", "In math , x = 5 = y holds .", "=== not a heading"]


def test_clean_lines_wants_lines_not_one_string():
    with pytest.raises(TypeError, match="splitlines"):
        lm.clean_lines("one long text")


def test_group_blocks_concatenates_and_drops_the_short_rest():
    assert lm.group_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    with pytest.raises(ValueError, match="block_size must be an integer >= 2"):
        lm.group_blocks([[1, 2, 3]], 1)


@settings(deadline=None)  # a loaded machine must not fail a correct test on time
@given(st.lists(st.lists(st.integers(0, 9), max_size=12), max_size=12), st.integers(2, 9))
def test_group_blocks_keeps_the_stream_in_order(lists, size):
    stream = [t for ids in lists for t in ids]
    blocks = lm.group_blocks(lists, size)
    assert all(len(b) == size for b in blocks) and len(blocks) == len(stream) // size
    assert [t for b in blocks for t in b] == stream[: len(blocks) * size]


# --- perplexity ---------------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.integers(2, 300), st.integers(2, 40), st.data())
def test_windows_score_every_token_once_with_enough_context(n, window, data):
    stride = data.draw(st.integers(1, window - 1))
    spans = lm.windows(n, window, stride)
    scored = [p for b, e, first in spans for p in range(first, e)]
    assert scored == list(range(1, n))  # every token but the first, once, in order
    for b, e, first in spans:
        assert e - b <= window and b < first
        if b > 0:
            assert first - b >= window - stride  # the context each scored token sees, at least


@pytest.mark.parametrize("vocab,n,window,stride", [(50, 200, 16, 8), (2048, 99, 32, 31), (7, 5, 64, 32)])
def test_uniform_model_has_perplexity_equal_to_its_vocabulary(vocab, n, window, stride):
    ids = torch.randint(0, vocab, (n,))
    result = lm.perplexity(Uniform(vocab), ids, window=window, stride=stride, batch_size=3)
    assert result.ppl == pytest.approx(vocab, rel=1e-5)
    assert result.n_tokens == n - 1 == sum(result.window_tokens)


def test_perplexity_agrees_with_the_models_own_loss_on_one_window(gpt2):
    ids = torch.randint(0, gpt2.config.vocab_size, (120,), generator=torch.Generator().manual_seed(0))
    ours = lm.perplexity(gpt2, ids)  # 120 tokens fit the 256-token context: one window
    with torch.no_grad():
        loss = gpt2(input_ids=ids[None], labels=ids[None]).loss.item()
    assert ours.n_windows == 1 and ours.loss == pytest.approx(loss, rel=1e-5)


def test_sliding_window_is_token_weighted_and_default_window_is_the_context(gpt2):
    ids = torch.randint(0, gpt2.config.vocab_size, (700,), generator=torch.Generator().manual_seed(1))
    result = lm.perplexity(gpt2, ids, batch_size=2)
    assert (result.window, result.stride) == (256, 128) and result.n_tokens == 699
    assert result.loss == pytest.approx(sum(result.window_nll) / sum(result.window_tokens))
    assert math.exp(result.loss) == pytest.approx(result.ppl)
    assert result.window_tokens[0] == 255 and set(result.window_tokens[1:-1]) == {128}


def test_perplexity_bad_input_says_what_to_do(gpt2):
    ids = list(range(100))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        lm.perplexity(gpt2, [5])
    with pytest.raises(ValueError, match="longer than the model's context.*window<=256"):
        lm.perplexity(gpt2, ids, window=512)
    with pytest.raises(ValueError, match="stride must be in 1..window-1"):
        lm.perplexity(gpt2, ids, window=64, stride=64)
    with pytest.raises(ValueError, match="pass window="):
        lm.perplexity(Uniform(5), ids)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        lm.perplexity(gpt2, ids, batch_size=0)


# --- decoding -----------------------------------------------------------------------------------------------

def test_generate_gives_one_row_per_prompt_and_strategy_reproducibly(gpt2, tok):
    rows = lm.generate(gpt2, tok, ["The Sun is", "A river"], max_new_tokens=6)
    assert [(r["prompt"], r["strategy"]) for r in rows[:4]] == [("The Sun is", s) for s in lm.STRATEGIES]
    assert len(rows) == 8 and all(r["text"] for r in rows)
    assert lm.generate(gpt2, tok, ["The Sun is", "A river"], max_new_tokens=6) == rows  # reseeded: same samples
    with pytest.raises(TypeError, match="list of strings"):
        lm.generate(gpt2, tok, "The Sun is")


def test_next_token_choices_show_how_many_tokens_each_strategy_keeps(gpt2, tok):
    probs, possible = lm.next_token_choices(gpt2, tok, "The Sun is", top=5)
    assert list(probs.columns) == list(lm.STRATEGIES) and len(probs) == 5
    assert possible["greedy"] == 1 and probs["greedy"].iloc[0] == 1.0
    assert possible["top-k (k=50)"] == 50
    assert possible["temperature 0.7"] == gpt2.config.vocab_size  # temperature reshapes, never removes
    assert 1 <= possible["top-p (p=0.9)"] < gpt2.config.vocab_size
    assert ((probs >= 0) & (probs <= 1)).all().all() and (probs.sum() <= 1 + 1e-6).all()
    assert len(lm.strategy_warpers({"do_sample": False})) == 0


def test_seen_ngrams_counts_the_written_pairs_found_in_the_reference():
    reference = "The river flows north. The river is long."
    assert lm.seen_ngrams(["the river is long"], reference) == 1.0
    assert lm.seen_ngrams(["the river is blue"], reference) == pytest.approx(2 / 3)  # 'is blue' is new
    assert lm.seen_ngrams(["River, the!"], reference, n=1) == 1.0 and lm.seen_ngrams(["x"], reference) == 0.0
