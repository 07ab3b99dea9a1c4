import http.server
import os
import shutil
import threading

import pytest

from utils import env, hubcache
from utils.manifest import Item


def test_explicit_smoke_profile_is_used_with_its_reason():
    assert env.choose_profile("smoke") == ("smoke", "PROFILE='smoke' was asked for")


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(env.ProfileError, match="unknown profile 'fast'.*'smoke'"):
        env.choose_profile("fast")


def test_cpu_profile_offline_without_a_cache_check_says_what_to_do(monkeypatch):
    monkeypatch.setattr(env, "hub_reachable", lambda timeout=2.0: False)
    with pytest.raises(env.ProfileError, match="profile cpu needs the Hugging Face Hub.*make prefetch PROFILE=cpu.*"
                                               "PROFILE='smoke'"):
        env.choose_profile("cpu")


def test_gpu_profile_without_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(env, "hub_reachable", lambda timeout=2.0: True)
    monkeypatch.setattr(env, "cuda_available", lambda: False)
    with pytest.raises(env.ProfileError, match="needs a CUDA GPU"):
        env.choose_profile("gpu")


CACHED = Item("model", "someone/cached")
LACKING = [Item("model", "someone/absent"), Item("dataset", "someone/data", splits=("train",))]


def _machine(monkeypatch, cuda: bool, hub: bool, cached: set[str]):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(env, "cuda_available", lambda: cuda)
    monkeypatch.setattr(env, "hub_reachable", lambda timeout=2.0: hub)
    monkeypatch.setattr(hubcache, "present", lambda item, home=None: item.id in cached)


NEEDS = {"smoke": [], "cpu": [CACHED], "gpu": [CACHED, LACKING[0]]}


@pytest.mark.parametrize("cuda,hub,cached,expected,why", [
    (True, True, set(), "gpu", "auto: a CUDA GPU is present, the Hugging Face Hub answers"),
    (False, True, set(), "cpu", "auto: no GPU, the Hugging Face Hub answers"),
    (False, False, set(), "smoke", "auto: no GPU and the Hugging Face Hub did not answer"),
    (False, False, {"someone/cached"}, "cpu", "auto: no GPU; offline, from the local cache"),
    (True, False, {"someone/cached"}, "cpu", "auto: no GPU; offline, from the local cache"),  # gpu not cached
    (True, False, {"someone/cached", "someone/absent"}, "gpu", "auto: a CUDA GPU is present; offline, from the"),
])
def test_auto_follows_the_machine_and_the_cache(monkeypatch, cuda, hub, cached, expected, why):
    _machine(monkeypatch, cuda, hub, cached)
    profile, reason = env.choose_profile("auto", NEEDS.get)
    assert profile == expected and reason.startswith(why)


def test_cpu_offline_runs_from_a_complete_cache(monkeypatch):
    _machine(monkeypatch, False, False, {"someone/cached"})
    assert env.choose_profile("cpu", NEEDS.get) == ("cpu", "PROFILE='cpu' was asked for; offline, from the local cache")


def test_cpu_offline_with_an_incomplete_cache_names_each_missing_item(monkeypatch):
    _machine(monkeypatch, False, False, set())
    with pytest.raises(env.ProfileError) as err:
        env.choose_profile("cpu", lambda p: LACKING, "05_llama2_squad")
    message = str(err.value)
    assert "model someone/absent" in message and "dataset someone/data (train)" in message
    assert "make prefetch PROFILE=cpu NB=05" in message


def test_optional_nlp_data_never_blocks_a_profile(monkeypatch):
    _machine(monkeypatch, False, False, set())
    needs = [Item("spacy", "en_core_web_sm", required=False), Item("nltk", "punkt_tab", required=False)]
    assert env.choose_profile("cpu", lambda p: needs)[0] == "cpu"


def test_course_profile_variable_overrides_auto(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert env.choose_profile("auto")[0] == "smoke"


def test_hub_is_unreachable_in_offline_mode(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert env.hub_reachable() is False


class _Hub(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_HEAD(self):  # noqa: N802 (the name http.server calls)
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status,expected", [(200, True), (401, True), (503, False)])
def test_hub_reachability_is_an_https_request_to_hf_endpoint(monkeypatch, status, expected):
    """An HTTP request to HF_ENDPOINT (a local server here) decides, not a TCP connection to huggingface.co; a
    server error counts as down."""
    handler = type("Hub", (_Hub,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}/")
    try:
        assert env.hub_endpoint() == f"http://127.0.0.1:{server.server_port}"
        assert env.hub_reachable(timeout=5) is expected
    finally:
        server.shutdown()


def test_hub_reachability_goes_through_the_proxy(monkeypatch):
    """With a proxy set, the request goes to the proxy: an endpoint that does not resolve answers through it."""
    seen = []
    handler = type("Proxy", (_Hub,), {"do_HEAD": lambda self: (seen.append(self.path), _Hub.do_HEAD(self))})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")
    try:
        assert env.hub_reachable(timeout=5) is True and seen == ["http://hub.invalid"]
    finally:
        server.shutdown()


SETTINGS = {"smoke": {"model": "local:tiny-gpt2", "steps": 3}, "cpu": {"model": "gpt2", "steps": 9},
            "gpu": {"model": "gpt2", "steps": 99}}


def test_start_merges_overrides_and_makes_the_output_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    ctx = env.start("99_demo", "smoke", SETTINGS, steps=5, model=None)
    assert ctx["steps"] == 5 and ctx["model"] == "local:tiny-gpt2"
    assert ctx.out_dir == tmp_path / "99_demo" and ctx.out_dir.is_dir()
    table = ctx.table()
    assert table.loc["profile"].iloc[0] == "smoke" and "set in parameters" in table.loc["steps"].iloc[0]
    assert {"runs on", "device", "why"} <= set(table.index)
    html = table._repr_html_()  # the notebook shows the HTML: every value whole, not cut at 50 characters
    assert table.loc["why"].iloc[0] in html and str(ctx.out_dir) in html and "...</td>" not in html


def test_start_rejects_unknown_settings_and_incomplete_profiles(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    with pytest.raises(env.ProfileError, match="unknown setting"):
        env.start("99_demo", "smoke", SETTINGS, stepz=5)
    with pytest.raises(env.ProfileError, match="missing for profile"):
        env.start("99_demo", "smoke", {"smoke": {}})


def test_notebook_04s_merged_model_is_used_only_when_asked_for_and_named(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    merged = tmp_path / "04_lora_qlora" / "merged"
    with pytest.raises(env.ProfileError, match="saved no merged model"):
        env.start("99_demo", "smoke", SETTINGS, model=env.FROM_04)
    merged.mkdir(parents=True)
    (merged / "config.json").write_text("{}")
    (merged.parent / "results.json").write_text('{"profile": "cpu"}')
    with pytest.raises(env.ProfileError, match="built in profile 'cpu'"):
        env.start("99_demo", "smoke", SETTINGS, model=env.FROM_04)
    (merged.parent / "results.json").write_text('{"profile": "smoke"}')
    default = env.start("99_demo", "smoke", SETTINGS)  # 04's model exists, but nobody asked for it
    assert default["model"] == "local:tiny-gpt2"
    assert default.table().loc["model source"].iloc[0] == "the profile's model"
    chained = env.start("99_demo", "smoke", SETTINGS, model=env.FROM_04)
    assert chained["model"] == str(merged)
    assert chained.table().loc["model source"].iloc[0] == "notebook 04's merged model (MODEL_NAME='from-04')"


def test_kaggle_gets_one_gpu_set_before_cuda_starts_and_the_first_table_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    seen = []
    monkeypatch.setattr(env, "device_name", lambda: seen.append(os.environ.get("CUDA_VISIBLE_DEVICES")) or "cuda (T4)")
    ctx = env.start("99_demo", "smoke", SETTINGS)
    assert seen == ["0"]  # already set when torch was first asked about CUDA
    assert "one GPU" in ctx.table().loc["GPUs"].iloc[0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the learner's own choice is kept
    assert "GPUs" not in env.start("99_demo", "smoke", SETTINGS).table().index
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert "GPUs" not in env.start("99_demo", "smoke", SETTINGS).table().index  # Colab and laptops: untouched
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_start_says_when_the_models_are_stand_ins(monkeypatch, tmp_path):
    """cpu offline from a cache whose model carries the stand-in mark: the first table says so."""
    from tools.hub import standin

    home = tmp_path / "hf"
    repo = standin.build_model(tmp_path / "hub", "bert-base-uncased", weights=False)
    snapshot = home / "hub" / "models--bert-base-uncased" / "snapshots" / "c0ffee"  # as a download leaves it
    shutil.copytree(repo, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("c0ffee")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(env, "hub_reachable", lambda timeout=2.0: False)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "0")  # start() sets them; monkeypatch restores them afterwards
    settings = {"smoke": {"bert": "local:minilm"}, "cpu": {"bert": "bert-base-uncased"}, "gpu": {"bert": "x"}}
    ctx = env.start("99_demo", "cpu", settings)
    table = ctx.table()
    assert table.loc["why"].iloc[0] == "PROFILE='cpu' was asked for; offline, from the local cache"
    assert table.loc["models"].iloc[0] == "random-weight stand-in: code path and cost only, not quality"
    assert table.loc["first download"].iloc[0] == "≈ 1 MB, once (then from the cache)"  # utils.manifest.HUB_MB
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    with pytest.raises(env.ProfileError, match="lacks tokenizer distilgpt2"):
        env.start("99_demo", "cpu", settings, bert="distilgpt2")


def _gpu(monkeypatch, capability: tuple[int, int], name: str, archs: list[str]) -> None:
    """A fake CUDA device for torch: its compute capability, name, and the architectures torch was built for."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: name)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: archs)


CU128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # Kaggle's torch: no sm_60 kernels


def test_kaggle_p100_is_treated_as_no_gpu_and_forcing_gpu_says_what_to_choose(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    _gpu(monkeypatch, (6, 0), "Tesla P100-PCIE-16GB", CU128)
    _machine(monkeypatch, True, True, set())
    profile, why = env.choose_profile("auto", NEEDS.get)
    assert profile == "cpu"
    assert why.startswith("auto: Kaggle's Tesla P100-PCIE-16GB (compute capability 6.0) is not supported by "
                          "bitsandbytes/trl") and "GPU T4 ×2" in why
    with pytest.raises(env.ProfileError, match=r"P100.*compute capability 6\.0.*bitsandbytes/trl.*GPU T4 ×2"):
        env.choose_profile("gpu", NEEDS.get)
    import torch

    ctx = env.start("99_demo", "cpu", SETTINGS)  # the cpu profile then runs on the CPU: torch sees no GPU
    assert not torch.cuda.is_available() and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert "P100" in ctx.table().loc["GPUs"].iloc[0]


@pytest.mark.parametrize("capability,archs,refused", [
    ((7, 5), CU128, ""),  # a T4
    ((8, 9), ["sm_80", "sm_90"], ""),  # no sm_89 build, but sm_80 kernels run on any 8.x
    ((12, 0), ["sm_70", "sm_80", "sm_90"], "has no kernels in torch"),  # newer than this torch
    ((3, 7), ["sm_37", "sm_50"], "not supported by bitsandbytes/trl"),  # a K80 on an old torch
])
def test_gpu_refusal_follows_capability_and_torchs_kernels(monkeypatch, capability, archs, refused):
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    _gpu(monkeypatch, capability, "Some GPU", archs)
    got = env.gpu_refusal()
    assert (refused in got and "compute capability 7.0 or newer" in got) if refused else got == ""


@pytest.mark.parametrize("preset,expected,noted", [("0,1", "0", True), ("1, 0", "1", True), ("1", "1", False),
                                                   (None, "0", True)])
def test_kaggle_keeps_one_gpu_even_when_several_are_preset(monkeypatch, preset, expected, noted):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    if preset is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", preset)
    note = env.one_gpu_on_kaggle()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == expected
    assert bool(note) is noted and (preset is None or not noted or f"was {preset}" in note)
