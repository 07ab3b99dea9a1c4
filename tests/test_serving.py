"""Serving a GGUF to many users (notebook 07): servers always stopped, retries counted, the load table, the verdict,
and real OpenAI-client requests against llama_cpp.server (and llama-server where it is built)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import numpy as np
import openai
import pandas as pd
import pytest
from gguf_test_files import tiny_gguf_files

from utils import rag, serving


def http_server(port: int) -> list[str]:
    """A stand-in server that starts in a blink: Python's own file server (GET / answers 200)."""
    return [sys.executable, "-m", "http.server", str(port), "--bind", serving.HOST]


def gone(pid: int, within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_the_server_is_stopped_when_the_block_raises_or_is_interrupted(tmp_path):
    for error in (RuntimeError("a cell failed"), KeyboardInterrupt()):
        with pytest.raises(type(error)), serving.serve("stand-in", http_server, tmp_path, health="/") as server:
            pid = server.process.pid
            assert httpx.get(server.url + "/").status_code == 200
            raise error
        assert server.process.poll() is not None and gone(pid)
    assert not serving._RUNNING


def test_a_port_in_use_is_refused_with_a_clear_message_and_a_free_one_is_picked(tmp_path):
    with serving.serve("first", http_server, tmp_path, health="/") as first:
        port = int(first.url.rsplit(":", 1)[1])
        assert serving.port_taken(port)
        with pytest.raises(serving.ServerError, match=f"port {port} is already in use.*port=None"):
            with serving.serve("second", http_server, tmp_path, port=port, health="/"):
                pass
        with serving.serve("second", http_server, tmp_path, health="/") as second:
            assert second.url != first.url


def test_a_server_that_exits_at_once_shows_its_log(tmp_path):
    def broken(port: int) -> list[str]:
        return [sys.executable, "-c", "import sys; print('no model file here'); sys.exit(3)"]

    with pytest.raises(serving.ServerError, match="(?s)exited with code 3.*no model file here"):
        with serving.serve("broken", broken, tmp_path, health="/"):
            pass


def test_no_server_survives_a_killed_kernel(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(serving.ROOT)!r}, {os.path.dirname(__file__)!r}]
        from test_serving import http_server
        from utils import serving
        with serving.serve("orphan?", http_server, {str(tmp_path)!r}, health="/") as server:
            print(server.process.pid, flush=True)
            time.sleep(60)
    """)
    kernel = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = int(kernel.stdout.readline())
    kernel.send_signal(signal.SIGKILL)  # no finally, no atexit: only the parent-death signal is left
    kernel.wait()
    assert gone(pid)


class FlakyCompletions:
    """A chat.completions stand-in: the first `drops` calls lose the connection, then three tokens stream."""

    def __init__(self, drops: int) -> None:
        self.drops, self.calls, self.temperatures = drops, 0, []

    def create(self, **kwargs):
        self.calls += 1
        self.temperatures.append(kwargs["temperature"])
        if self.calls <= self.drops:
            raise openai.APIConnectionError(request=httpx.Request("POST", "http://x/v1/chat/completions"))
        delta = lambda text, end=None: type("Chunk", (), {"choices": [type("Choice", (), {  # noqa: E731
            "delta": type("Delta", (), {"content": text}), "finish_reason": end})]})
        return iter([delta("The"), delta(" Moon"), delta(".", "stop")])


def fake_client(drops: int):
    completions = FlakyCompletions(drops)
    return type("Client", (), {"chat": type("Chat", (), {"completions": completions})}), completions


def test_a_dropped_connection_is_retried_with_backoff_and_counted():
    api, completions = fake_client(drops=2)
    start = time.perf_counter()
    answer = serving.ask(api, [{"role": "user", "content": "?"}], max_tokens=8, backoff_s=0.05)
    assert answer.error is None and answer.retries == 2 and completions.calls == 3
    assert completions.temperatures == [0.0] * 3  # greedy on every try
    assert answer.text == "The Moon." and answer.tokens == 3 and answer.finish_reason == "stop"
    assert time.perf_counter() - start >= 0.05 + 0.1  # waited 0.05 s, then 0.1 s
    assert answer.latency_s >= answer.first_token_s >= 0.15  # times count from the first try
    warm, completions = fake_client(drops=1)
    serving.ask(warm, [{"role": "user", "content": "?"}], 8, backoff_s=0, temperature=0.7)
    assert completions.temperatures == [0.7, 0.7]  # a retry sends the same request
    failed = serving.ask(fake_client(drops=9)[0], [{"role": "user", "content": "?"}], 8, retries=2, backoff_s=0)
    assert failed.error.startswith("APIConnectionError") and failed.retries == 2 and failed.tokens == 0


def test_the_load_row_and_the_cache_in_front():
    def ask_one(question: str) -> serving.Answer:
        time.sleep(0.02)
        return serving.Answer(question.upper(), tokens=4, first_token_s=0.01, latency_s=0.02, finish_reason="length")

    result = serving.run_load(ask_one, ["a", "b", "c", "d"], users=4, per_user=2)
    row = result.row()
    assert row["requests"] == 8 and row["failed"] == 0 and row["tokens"] == 32 and row["cache_hits"] == 0
    assert row["tok_s"] == pytest.approx(32 / result.wall_s) and row["p95_latency_s"] == 0.02
    cache = rag.ResponseCache(lambda texts: np.eye(4)[[ord(t[0]) % 4 for t in texts]])  # one axis per letter
    cached = serving.run_load(ask_one, ["a", "b"], users=2, per_user=3, cache=cache).row()
    assert cached["requests"] == 6 and cached["cache_hits"] >= 2 and cached["tokens"] == 4 * (6 - cached["cache_hits"])
    assert cache.stats["miss"] + cache.stats["exact"] + cache.stats["similar"] == 6


def table(tok_s: list[float], p95: list[float], first: list[float], failed=(0, 0, 0)) -> pd.DataFrame:
    return pd.DataFrame({"users": [1, 4, 8], "tok_s": tok_s, "p95_latency_s": p95, "median_first_token_s": first,
                         "failed": list(failed)}).set_index("users")


VERDICT = {"cores": 2, "answer_tokens": 64, "reading_tok_s": 10, "first_token_s": 2.0, "bandwidth_gb_s": 10.0,
           "model_mb": 60.0}


def test_the_verdict_follows_the_tables_not_the_expectation():
    queued = table([130, 125, 120], [0.5, 2.2, 4.4], [0.1, 0.9, 2.2])
    batched = table([170, 200, 205], [0.4, 1.3, 2.5], [0.1, 0.5, 1.2])
    helped = serving.batching_verdict(queued, batched, **VERDICT)
    assert helped["batching_helped"] and helped["gain"] == pytest.approx(205 / 120)
    assert helped["queued_users"] == 4 and helped["batched_users"] == 8  # queued at 8: first token after 2.2 s
    assert "Batching helped" in helped["text"] and "2.0 per core" in helped["text"] and "4.0 per core" in helped["text"]
    worse = serving.batching_verdict(batched, queued, **VERDICT)  # the same tables, swapped
    assert not worse["batching_helped"] and "did not help" in worse["text"] and "Batching helped" not in worse["text"]
    missing = serving.batching_verdict(queued, None, **VERDICT)
    assert missing["batching_helped"] is None and "was not run" in missing["text"]
    failing = serving.batching_verdict(table([130, 125, 120], [0.5, 2.2, 4.4], [0.1, 0.9, 2.2], (0, 1, 0)),
                                       None, **VERDICT)
    assert failing["queued_users"] == 1  # a failed request disqualifies that level
    assert missing["memory_bound_tok_s"] == pytest.approx(10.0 * 1e3 / 60)
    assert "memory limits one stream" in missing["text"]  # 130 tok/s of a 167 tok/s bound
    cached_model = serving.batching_verdict(queued, None, **{**VERDICT, "model_mb": 1})  # a 10,000 tok/s bound
    assert "little of the memory bandwidth" in cached_model["text"]


def test_servers_for_a_class_come_from_the_best_level_served_well():
    queued = table([130, 125, 120], [0.5, 2.2, 4.4], [0.1, 0.9, 2.2])
    batched = table([170, 200, 205], [0.4, 1.3, 2.5], [0.1, 0.5, 1.2])
    assert serving.capacity([queued, None], 64, 10, 2.0) == 125  # 4 users served well
    assert serving.capacity([queued, batched], 64, 10, 2.0) == 205  # 8 users, batched
    assert serving.capacity([table([1, 2, 3], [99, 99, 99], [9, 9, 9])], 64, 10, 2.0) is None
    assert serving.servers_needed(100, 40) == 3 and serving.servers_needed(10, 40) == 1
    assert "= 32 tokens/s: 1 server(s)" in serving.class_sizing(125, 64)
    assert "= 107 tokens/s: 3 server(s)" in serving.class_sizing(40, 64, students=100)
    assert "no per-server figure" in serving.class_sizing(None, 64)


# --- real servers on a tiny GGUF --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return tiny_gguf_files(tmp_path_factory.getbasetemp() / "tiny-gguf")["q4_0"]


QUESTIONS = ["What is the Sun?", "Why is the sky blue?", "Who wrote music?", "How do rivers flow?"]


def check_server(server, n_tokens: int = 12) -> None:
    """4 concurrent streaming clients complete with the tokens a plain request reports; stops cut the text."""
    api = serving.client(server, timeout=60)
    expected = {}
    for q in QUESTIONS:
        done = api.chat.completions.create(model="local", messages=[{"role": "user", "content": q}],
                                           max_tokens=n_tokens, temperature=0)
        expected[q] = (done.choices[0].message.content, done.usage.completion_tokens, done.choices[0].finish_reason)
        assert done.usage.completion_tokens == n_tokens or done.choices[0].finish_reason == "stop"
    result = serving.run_load(lambda q: serving.ask(api, [{"role": "user", "content": q}], n_tokens), QUESTIONS,
                              users=4, per_user=1)
    assert result.row()["failed"] == 0 and result.row()["requests"] == 4
    for q, answer in zip(QUESTIONS, result.answers):
        assert (answer.text, answer.tokens, answer.finish_reason) == expected[q], q  # streamed = plain, per token
        assert answer.first_token_s < answer.latency_s
    free = expected[QUESTIONS[0]][0]
    stop = free.split()[len(free.split()) // 2]
    cut = serving.ask(api, [{"role": "user", "content": QUESTIONS[0]}], n_tokens, stop=[stop])
    assert cut.finish_reason == "stop" and stop not in cut.text and free.startswith(cut.text)


def test_llama_cpp_server_serves_four_clients_at_once_and_stops(tmp_path, gguf):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    cmd = lambda port: serving.llama_cpp_server_cmd(gguf, port, n_threads=2, n_ctx=256)  # noqa: E731
    with serving.serve("llama_cpp.server", cmd, tmp_path) as server:
        check_server(server)
    assert gone(server.process.pid) and not serving._RUNNING


@pytest.mark.llama_server
def test_llama_server_batches_four_clients_and_stops(tmp_path, gguf):
    binary = serving.find_llama_server()
    if binary is None:
        pytest.skip(f"no llama-server binary: {serving.BUILD_HINT}")
    cmd = lambda port: serving.llama_server_cmd(binary, gguf, port, n_threads=2, n_ctx=256, parallel=4)  # noqa: E731
    with serving.serve("llama-server", cmd, tmp_path, health="/health") as server:
        check_server(server)
    assert gone(server.process.pid) and not serving._RUNNING
