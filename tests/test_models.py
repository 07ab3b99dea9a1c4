import pytest

from utils import assets, models


def test_local_tiny_gpt2_builds_once_and_round_trips(monkeypatch):
    path = assets.local_model("tiny-gpt2")
    assert path == assets.local_model("tiny-gpt2")  # cached: same folder, not rebuilt
    tok = models.load_tokenizer("local:tiny-gpt2")
    text = "Tokenizers meet café and 🙂."
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level BPE round-trips any text
    model = models.load_causal_lm("local:tiny-gpt2")
    assert model.config.vocab_size == len(tok)


def test_local_tiny_llama_has_sentencepiece_and_chat_template():
    path = assets.local_model("tiny-llama")
    assert (path / "tokenizer.model").exists()  # what llama.cpp's converter reads
    tok = models.load_tokenizer("local:tiny-llama")
    prompt = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                                     tokenize=False)
    assert prompt == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"
    cfg = models.load_causal_lm("local:tiny-llama").config
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # grouped-query attention, as in Llama-2-70B and later


def test_minilm_ships_bert_uncased_wordpiece():
    tok = models.load_tokenizer("local:minilm")
    assert tok.tokenize("Unhappiness") == ["un", "##ha", "##pp", "##iness"]


def test_unknown_local_model_lists_the_choices():
    with pytest.raises(assets.AssetError, match="unknown local model 'local:nope'.*'local:tiny-gpt2'"):
        models.resolve("local:nope")


def test_hub_model_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelUnavailableError, match="cannot be loaded offline.*PROFILE='smoke'"):
        models.load_tokenizer("no-such-org/no-such-model")


def test_empty_model_name_is_an_error():
    with pytest.raises(models.ModelUnavailableError, match="non-empty string"):
        models.resolve("")


def test_a_first_build_says_so_before_it_starts_and_its_time_after(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    said_before = []

    def build(spec, out):  # stands in for the minutes of pre-training: what was printed when the build began?
        said_before.append(capsys.readouterr().out)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(assets, "_build_gpt2", build)
    path = assets.local_model("tiny-gpt2")
    assert said_before[0].startswith("building the local model 'tiny-gpt2' once")
    assert capsys.readouterr().out.startswith("built 'tiny-gpt2' in ")
    assert assets.local_model("tiny-gpt2") == path and capsys.readouterr().out == ""  # cached: silent, instant
