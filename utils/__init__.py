"""Shared helpers for the LLM course notebooks: profiles, data, smoke assets, models and reporting."""
import logging
import warnings

# Library notes a learner cannot act on, silenced here (every notebook imports utils before those libraries load):
# - bitsandbytes looks for an optional Hub kernel on CPUs with AVX512-BF16 and, when the `kernels` package is absent,
#   logs "Failed to load CPU gemm_4bit_forward from kernels-community ... pip install kernels"; its own built-in CPU
#   kernel is then used, so nothing is missing (and the Hub kernel could not be fetched offline anyway).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# - bitsandbytes' paged optimizers skip paging on a CPU (there is no device memory to page from) and warn at every
#   optimizer built; notebook 04 says so once where it chooses the optimizer.
warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU")
