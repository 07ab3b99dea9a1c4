"""CPU inference with llama.cpp (llama-cpp-python): greedy completion, streaming, stop sequences, and a chat whose
history is trimmed to the context window. The benchmark of notebook 07 is in `utils.gguf_benchmark`."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gguf_export import llama_cpp_version

# Greedy decoding in llama.cpp's terms: temperature 0 picks the argmax; no repetition penalty (its default is 1.1
# in some front ends), so that the output can be compared token for token with transformers' do_sample=False.
GREEDY = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}


def load_gguf(path: str | Path, n_ctx: int = 512, n_threads: int | None = None, **kwargs: Any):
    """A llama_cpp.Llama for GGUF file `path`: `n_ctx` tokens of context (prompt + answer must fit), `n_threads`
    CPU threads (default: all cores). Quiet unless verbose=True is passed."""
    llama_cpp_version()  # a clear error naming the install command when llama-cpp-python is missing
    from llama_cpp import Llama

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no GGUF file at {path}: export one first (utils.gguf_export.export_all)")
    if n_ctx < 16:
        raise ValueError(f"n_ctx={n_ctx} is too small: it must hold the prompt and the answer (try 512)")
    kwargs.setdefault("verbose", False)
    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(), **kwargs)


def context_size(llm) -> int:
    """The context the model was loaded with (n_ctx). llama.cpp may round its own buffer up to a multiple of 256,
    but the bindings keep only n_ctx tokens: that is the real limit for prompt + answer."""
    return min(llm.n_ctx(), llm.context_params.n_ctx)


@dataclass
class Completion:
    """A finished completion: the text, why it ended ('stop' = a stop sequence or end-of-sequence token,
    'length' = max_tokens reached) and the token counts."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def complete(llm, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (), **sampling: Any) -> Completion:
    """Greedy completion of `prompt` (unless `sampling` overrides GREEDY); the text ends before any stop sequence."""
    out = llm.create_completion(prompt, max_tokens=max_tokens, stop=list(stop), **{**GREEDY, **sampling})
    choice, usage = out["choices"][0], out["usage"]
    return Completion(choice["text"], choice["finish_reason"], usage["prompt_tokens"], usage["completion_tokens"])


def stream(llm, prompt: str, max_tokens: int = 64, stop: Sequence[str] = (), **sampling: Any) -> Iterator[str]:
    """The same completion, yielded piece by piece as llama.cpp produces it (text that could be the start of a stop
    sequence is held back until it is known not to be one)."""
    for chunk in llm.create_completion(prompt, max_tokens=max_tokens, stop=list(stop), stream=True,
                                       **{**GREEDY, **sampling}):
        piece = chunk["choices"][0]["text"]
        if piece:
            yield piece


# --- chat ---------------------------------------------------------------------------------------------------

def trim_history(messages: list[dict[str, str]], count_tokens: Callable[[list[dict[str, str]]], int],
                 budget: int) -> tuple[list[dict[str, str]], int]:
    """Drop the oldest turns until `count_tokens(messages) <= budget`; a leading system message and the last
    message always stay, and whole exchanges go (a kept history starts with a user message).
    Returns (kept messages, number dropped); ValueError when even the newest message alone does not fit."""
    if not messages:
        raise ValueError("no messages: a chat needs at least one user message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or "content" not in m:
            raise ValueError(f"message {i} must be a dict with role system/user/assistant and content, got {m!r}")
    system = messages[:1] if messages[0]["role"] == "system" else []
    turns = messages[len(system):]
    dropped = 0
    while len(turns) > 1 and count_tokens(system + turns) > budget:
        turns = turns[1:]
        dropped += 1
        while len(turns) > 1 and turns[0]["role"] != "user":  # never start the history with an answer
            turns = turns[1:]
            dropped += 1
    needed = count_tokens(system + turns)
    if needed > budget:
        raise ValueError(f"the newest message alone needs {needed} prompt tokens, more than the {budget} left in the "
                         "context: shorten it, lower max_tokens or load the model with a larger n_ctx")
    return system + turns, dropped


@dataclass
class Chat:
    """A multi-turn chat over a llama.cpp model through its chat template (`template`, else the one stored in the
    GGUF file; ValueError when there is neither). Before every answer the history is trimmed, oldest first, so
    prompt + answer fit in n_ctx."""

    llm: Any
    system: str = ""
    max_tokens: int = 64
    template: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    dropped: int = 0  # messages trimmed away so far
    last_prompt_tokens: int = 0  # tokens of the prompt sent for the latest answer

    def __post_init__(self) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.template or self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError("this GGUF file has no chat template, and guessing one gives the wrong special tokens: "
                             "export a model whose tokenizer has one, or pass template= (e.g. formats.TEMPLATES[...])")
        bos, eos = (self.llm.detokenize([t], special=True).decode("utf-8", "replace")
                    for t in (self.llm.token_bos(), self.llm.token_eos()))
        self.formatter = Jinja2ChatFormatter(template=template, bos_token=bos, eos_token=eos,
                                             stop_token_ids=[self.llm.token_eos()])
        self.llm.chat_handler = self.formatter.to_chat_handler()  # create_chat_completion renders with this template

    def prompt(self, messages: list[dict[str, str]]) -> str:
        """The text the model reads for `messages`: the chat template applied, ending where the answer starts."""
        return self.formatter(messages=messages).prompt

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self.llm.tokenize(self.prompt(messages).encode("utf-8"), add_bos=False, special=True))

    def context(self, user: str) -> list[dict[str, str]]:
        """The messages sent for the next answer: system, as much recent history as fits, and `user`."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        kept, dropped = trim_history(system + self.history + [{"role": "user", "content": user}],
                                     self.count_tokens, context_size(self.llm) - self.max_tokens)
        self.dropped += dropped
        self.last_prompt_tokens = self.count_tokens(kept)
        return kept

    def ask(self, user: str, on_piece: Callable[[str], None] | None = None, **sampling: Any) -> str:
        """Answer `user` (greedy unless `sampling` says otherwise), streaming pieces to `on_piece` when given,
        and keep the exchange in the history."""
        if not isinstance(user, str) or not user.strip():
            raise ValueError("the user message must be a non-empty string")
        messages = self.context(user)
        pieces = []
        for chunk in self.llm.create_chat_completion(messages=messages, max_tokens=self.max_tokens, stream=True,
                                                     **{**GREEDY, **sampling}):
            piece = chunk["choices"][0]["delta"].get("content") or ""
            if piece:
                pieces.append(piece)
                if on_piece:
                    on_piece(piece)
        answer = "".join(pieces).strip()
        self.history = [m for m in messages if m["role"] != "system"] + [{"role": "assistant", "content": answer}]
        return answer


def chat_box(chat: Chat, placeholder: str = "Ask something and press Send", **sampling: Any):
    """A small chat window (ipywidgets: JupyterLab, Colab): the conversation, a text box and a Send button; the
    answer streams in as llama.cpp writes it. Returns (widget, send): send(text) runs one turn, as the button does."""
    import html

    import ipywidgets as widgets

    log = widgets.HTML(layout=widgets.Layout(border="1px solid #ccc", padding="6px", min_height="80px"))
    text = widgets.Text(placeholder=placeholder, layout=widgets.Layout(width="70%"))
    button = widgets.Button(description="Send", button_style="primary")

    def render(extra: list[dict[str, str]] = ()) -> None:
        lines = [f"<b>{'you' if m['role'] == 'user' else 'model'}:</b> {html.escape(m['content'])}"
                 for m in [*chat.history, *extra]]
        log.value = "<br>".join(lines) + (f"<br><i>{chat.dropped} old message(s) trimmed to fit the context</i>"
                                          if chat.dropped else "")

    def send(message: str | None = None) -> str:
        message = text.value if message is None else message
        text.value = ""
        if not message.strip():
            return ""
        pieces: list[str] = []

        def show(piece: str) -> None:
            pieces.append(piece)
            render([{"role": "user", "content": message}, {"role": "assistant", "content": "".join(pieces)}])

        answer = chat.ask(message, on_piece=show, **sampling)
        render()
        return answer

    class Window(widgets.VBox):
        """The chat window, with the conversation as plain text where widgets do not render (a saved copy)."""

        def _repr_mimebundle_(self, **kwargs: Any) -> dict:
            bundle = super()._repr_mimebundle_(**kwargs)
            bundle["text/plain"] = "\n".join(f"{'you' if m['role'] == 'user' else 'model'}: {m['content']}"
                                              for m in chat.history) or "(an empty chat window)"
            return bundle

    button.on_click(lambda _: send())
    return Window([log, widgets.HBox([text, button])]), send
