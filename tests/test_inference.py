import numpy as np
import pytest
from gguf_test_files import tiny_gguf_files

from utils import assets, gguf_benchmark, inference


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny_gguf_files(tmp_path_factory.getbasetemp() / "tiny-gguf")


@pytest.fixture(scope="module")
def llm(files):
    return inference.load_gguf(files["q8_0"], n_ctx=256, n_threads=2)


PROMPT = "The Moon is"


def test_streamed_text_equals_the_completion_for_greedy_decoding(llm):
    full = inference.complete(llm, PROMPT, max_tokens=24)
    pieces = list(inference.stream(llm, PROMPT, max_tokens=24))
    assert len(pieces) > 1 and "".join(pieces) == full.text
    assert full.finish_reason in ("length", "stop") and full.completion_tokens > 0


def test_stop_sequences_cut_the_text_and_never_appear_in_it(llm):
    free = inference.complete(llm, PROMPT, max_tokens=32)
    words = free.text.split()
    assert len(words) > 3
    for stop in {words[2], words[len(words) // 2], " " + words[-1]}:
        cut = inference.complete(llm, PROMPT, max_tokens=32, stop=[stop])
        streamed = "".join(inference.stream(llm, PROMPT, max_tokens=32, stop=[stop]))
        assert stop not in cut.text and stop not in streamed
        assert cut.finish_reason == "stop" and free.text.startswith(cut.text) and streamed == cut.text


def test_trim_history_drops_the_oldest_exchanges_first():
    words = lambda msgs: sum(len(m["content"].split()) for m in msgs)  # noqa: E731 - a token count stand-in
    history = [{"role": "system", "content": "be brief"}]
    for i in range(4):
        history += [{"role": "user", "content": f"question {i} " * 3}, {"role": "assistant", "content": f"a{i} " * 5}]
    history.append({"role": "user", "content": "last question"})
    kept, dropped = inference.trim_history(history, words, budget=25)
    assert kept[0]["role"] == "system" and kept[-1] == history[-1] and kept[1]["role"] == "user"
    assert words(kept) <= 25 and dropped == len(history) - len(kept)
    assert kept[1:] == history[-(len(kept) - 1):]  # what stays is the most recent part
    assert inference.trim_history(history, words, budget=1000) == (history, 0)
    with pytest.raises(ValueError, match="newest message alone"):
        inference.trim_history(history, words, budget=3)
    with pytest.raises(ValueError, match="role system/user/assistant"):
        inference.trim_history([{"role": "bot", "content": "x"}], words, 10)
    with pytest.raises(ValueError, match="at least one"):
        inference.trim_history([], words, 10)


def test_chat_keeps_prompt_and_answer_inside_the_context(files):
    chat = inference.Chat(inference.load_gguf(files["q4_0"], n_ctx=128, n_threads=2), system="Be brief.",
                          max_tokens=24)
    for question in ["What is the Sun?", "And the Moon?", "How far is it?", "Who saw it first?", "Why?"]:
        chat.ask(question)
        assert chat.count_tokens(chat.history[:-1]) <= 128 - 24
    assert chat.dropped > 0 and chat.history[0]["role"] == "user"
    assert chat.prompt(chat.history[:1]).startswith("<s>[INST]")  # the template stored in the GGUF file
    with pytest.raises(ValueError, match="non-empty"):
        chat.ask("  ")


def test_chat_without_a_template_says_so_instead_of_guessing_one():
    class NoTemplate:  # a llama.cpp model whose GGUF file stores no chat template
        metadata = {"general.architecture": "llama"}
        token_bos, token_eos = (lambda self: 1), (lambda self: 2)

        def detokenize(self, tokens, special=False):
            return b"<s>" if tokens == [1] else b"</s>"

    with pytest.raises(ValueError, match="no chat template"):
        inference.Chat(NoTemplate())


def test_chat_box_runs_a_turn_without_a_browser(files):
    chat = inference.Chat(inference.load_gguf(files["q4_0"], n_ctx=256, n_threads=2), max_tokens=12)
    box, send = inference.chat_box(chat)
    answer = send("Tell me about tides.")
    assert chat.history[-1] == {"role": "assistant", "content": answer}
    assert "Tell me about tides." in box.children[0].value


def test_load_gguf_says_what_is_wrong(tmp_path, files):
    with pytest.raises(ValueError, match="no GGUF file"):
        inference.load_gguf(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="too small"):
        inference.load_gguf(files["q4_0"], n_ctx=4)


def test_next_token_scores_give_the_argmax_and_the_perplexity():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 10)).astype(np.float32)
    ids = [1, 2, 3, 4, 5, 6]
    top1, perplexity = gguf_benchmark.next_token_scores(logits, ids)
    log_p = logits[:-1] - np.log(np.exp(logits[:-1]).sum(-1, keepdims=True))
    assert list(top1) == list(logits[:-1].argmax(-1))
    assert perplexity == pytest.approx(np.exp(-log_p[np.arange(5), ids[1:]].mean()), rel=1e-5)
    uniform = gguf_benchmark.next_token_scores(np.zeros((6, 10)), ids)[1]
    assert uniform == pytest.approx(10)  # a model that knows nothing: as unsure as a 10-sided die
    with pytest.raises(ValueError, match="one row of logits per token id"):
        gguf_benchmark.next_token_scores(logits[:3], ids)


def test_benchmark_table_has_a_row_per_variant(files):
    from transformers import AutoTokenizer

    model_dir = assets.local_model("tiny-llama")
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = [tok("The Sun is")["input_ids"], tok("Music is")["input_ids"]]
    heldout = tok("The river flows north into the sea, and its delta is fertile.")["input_ids"]
    table = gguf_benchmark.run_benchmark(model_dir, files, prompts, heldout, max_new_tokens=6, n_threads=2, bf16=False,
                                    progress=False)
    assert list(table.index) == ["transformers fp32", "llama.cpp f16", "llama.cpp q8_0", "llama.cpp q4_0"]
    assert (table["gen_tok_s"] > 0).all() and (table["prompt_tok_s"] > 0).all() and (table["load_s"] > 0).all()
    assert (table["peak_rss_mb"] >= table["libraries_mb"]).all()
    # each row is its own process: llama.cpp needs no torch, so it starts far smaller
    assert table.loc["llama.cpp q4_0", "libraries_mb"] < table.loc["transformers fp32", "libraries_mb"]
    assert table.loc["transformers fp32", "top1_agreement"] == 1.0
    assert table.loc["llama.cpp f16", "top1_agreement"] >= 0.9  # f16 rounding rarely flips the argmax
    sizes = table["size_mb"]
    assert sizes["llama.cpp f16"] > sizes["llama.cpp q8_0"] > sizes["llama.cpp q4_0"]
    with pytest.raises(ValueError, match="at least one non-empty prompt"):
        gguf_benchmark.run_benchmark(model_dir, files, [], heldout)
    speed = gguf_benchmark.run_benchmark(model_dir, {"q4_0": files["q4_0"]}, prompts, None, max_new_tokens=6,
                                    n_threads=2, bf16=False, progress=False)  # no held-out text: speed only
    assert list(speed.index) == ["transformers fp32", "llama.cpp q4_0"] and (speed["gen_tok_s"] > 0).all()
    assert "top1_agreement" not in speed.columns and "perplexity" not in speed.columns


def test_memory_bandwidth_is_measured_in_gigabytes_per_second():
    bandwidth = gguf_benchmark.memory_bandwidth(mb=64, repeats=2)
    assert 0.1 < bandwidth < 5000  # GB/s: from a slow laptop to a server, never bytes or terabytes


def test_the_chat_box_shows_the_conversation_as_text_where_widgets_do_not_render():
    class Chat:
        history: list = []
        dropped = 0

        def ask(self, message, on_piece=None, **sampling):
            on_piece("hot")
            self.history = [{"role": "user", "content": message}, {"role": "assistant", "content": "hot"}]
            return "hot"

    box, send = inference.chat_box(Chat())
    assert box._repr_mimebundle_()["text/plain"] == "(an empty chat window)"
    assert send("What is the Sun?") == "hot"
    assert box._repr_mimebundle_()["text/plain"] == "you: What is the Sun?\nmodel: hot"
