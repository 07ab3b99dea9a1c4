import os

import pytest

from utils import env


def test_explicit_smoke_profile_is_used_with_its_reason():
    assert env.choose_profile("smoke") == ("smoke", "PROFILE='smoke' was asked for")


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(env.ProfileError, match="unknown profile 'fast'.*'smoke'"):
        env.choose_profile("fast")


def test_cpu_profile_offline_says_to_use_smoke(monkeypatch):
    monkeypatch.setattr(env, "hub_reachable", lambda timeout=2.0: False)
    with pytest.raises(env.ProfileError, match="profile cpu needs the Hugging Face Hub.*PROFILE='smoke'"):
        env.choose_profile("cpu")


def test_gpu_profile_without_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(env, "hub_reachable", lambda timeout=2.0: True)
    monkeypatch.setattr(env, "cuda_available", lambda: False)
    with pytest.raises(env.ProfileError, match="needs a CUDA GPU"):
        env.choose_profile("gpu")


@pytest.mark.parametrize("cuda,hub,expected", [(True, True, "gpu"), (False, True, "cpu"), (False, False, "smoke")])
def test_auto_follows_the_machine(monkeypatch, cuda, hub, expected):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(env, "cuda_available", lambda: cuda)
    monkeypatch.setattr(env, "hub_reachable", lambda timeout=2.0: hub)
    profile, reason = env.choose_profile("auto")
    assert profile == expected and reason.startswith("auto:")


def test_course_profile_variable_overrides_auto(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert env.choose_profile("auto")[0] == "smoke"


def test_hub_is_unreachable_in_offline_mode(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert env.hub_reachable() is False


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
