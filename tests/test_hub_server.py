"""The stand-in Hub server answers what huggingface_hub, datasets, transformers and evaluate rely on, as the Hub does:
HEAD /, revision/tree/paths-info, 404 with the Hub's error code, X-Repo-Commit and ETag on resolve, Range with 206."""
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tools.hub import server as hub_server
from utils.paths import ROOT

WEIGHTS = bytes(range(256)) * 64  # 16 KiB, served as an LFS file (by its suffix)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A server over one model (a legacy id without an org), one dataset with a subfolder, one tagged space."""
    root = tmp_path_factory.mktemp("hub")
    model = root / "models" / "gpt2"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "gpt2"}')
    (model / "model.safetensors").write_bytes(WEIGHTS)
    data = root / "datasets" / "Org" / "set"
    (data / "part-a").mkdir(parents=True)
    (data / "part-a" / "train.jsonl").write_text('{"x": 1}\n')
    (data / "part-a" / "big.parquet").write_bytes(WEIGHTS)
    (data / "README.md").write_text("---\nlicense: mit\n---\n")
    space = root / "spaces" / "evaluate-metric" / "squad"
    space.mkdir(parents=True)
    (space / "squad.py").write_text("# metric\n")
    for folder, tags in ((model, []), (data, []), (space, ["v0.4.6"])):
        (folder / hub_server.MARKER).write_text(json.dumps({"tags": tags}))
    server = hub_server.make_server(root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def _call(url, method="GET", headers=None, data=None):
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_head_of_the_root_answers_as_the_course_probe_expects(hub):
    assert _call(hub[0] + "/", "HEAD")[0] == 200


def test_resolve_gives_commit_etag_size_and_lfs_headers(hub):
    url, _ = hub
    status, headers, body = _call(url + "/gpt2/resolve/main/model.safetensors")
    assert status == 200 and body == WEIGHTS
    assert len(headers["X-Repo-Commit"]) == 40 and headers["ETag"].startswith('"')
    assert headers["X-Linked-Size"] == str(len(WEIGHTS)) and len(headers["X-Linked-Etag"].strip('"')) == 64
    status, headers, body = _call(url + "/gpt2/resolve/main/config.json", "HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len('{"model_type": "gpt2"}'))
    assert "X-Linked-Etag" not in headers  # a small text file is a plain git blob
    status, _, body = _call(url + "/datasets/Org/set/resolve/main/part-a%2Ftrain.jsonl")
    assert status == 200 and body == b'{"x": 1}\n'


def test_range_requests_get_206_and_exactly_those_bytes(hub):
    url, _ = hub
    status, headers, body = _call(url + "/gpt2/resolve/main/model.safetensors", headers={"Range": "bytes=100-199"})
    assert status == 206 and body == WEIGHTS[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(WEIGHTS)}"
    status, _, body = _call(url + "/gpt2/resolve/main/model.safetensors", headers={"Range": "bytes=16000-"})
    assert status == 206 and body == WEIGHTS[16000:]
    status, _, body = _call(url + "/gpt2/resolve/main/model.safetensors", headers={"Range": "bytes=-10"})
    assert status == 206 and body == WEIGHTS[-10:]
    assert _call(url + "/gpt2/resolve/main/model.safetensors", headers={"Range": "bytes=99999-"})[0] == 416


@pytest.mark.parametrize("path, code", [
    ("/gpt2/resolve/main/adapter_config.json", "EntryNotFound"),
    ("/nobody/nothing/resolve/main/config.json", "RepoNotFound"),
    ("/gpt2/resolve/v9.9/config.json", "RevisionNotFound"),
    ("/api/models/nobody/nothing", "RepoNotFound"),
    ("/api/models/gpt2/tree/main/additional_chat_templates", "EntryNotFound"),
    ("/api/spaces/evaluate-metric/squad/revision/v0.0.1", "RevisionNotFound"),
])
def test_missing_things_answer_404_with_the_hubs_error_code(hub, path, code):
    status, headers, _ = _call(hub[0] + path)
    assert status == 404 and headers["X-Error-Code"] == code


def test_revision_tree_and_paths_info(hub):
    url, _ = hub
    status, _, body = _call(url + "/api/datasets/Org/set/revision/main")
    info = json.loads(body)
    assert status == 200 and info["id"] == "Org/set" and len(info["sha"]) == 40
    assert sorted(s["rfilename"] for s in info["siblings"]) == ["README.md", "part-a/big.parquet", "part-a/train.jsonl"]
    with_sizes = json.loads(_call(url + "/api/models/gpt2?blobs=true")[2])["siblings"]
    assert {s["rfilename"]: s["size"] for s in with_sizes}["model.safetensors"] == len(WEIGHTS)
    assert _call(url + f"/api/datasets/Org/set/revision/{info['sha']}")[0] == 200  # the commit id is a revision
    top = json.loads(_call(url + "/api/datasets/Org/set/tree/main")[2])
    assert [(e["type"], e["path"]) for e in top] == [("file", "README.md"), ("directory", "part-a")]
    deep = json.loads(_call(url + "/api/datasets/Org/set/tree/main?recursive=true")[2])
    assert [e["path"] for e in deep] == ["README.md", "part-a", "part-a/big.parquet", "part-a/train.jsonl"]
    form = urllib.parse.urlencode({"paths": ["part-a/train.jsonl", "missing.txt", "part-a"], "expand": "false"},
                                  doseq=True).encode()
    found = json.loads(_call(url + "/api/datasets/Org/set/paths-info/main", "POST", data=form)[2])
    assert [(e["type"], e["path"]) for e in found] == [("file", "part-a/train.jsonl"), ("directory", "part-a")]
    assert _call(url + "/spaces/evaluate-metric/squad/resolve/v0.4.6/squad.py")[2] == b"# metric\n"


LIBRARIES = """
import json, sys
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError
endpoint, cache = sys.argv[1], sys.argv[2]
folder = snapshot_download("gpt2", cache_dir=cache, endpoint=endpoint)
path = hf_hub_download("Org/set", "part-a/train.jsonl", repo_type="dataset", cache_dir=cache, endpoint=endpoint)
try:
    hf_hub_download("gpt2", "adapter_config.json", cache_dir=cache, endpoint=endpoint)
    missing = "found"
except EntryNotFoundError:
    missing = "EntryNotFoundError"
fs = HfFileSystem(endpoint=endpoint)
with fs.open("datasets/Org/set/part-a/big.parquet", "rb", block_size=1024) as fh:
    fh.seek(5000)
    chunk = fh.read(300)
files = HfApi(endpoint=endpoint).list_repo_files("Org/set", repo_type="dataset")
print(json.dumps({"files": sorted(p.name for p in __import__("pathlib").Path(folder).iterdir()),
                  "data": open(path).read(), "missing": missing, "chunk": list(chunk), "listed": files}))
"""


def test_huggingface_hub_downloads_lists_and_seeks_with_its_own_code(hub, tmp_path):
    url, _ = hub
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", LIBRARIES, url, str(tmp_path / "cache")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["files"] == ["config.json", "model.safetensors"] and got["data"] == '{"x": 1}\n'
    assert got["missing"] == "EntryNotFoundError"
    assert bytes(got["chunk"]) == WEIGHTS[5000:5300]  # HfFileSystem reads with Range requests
    assert sorted(got["listed"]) == ["README.md", "part-a/big.parquet", "part-a/train.jsonl"]
