"""Serving a GGUF model to many users at once (notebook 07): an OpenAI-compatible server started as a subprocess
and always stopped, a client that retries with backoff, a load test of concurrent streaming users, and llama.cpp's
own `llama-server` built from the sources vendored in the llama-cpp-python archive.

Usage: python -m utils.serving build-server   (what `make llama-server` runs; downloads the archive from PyPI once)
"""
from __future__ import annotations

import atexit
import ctypes
import math
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gguf_export import LLAMA_REQUIREMENTS, GGUFToolError, extract_vendored, source_archive
from .paths import ROOT

SERVER_VAR = "LLAMA_SERVER"  # a path to a llama-server binary built elsewhere
BUILD_HINT = "run `make llama-server` once (builds it from llama.cpp's sources, about 6 minutes on 2 idle cores)"
# llama-server without a GPU or internet: no TLS, no web UI downloaded at build time, only the server target
SERVER_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_OPENSSL=OFF",
                "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_EXAMPLES=OFF", "-DGGML_NATIVE=ON")
HOST = "127.0.0.1"
MEMORY_SHARE = 0.3  # one stream at this share of the memory bound or more: memory, not arithmetic, sets its pace


class ServerError(RuntimeError):
    """A server that could not start, or a port that is taken; the message says what to do."""


# --- llama-server, built once ---------------------------------------------------------------------------------

def pinned_version() -> str:
    """The llama-cpp-python version pinned in requirements/llama.txt: its vendored llama.cpp is what gets built."""
    found = re.search(r"^llama-cpp-python(?:\[[^]]*\])?==([\w.]+)", LLAMA_REQUIREMENTS.read_text(), re.M)
    if not found:
        raise GGUFToolError(f"{LLAMA_REQUIREMENTS} pins no llama-cpp-python==<version>")
    return found.group(1)


def server_dir(version: str | None = None) -> Path:
    """Where `make llama-server` keeps the binary: .cache/llama-server/<version>/ (git-ignored)."""
    return ROOT / ".cache" / "llama-server" / (version or pinned_version())


def find_llama_server() -> Path | None:
    """The llama-server binary ($LLAMA_SERVER first, else the one `make llama-server` built), or None."""
    path = Path(os.environ[SERVER_VAR]) if os.environ.get(SERVER_VAR) else server_dir() / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _run_shown(cmd: list[str], cwd: Path | None = None) -> None:
    """Run a build step, printing each new percentage of progress; GGUFToolError with the last lines on failure."""
    tail: list[str] = []
    last = None
    with subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-30:]
            percent = re.match(r"\[\s*(\d+)%\]", line)
            if percent and percent.group(1) != last:
                last = percent.group(1)
                print(f"  {line.rstrip()}", flush=True)
    if proc.returncode != 0:
        raise GGUFToolError(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def build_llama_server(jobs: int | None = None, version: str | None = None) -> Path:
    """Build llama-server once from the llama.cpp sources in the llama-cpp-python archive of the pinned version
    (CPU only, SERVER_FLAGS), showing progress; returns the cached binary. Needs cmake and a C++ compiler."""
    version = version or pinned_version()
    target = server_dir(version) / "llama-server"
    if target.is_file():
        print(f"llama-server {version} already built: {target}")
        return target
    missing = [tool for tool in ("cmake", "c++") if not shutil.which(tool)]
    if missing:
        raise GGUFToolError(f"building llama-server needs {' and '.join(missing)}: install them (Debian/Ubuntu: "
                            "apt-get install cmake g++), then run it again")
    jobs = jobs or os.cpu_count() or 1
    target.parent.mkdir(parents=True, exist_ok=True)
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    archive = source_archive(version)
    work = server_dir(version) / "build-tree"  # kept when a step fails, so a rerun continues
    source = next(work.glob("*/vendor/llama.cpp"), None) or extract_vendored(archive, work)
    print(f"building llama-server from llama.cpp in {archive.name} with {jobs} jobs "
          "(about 6 minutes on 2 idle cores, longer on busy ones)", flush=True)
    _run_shown(["cmake", "-S", str(source), "-B", str(work / "build"), *SERVER_FLAGS])
    _run_shown(["cmake", "--build", str(work / "build"), "--target", "llama-server", "-j", str(jobs)])
    shutil.copy2(work / "build" / "bin" / "llama-server", target)
    shutil.rmtree(work)
    cpu_s = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"llama-server built in {time.perf_counter() - start:.0f} s ({cpu_s.ru_utime + cpu_s.ru_stime:.0f} s of "
          f"CPU time; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after): {target}")
    return target


# --- a server process that is always stopped ------------------------------------------------------------------

def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on now (the system picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_taken(port: int, host: str = HOST) -> bool:
    """True when something already listens on `port`."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def llama_cpp_server_cmd(model: str | Path, port: int, n_threads: int, n_ctx: int) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server: one generation at a time, later requests queue (without
    --interrupt_requests False a new request cuts off the stream in progress)."""
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", HOST, "--port", str(port),
            "--n_threads", str(n_threads), "--n_ctx", str(n_ctx), "--interrupt_requests", "False"]


def llama_server_cmd(binary: str | Path, model: str | Path, port: int, n_threads: int, n_ctx: int,
                     parallel: int) -> list[str]:
    """llama.cpp's llama-server with `parallel` slots decoded together (continuous batching), each of n_ctx tokens."""
    return [str(binary), "-m", str(model), "--host", HOST, "--port", str(port), "-t", str(n_threads),
            "-c", str(n_ctx * parallel), "--parallel", str(parallel), "--cont-batching", "--no-webui"]


def _die_with_parent() -> None:  # runs in the child before exec: SIGTERM when the thread that started it ends
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_RUNNING: set[subprocess.Popen] = set()


def _stop(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after `grace_s`; reaped either way."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            break
        except ProcessLookupError:
            proc.wait()
            break
        except subprocess.TimeoutExpired:
            continue
    _RUNNING.discard(proc)


atexit.register(lambda: [_stop(p) for p in list(_RUNNING)])  # a kernel that exits normally stops its servers


@dataclass
class Server:
    """A running server: its base URL, process and log file."""

    name: str
    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 8) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def serve(name: str, make_cmd: Callable[[int], list[str]], log_dir: str | Path, port: int | None = None,
          health: str = "/v1/models", start_timeout: float = 120) -> Iterator[Server]:
    """Start the server `make_cmd(port)` on `port` (None: a free one), wait until `health` answers 200, yield it,
    and stop it whatever happens in the block (an error, an interrupted kernel); ServerError if it cannot start."""
    if port is None:
        port = free_port()
    elif port_taken(port):
        raise ServerError(f"port {port} is already in use (another server still running?): stop it, or pass "
                          "port=None to pick a free port")
    log = Path(log_dir) / f"{name}-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # threads that wait by spinning fight over a shared CPU (07 explains): one user got 3 tok/s here instead of 75
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(make_cmd(port), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, preexec_fn=_die_with_parent)
    _RUNNING.add(proc)
    server = Server(name, f"http://{HOST}:{port}", proc, log)
    try:
        _wait_healthy(server, health, start_timeout)
        yield server
    finally:
        _stop(proc)


def _wait_healthy(server: Server, health: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"{server.name} exited with code {server.process.returncode} before it answered; "
                              f"its log ({server.log}):\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + health, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:  # not listening yet, or loading the model (503)
            pass
        time.sleep(0.2)
    raise ServerError(f"{server.name} did not answer {health} within {timeout:.0f} s; its log:\n{server.log_tail()}")


# --- the client: timeouts, retries with backoff ---------------------------------------------------------------

def client(server: Server, timeout: float = 60.0):
    """The official `openai` client pointed at `server`: every request times out after `timeout` seconds; its own
    retries are off, because `ask` retries and counts them."""
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key="not-needed-locally", timeout=timeout, max_retries=0)


@dataclass
class Answer:
    """One streamed chat completion as a user saw it: text, tokens, when the first and last token came."""

    text: str = ""
    tokens: int = 0
    finish_reason: str | None = None
    first_token_s: float | None = None
    latency_s: float | None = None
    retries: int = 0
    error: str | None = None
    cache: str = "off"


def _retryable(err: Exception) -> bool:
    import httpx
    import openai

    return isinstance(err, (openai.APIConnectionError, openai.InternalServerError, httpx.TransportError))


def ask(openai_client, messages: list[dict[str, str]], max_tokens: int, stop: Sequence[str] = (),
        retries: int = 3, backoff_s: float = 0.25, model: str = "local", **params: Any) -> Answer:
    """A streaming chat completion (greedy unless `params` say otherwise); a dropped connection or a server error is
    retried up to `retries` times, waiting backoff_s, 2 x backoff_s, ... Times count from the first try."""
    start = time.perf_counter()
    answer, temperature = Answer(), params.pop("temperature", 0.0)
    while True:
        pieces: list[str] = []
        try:
            stream = openai_client.chat.completions.create(
                model=model, messages=messages, max_tokens=max_tokens, stop=list(stop) or None, stream=True,
                temperature=temperature, **params)
            for chunk in stream:
                choice = chunk.choices[0] if chunk.choices else None
                if choice and choice.delta.content:
                    answer.first_token_s = answer.first_token_s or time.perf_counter() - start
                    pieces.append(choice.delta.content)
                if choice and choice.finish_reason:
                    answer.finish_reason = choice.finish_reason
            answer.text, answer.tokens = "".join(pieces), len(pieces)
            answer.latency_s = time.perf_counter() - start
            return answer
        except Exception as err:  # noqa: BLE001 - anything not retryable ends this request as failed
            if not _retryable(err) or answer.retries >= retries:
                answer.error = f"{type(err).__name__}: {err}"[:200]
                answer.latency_s = time.perf_counter() - start
                return answer
            time.sleep(backoff_s * 2 ** answer.retries)
            answer.retries += 1
            answer.first_token_s = None


# --- the load test ----------------------------------------------------------------------------------------------

@dataclass
class LoadResult:
    """Every answer of one load level, and the wall time it took."""

    users: int
    answers: list[Answer] = field(default_factory=list)
    wall_s: float = 0.0

    def row(self) -> dict[str, Any]:
        """The level's table row: tokens/s over all users, median time to first token, p95 latency, failures."""
        done = [a for a in self.answers if a.error is None]
        served = [a for a in done if a.cache in ("miss", "off")]  # generated by the server
        latencies = sorted(a.latency_s for a in done)
        firsts = [a.first_token_s for a in done if a.first_token_s is not None]
        hits = sum(a.cache in ("exact", "similar") for a in self.answers)
        return {"users": self.users, "requests": len(self.answers), "failed": len(self.answers) - len(done),
                "retries": sum(a.retries for a in self.answers), "cache_hits": hits,
                "tokens": sum(a.tokens for a in served), "tok_s": sum(a.tokens for a in served) / self.wall_s,
                "median_first_token_s": statistics.median(firsts) if firsts else None,
                "p95_latency_s": latencies[max(0, -(-95 * len(latencies) // 100) - 1)] if latencies else None,
                "wall_s": self.wall_s}


class _Failed(Exception):
    """A failed answer: the cache must not keep it."""


def _through_cache(cache, ask_one: Callable[[str], Answer], question: str) -> Answer:
    """`question` answered from `cache` (a rag.ResponseCache) when it holds it, timed as the user saw it, else by
    the server and stored there; a failed answer is not stored."""
    served: list[Answer] = []

    def generate(q: str) -> str:
        served.append(ask_one(q))
        if served[0].error:
            raise _Failed
        return served[0].text

    start = time.perf_counter()
    try:
        hit = cache.answer(question, generate)
    except _Failed:
        return served[0]
    seconds = time.perf_counter() - start
    answer = served[0] if served else Answer(hit["answer"], first_token_s=seconds, latency_s=seconds)
    answer.cache = hit["cache"]
    return answer


def run_load(ask_one: Callable[[str], Answer], questions: Sequence[str], users: int, per_user: int,
             cache=None) -> LoadResult:
    """`users` concurrent users, each asking `per_user` questions one after another (user u starts at question
    u x per_user of `questions`, wrapping); with `cache`, repeated questions are answered from it first."""
    def user(u: int) -> list[Answer]:
        asked = [questions[(u * per_user + i) % len(questions)] for i in range(per_user)]
        return [ask_one(q) if cache is None else _through_cache(cache, ask_one, q) for q in asked]

    start = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        answers = [a for batch in pool.map(user, range(users)) for a in batch]
    return LoadResult(users, answers, time.perf_counter() - start)


def load_table(ask_one: Callable[[str], Answer], questions: Sequence[str], levels: Sequence[int], per_user: int,
               progress: bool = True):
    """One load test per number of concurrent users in `levels`: a DataFrame indexed by users."""
    import pandas as pd

    rows = []
    for users in levels:
        rows.append(run_load(ask_one, questions, users, per_user).row())
        if progress:
            print(f"  {users} users: {rows[-1]['tok_s']:.0f} tok/s, p95 {rows[-1]['p95_latency_s']:.2f} s",
                  flush=True)
    return pd.DataFrame(rows).set_index("users")


# --- the lesson, computed from the tables -----------------------------------------------------------------------

def users_served(table, answer_tokens: int, reading_tok_s: float, first_token_s: float) -> int:
    """The most concurrent users in `table` served well: no failure, median first token within `first_token_s`,
    and 95 % of answers complete at least as fast as a person reads (answer_tokens / reading_tok_s seconds)."""
    ok = table[(table["failed"] == 0) & (table["median_first_token_s"] <= first_token_s)
               & (table["p95_latency_s"] <= answer_tokens / reading_tok_s)]
    return int(ok.index.max()) if len(ok) else 0


def batching_verdict(queued, batched, cores: int, answer_tokens: int, reading_tok_s: float, first_token_s: float,
                     bandwidth_gb_s: float, model_mb: float) -> dict[str, Any]:
    """What the two load tables say: users per core each server serves well, and whether continuous batching
    raised throughput at the most users; `batched` None when llama-server did not run. Every sentence from numbers."""
    most = int(queued.index.max())
    bound = bandwidth_gb_s * 1e3 / model_mb  # tokens/s one stream can reach when every token reads every weight
    one = queued.at[int(queued.index.min()), "tok_s"]
    out = {"queued_users": users_served(queued, answer_tokens, reading_tok_s, first_token_s),
           "memory_bound_tok_s": bound, "single_stream_share_of_bound": one / bound}
    lines = [f"llama_cpp.server (one request at a time) served {out['queued_users']} user(s) well "
             f"= {out['queued_users'] / cores:.1f} per core; at {most} users {queued.at[most, 'tok_s']:.0f} tok/s, "
             f"p95 {queued.at[most, 'p95_latency_s']:.1f} s."]
    lines.append(f"One stream reached {one:.0f} tok/s = {one / bound:.0%} of the memory bound ({bound:.0f} tok/s = "
                 f"{bandwidth_gb_s:.1f} GB/s / {model_mb:.0f} MB of weights read per token); a batch reads the weights "
                 "once for all its users, which lifts that bound: " + (
                     "memory limits one stream here, so a batch has room to go faster." if one / bound >= MEMORY_SHARE
                     else "one stream uses little of the memory bandwidth here: a batch can still gain by using each "
                     "weight, once loaded, for several users and by sharing each step's fixed costs, but memory is "
                     "not what it relieves."))
    if batched is None:
        out.update(batched_users=None, gain=None, batching_helped=None)
        lines.append("llama-server's table was not run, so nothing here says whether batching helps.")
    else:
        gain = batched.at[most, "tok_s"] / queued.at[most, "tok_s"]
        out.update(batched_users=users_served(batched, answer_tokens, reading_tok_s, first_token_s), gain=gain,
                   batching_helped=bool(gain > 1.1 and batched.at[most, "p95_latency_s"]
                                        <= queued.at[most, "p95_latency_s"]))
        lines.append(f"llama-server (continuous batching) served {out['batched_users']} user(s) well = "
                     f"{out['batched_users'] / cores:.1f} per core; at {most} users {batched.at[most, 'tok_s']:.0f} "
                     f"tok/s ({gain:.2f}x), p95 {batched.at[most, 'p95_latency_s']:.1f} s.")
        lines.append("Batching helped: more tokens per second at a p95 no worse." if out["batching_helped"] else
                     "Batching did not help clearly in this run (less than 10 % more tokens/s, or a worse p95).")
    out["text"] = "\n".join(lines)
    return out


def capacity(tables: Sequence, answer_tokens: int, reading_tok_s: float, first_token_s: float) -> float | None:
    """Tokens/s of the best server at the most users it served well (None when no level was served well)."""
    rates = [t.at[n, "tok_s"] for t in tables if t is not None
             for n in [users_served(t, answer_tokens, reading_tok_s, first_token_s)] if n]
    return max(rates) if rates else None


def servers_needed(demand_tok_s: float, tok_s_per_server: float) -> int:
    """Servers for a demand in tokens/s, each giving what one measured server gave at an acceptable latency."""
    if tok_s_per_server <= 0:
        raise ValueError("a server that gives no tokens/s serves no one: measure one that does")
    return max(1, math.ceil(demand_tok_s / tok_s_per_server))


def class_sizing(capacity_tok_s: float | None, answer_tokens: int, students: int = 30, per_minute: float = 1.0) -> str:
    """The servers a class needs, each student asking `per_minute` questions of `answer_tokens` tokens a minute."""
    demand = students * per_minute * answer_tokens / 60
    if capacity_tok_s is None:
        return (f"A class of {students} needs {demand:.0f} tokens/s, but no load level here was served well, so this "
                "run gives no per-server figure to divide by.")
    return (f"A class of {students} asking {per_minute:g} question(s) a minute each needs {students} x {per_minute:g} "
            f"x {answer_tokens} / 60 = {demand:.0f} tokens/s: {servers_needed(demand, capacity_tok_s)} server(s) "
            f"like this one ({capacity_tok_s:.0f} tokens/s measured at the most users served well).")


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] != ["build-server"]:
        print(__doc__.strip().splitlines()[-1])
        return 2
    try:
        build_llama_server()
    except GGUFToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
