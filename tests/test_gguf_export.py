import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from gguf_test_files import tiny_gguf_files

from utils import assets, gguf_export


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny_gguf_files(tmp_path_factory.getbasetemp() / "tiny-gguf")


def test_three_real_llama_cpp_files_with_the_expected_types_and_sizes(files):
    types = {name: gguf_export.file_type(path) for name, path in files.items()}
    assert types == {"f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0", "q4_0": "MOSTLY_Q4_0"}
    sizes = {name: path.stat().st_size for name, path in files.items()}
    assert sizes["f16"] > sizes["q8_0"] > sizes["q4_0"]


def test_summary_reads_back_metadata_tokenizer_and_tensors(files):
    info = gguf_export.summary(files["q4_0"])
    model_dir = assets.local_model("tiny-llama")
    config = json.loads((model_dir / "config.json").read_text())
    assert info["architecture"] == "llama" and info["tokenizer"] == "llama"  # SentencePiece, as Llama-2
    assert info["vocab_size"] == config["vocab_size"] and info["layers"] == config["num_hidden_layers"]
    assert info["parameters"] == gguf_export.parameters_in_files(model_dir)
    assert info["chat_template"] is True
    table = gguf_export.tensor_table(files["q4_0"])
    matrices = table[table["tensor"].str.contains("attn_q|ffn_up")]
    assert set(matrices["type"]) == {"Q4_0"} and (matrices["bits_per_weight"] == 4.5).all()  # 18 bytes per 32
    norms = table[table["tensor"].str.contains("norm")]
    assert set(norms["type"]) == {"F32"}  # small vectors are kept in full precision


def test_quantize_refuses_unknown_types_and_missing_files(files, tmp_path):
    with pytest.raises(ValueError, match="unknown quantization 'q3_x'"):
        gguf_export.quantize(files["f16"], tmp_path / "x.gguf", "q3_x")
    with pytest.raises(ValueError, match="no GGUF file"):
        gguf_export.quantize(tmp_path / "missing.gguf", tmp_path / "x.gguf", "q4_0")


def test_export_needs_a_model_folder(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        gguf_export.export_f16(tmp_path, tmp_path / "x.gguf")


def test_a_failing_conversion_reports_the_converters_message(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["NoSuchModel"]}')
    with pytest.raises(gguf_export.GGUFToolError, match="converter failed"):
        gguf_export.export_f16(tmp_path, tmp_path / "x.gguf")


def test_missing_converter_names_the_setup_command(monkeypatch, tmp_path):
    monkeypatch.delenv(gguf_export.CONVERTER_VAR, raising=False)
    monkeypatch.setattr(gguf_export, "converter_dir", lambda version=None: tmp_path)
    with pytest.raises(gguf_export.GGUFToolError, match="bash scripts/setup.sh"):
        gguf_export.find_converter()
    monkeypatch.setenv(gguf_export.CONVERTER_VAR, str(tmp_path / "nope.py"))
    with pytest.raises(gguf_export.GGUFToolError, match="is not a file"):
        gguf_export.find_converter()


def test_missing_llama_cpp_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what an uninstalled package looks like to import
    with pytest.raises(gguf_export.GGUFToolError, match=r"ensure_llama_cpp\(\).*pip install -r requirements/llama.txt"):
        gguf_export.llama_cpp_version()


def test_fetch_keeps_only_the_converter_from_the_source_archive(monkeypatch, tmp_path):
    def fake_pip(cmd, **kwargs):  # what `pip download` leaves: the sdist, here a small stand-in
        assert "--no-binary" in cmd and "llama-cpp-python==9.9.9" in cmd
        dest = Path(cmd[cmd.index("-d") + 1])
        with tarfile.open(dest / "llama_cpp_python-9.9.9.tar.gz", "w:gz") as tar:
            for name in ("convert_hf_to_gguf.py", "conversion/base.py", "gguf-py/gguf/__init__.py", "LICENSE",
                         "src/llama.cpp", "ggml/big.c"):
                data = f"# {name}\n".encode()
                info = tarfile.TarInfo(f"llama_cpp_python-9.9.9/vendor/llama.cpp/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(gguf_export, "ROOT", tmp_path)
    monkeypatch.setattr(gguf_export.subprocess, "run", fake_pip)
    path = gguf_export.fetch_converter("9.9.9")
    assert path == tmp_path / ".cache/llama.cpp/9.9.9/convert_hf_to_gguf.py" and path.is_file()
    kept = sorted(p.relative_to(path.parent).as_posix() for p in path.parent.rglob("*") if p.is_file())
    assert kept == ["LICENSE", "conversion/base.py", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py"]
    assert gguf_export.fetch_converter("9.9.9") == path  # idempotent: found, not fetched again


def test_check_source_wants_a_large_enough_llama(tmp_path):
    with pytest.raises(ValueError, match="not a Llama"):
        gguf_export.check_source(tmp_path, 10)
    merged = tmp_path / "merged"
    shutil.copytree(assets.local_model("tiny-llama"), merged)
    n = gguf_export.parameters_in_files(merged)
    with pytest.raises(ValueError, match="fewer than"):
        gguf_export.check_source(merged, min_params=n + 1)
    assert gguf_export.check_source(merged, min_params=n) == n


def test_a_hub_model_keeps_its_chat_template_file(monkeypatch, tmp_path):
    import fnmatch

    import huggingface_hub

    repo = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
            "README.md", "onnx/model.onnx", "pytorch_model.bin"]

    def fake_download(repo_id, allow_patterns):
        for name in repo:
            if any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / name).write_text("x")
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    folder = gguf_export.local_folder("someone/model-with-jinja-template")
    got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert "chat_template.jinja" in got  # transformers 5 saves the template there, outside tokenizer_config.json
    assert "pytorch_model.bin" not in got and "onnx/model.onnx" not in got  # weights once, as safetensors


def test_the_tokenizer_files_follow_what_the_source_folder_holds(tmp_path):
    from utils import models

    gpt2_src = tmp_path / "gpt2-class"  # laid out like a Hub GPT-2 repository: vocab.json, merges.txt, tokenizer.json
    models.load_tokenizer("local:tiny-gpt2").save_pretrained(gpt2_src)
    bpe = json.loads((gpt2_src / "tokenizer.json").read_text())["model"]
    (gpt2_src / "vocab.json").write_text(json.dumps(bpe["vocab"]))
    (gpt2_src / "merges.txt").write_text("\n".join(["#version: 0.2", *(" ".join(m) for m in bpe["merges"])]))
    gpt2 = models.load_tokenizer(str(gpt2_src))
    assert Path(gpt2.vocab_file).name == "vocab.json"  # what 04 used to copy to tokenizer.model
    saved = gguf_export.save_tokenizer(gpt2, tmp_path / "gpt2-merged")
    assert "tokenizer.json" in saved and not (tmp_path / "gpt2-merged" / "tokenizer.model").exists()
    llama = models.load_tokenizer("local:tiny-llama")  # SentencePiece: the converter needs its tokenizer.model
    saved = gguf_export.save_tokenizer(llama, tmp_path / "llama-merged")
    source = assets.local_model("tiny-llama") / "tokenizer.model"
    assert "tokenizer.model" in saved
    assert (tmp_path / "llama-merged" / "tokenizer.model").read_bytes() == source.read_bytes()
