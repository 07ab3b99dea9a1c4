"""llama-cpp-python is installed on first use (notebook 07): from requirements/llama.txt, prebuilt CPU wheels first."""
import io

import pytest

from utils import gguf_export


class FakePip:
    """Stands in for `pip install`: records the command, prints two lines, exits with `code`."""

    calls: list[list[str]] = []
    code = 0

    def __init__(self, cmd, **kwargs):
        FakePip.calls.append(cmd)
        self.stdout = io.StringIO("Collecting llama-cpp-python==0.3.36\nSuccessfully installed llama-cpp-python\n")
        self.returncode = FakePip.code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def missing_llama(monkeypatch):
    """llama-cpp-python missing until pip has run."""
    FakePip.calls, FakePip.code = [], 0

    def version():
        if not FakePip.calls or FakePip.code:
            raise gguf_export.GGUFToolError("llama-cpp-python (llama.cpp's bindings) is not installed")
        return "0.3.36"

    monkeypatch.setattr(gguf_export, "llama_cpp_version", version)
    monkeypatch.setattr(gguf_export.subprocess, "Popen", FakePip)


def test_installs_the_pinned_bindings_from_the_prebuilt_index_first(missing_llama, capsys):
    assert gguf_export.ensure_llama_cpp() == "0.3.36"
    (cmd,) = FakePip.calls
    assert cmd[cmd.index("--extra-index-url") + 1] == gguf_export.CPU_WHEELS and "--prefer-binary" in cmd
    assert cmd[cmd.index("-r") + 1] == str(gguf_export.LLAMA_REQUIREMENTS)
    assert "llama-cpp-python[server]==0.3.36" in gguf_export.LLAMA_REQUIREMENTS.read_text()
    out = capsys.readouterr().out
    assert "about 5 minutes" in out and "Successfully installed" in out


def test_a_failed_install_says_so(missing_llama):
    FakePip.code = 1
    with pytest.raises(gguf_export.GGUFToolError, match="installing llama-cpp-python failed"):
        gguf_export.ensure_llama_cpp()


def test_nothing_is_installed_when_the_bindings_are_there():
    assert gguf_export.ensure_llama_cpp() == gguf_export.llama_cpp_version()
