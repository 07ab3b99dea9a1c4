"""The course's package: the code each lesson teaches, and what every notebook shares. Module -> notebook:

    tokenization              01  tokenizer families side by side, measured
    bpe, bpe_fast,            02  byte-pair encoding by hand, then fast; the BPE benchmark
    bpe_benchmark
    lm                        03  language-model data, perplexity, generation
    lora, formats             04  LoRA / QLoRA, instruction and chat formats
    squad                     05  SQuAD prompts, answers and the metric by hand
    dpo                       06  preference pairs and the DPO loss
    gguf_export, inference,   07  GGUF export and quantization, llama.cpp inference, retrieval, transformers
    rag, gguf_benchmark           against GGUF files on one CPU
    ddp, ddp_train            08  data-parallel training: launching, the script each rank runs, the checks
    env, data, models,        all profiles and the first table, shipped data, model loading, the course's training
    training, report, checks,     rules, tables and results, self-checking exercises, free disk space, smoke assets,
    exercises, disk, assets,      verdicts computed from the measurements
    verdicts
    paths, ui                 --  the ground floor: ROOT and the profiles; progress bars and show_source
    manifest, hubcache        --  what a run's settings need from the Hub; whether it is cached (or a stand-in)

Nothing here imports upward: no import cycle, no module importing one on its own floor or above, nothing from
`tools/` (tests/test_import_graph.py; `python -m tools.imports` prints the floors). Tooling that no notebook imports
(headless runs, notebook checks, grading) is in `tools/`, the Hub machinery (stand-in, prefetch, verify) in
`tools/hub/`.
"""
import logging

# Library notes a learner cannot act on, silenced here (every notebook imports utils before those libraries load):
# - bitsandbytes looks for an optional Hub kernel on CPUs with AVX512-BF16 and, when the `kernels` package is absent,
#   logs "Failed to load CPU gemm_4bit_forward from kernels-community ... pip install kernels"; its own built-in CPU
#   kernel is then used, so nothing is missing (and the Hub kernel could not be fetched offline anyway).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


class _DropMessages(logging.Filter):
    """Drops a logger's records that contain any of `parts` (one library message, named, not a whole logger)."""

    def __init__(self, *parts: str) -> None:
        super().__init__()
        self.parts = parts

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(part in record.getMessage() for part in self.parts)


# - transformers' Trainer orders checkpoints by modification time and, when checkpoints were written within one second
#   of each other (the course's tiny models), warns "mtime may not be reliable on this filesystem" and orders them by
#   step number instead: the right order anyway, so the warning tells a learner nothing.
logging.getLogger("transformers.trainer_utils").addFilter(_DropMessages("mtime may not be reliable"))
# - generate()'s "friendly reminder" that a prompt ran past the model's trained positions: 05's smoke model has 1,024
#   and its few-shot prompts pass them by a few tokens; the notebook says so where it builds those prompts.
logging.getLogger("transformers.generation.stopping_criteria").addFilter(_DropMessages("friendly reminder"))

