"""Where a notebook runs and which run profile it uses: smoke (offline, tiny), cpu (laptop) or gpu (Colab/Kaggle)."""
from __future__ import annotations

import json
import os
import platform as _platform
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .hubcache import MARKER, is_standin, missing, prefetch_command, snapshot
from .manifest import ManifestError, download_mb, items
from .paths import PROFILES, runs_dir

FROM_04 = "from-04"  # MODEL_NAME for notebook 04's merged model (06, 07) instead of the profile's model
FROM_CACHE = "offline, from the local cache"
# The Hugging Face libraries' offline switches. Each library reads its own when it is first imported, so they are set
# before any of them is: a notebook imports transformers, datasets, peft, trl or evaluate only after env.start.
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_EVALUATE_OFFLINE")


class ProfileError(ValueError):
    """A profile that does not exist or cannot run on this machine."""


def detect_platform() -> str:
    """Return 'Colab', 'Kaggle' or 'local'."""
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "Colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "Kaggle"
    return "local"


def cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    import torch

    return torch.cuda.is_available()


def device_name() -> str:
    """A readable name of the device torch will use."""
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores, {_platform.machine()})"


def hub_endpoint() -> str:
    """The Hub the Hugging Face libraries talk to: HF_ENDPOINT, default https://huggingface.co."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the Hub at `hub_endpoint()` answers an HTTPS request within `timeout` seconds (through
    HTTPS_PROXY / NO_PROXY as set); False in offline mode (HF_HUB_OFFLINE=1)."""
    import urllib.error
    import urllib.request

    if _flag("HF_HUB_OFFLINE"):
        return False
    try:
        opener = urllib.request.build_opener()  # a new one reads the proxy variables as they are now
        with opener.open(urllib.request.Request(hub_endpoint(), method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError as err:  # it answered; a server error means it is down
        return err.code < 500
    except (OSError, ValueError):
        return False


def one_gpu_on_kaggle() -> str:
    """On Kaggle (two T4s) show torch only the first GPU: Trainer would wrap the model in DataParallel (trl refuses
    it) and device_map='auto' would split it across both. A preset list of several devices is cut to its first; one
    preset device is kept. Works only before CUDA starts; returns a note, '' when nothing changed."""
    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    if detect_platform() != "Kaggle" or (preset is not None and "," not in preset):
        return ""
    first = (preset or "0").split(",")[0].strip()
    os.environ["CUDA_VISIBLE_DEVICES"] = first
    was = f", was {preset}" if preset else ""
    return (f"one GPU (CUDA_VISIBLE_DEVICES={first}{was}): Kaggle's second T4 stays idle, the course code runs on "
            "one device")


MIN_CAPABILITY = (7, 0)  # bitsandbytes' CUDA library and trl's Triton kernels need Volta (sm_70) or newer
CHOOSE_GPU = {"Kaggle": "choose Settings > Accelerator > GPU T4 ×2",
              "Colab": "choose Runtime > Change runtime type > T4 GPU",
              "local": "use a GPU of compute capability 7.0 or newer (T4, V100, A100, RTX 20xx or newer)"}


def gpu_refusal() -> str:
    """Why the CUDA GPU torch sees cannot run the course ('' when it can, or there is none): compute capability below
    7.0, or an architecture this torch has no kernels for (none of its sm_ builds shares the major version)."""
    import torch

    if not torch.cuda.is_available():
        return ""
    major, minor = torch.cuda.get_device_capability(0)
    name, where = torch.cuda.get_device_name(0), detect_platform()
    label = f"{where}'s {name}" if where != "local" else name
    built = [a for a in torch.cuda.get_arch_list() if a.startswith("sm_")]
    if (major, minor) < MIN_CAPABILITY:
        why = "is not supported by bitsandbytes/trl (they need 7.0 or newer)"
    elif built and not any(int(a[3:]) // 10 == major for a in built if a[3:].isdigit()):
        why = f"has no kernels in torch {torch.__version__} (built for {', '.join(built)})"
    else:
        return ""
    return f"{label} (compute capability {major}.{minor}) {why}: {CHOOSE_GPU[where]}"


def hide_gpu(refusal: str) -> str:
    """Make torch in this process (and the processes it starts) see no GPU, so that the cpu profile really runs on
    the CPU; returns the note for the first table."""
    import torch

    torch.cuda.is_available = lambda: False
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return f"none used: {refusal}"


Needs = Callable[[str], list]  # profile -> the manifest items (utils.manifest.Item) a run of it needs


def choose_profile(requested: str = "auto", needs: Needs | None = None, notebook: str = "") -> tuple[str, str]:
    """Resolve `requested` ('auto', 'smoke', 'cpu', 'gpu') to a profile and the reason for it. With `needs`, cpu
    and gpu also run offline when everything they need is in the local Hugging Face cache."""
    requested = (requested or "auto").strip().lower()
    if requested != "auto":
        return _check(requested, f"PROFILE='{requested}' was asked for", needs, notebook)
    requested = os.environ.get("COURSE_PROFILE", "auto").strip().lower()
    if requested != "auto":
        return _check(requested, f"COURSE_PROFILE={requested} in the environment", needs, notebook)
    online = hub_reachable()
    refused = gpu_refusal() if cuda_available() else ""
    for profile, why in (("gpu", "a CUDA GPU is present"), ("cpu", refused or "no GPU")):
        if profile == "gpu" and (refused or not cuda_available()):
            continue
        if online:
            return profile, f"auto: {why}, the Hugging Face Hub answers"
        if needs is not None and not missing(needs(profile)):
            return profile, f"auto: {why}; {FROM_CACHE}"
    return "smoke", (f"auto: {refused or 'no GPU'} and the Hugging Face Hub did not answer (offline), nor is the cpu "
                     "profile cached")


def _check(profile: str, reason: str, needs: Needs | None = None, notebook: str = "") -> tuple[str, str]:
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile '{profile}': use one of 'auto', " + ", ".join(f"'{p}'" for p in PROFILES))
    if profile == "gpu" and not cuda_available():
        raise ProfileError("profile gpu needs a CUDA GPU and torch sees none — on Colab choose Runtime > Change "
                           "runtime type > T4 GPU, or use PROFILE='cpu'")
    refused = gpu_refusal() if profile == "gpu" else ""
    if refused:
        raise ProfileError(f"profile gpu cannot run here: {refused}; or use PROFILE='cpu'")
    if profile == "smoke" or hub_reachable():
        return profile, reason
    fetch = f"run `{prefetch_command(profile, notebook or None)}` where there is internet"
    if needs is None:
        raise ProfileError(f"profile {profile} needs the Hugging Face Hub or a local cache of what it loads; the Hub "
                           f"did not answer — {fetch}, use PROFILE='smoke' (offline, tiny local models) or connect")
    lacking = missing(needs(profile))
    if lacking:
        raise ProfileError(f"profile {profile} offline: the Hugging Face Hub did not answer and the local cache lacks "
                           + "; ".join(i.label() for i in lacking)
                           + f" — {fetch}, or use PROFILE='smoke' (offline, tiny local models)")
    return profile, f"{reason}; {FROM_CACHE}"


def standin_note(items: list) -> str:
    """The stand-in's warning when any model or tokenizer in `items` resolves to a Hub stand-in, else ''."""
    for item in items:
        folder = snapshot(item.id) if item.kind in ("model", "tokenizer") else None
        if folder is not None and is_standin(folder, item.kind):
            return MARKER
    return ""


def _download(items: list) -> str:
    """The first table's line on what a first run downloads, from the manifest's table of published sizes."""
    try:
        mb = download_mb(items)
        return (f"≈ {mb / 1000:.1f} GB" if mb >= 1000 else f"≈ {mb:.0f} MB") + ", once (then from the cache)"
    except ManifestError:  # e.g. MODEL_NAME set to a model outside the course's table
        return "unknown: a model outside the course's table of sizes (utils.manifest.HUB_MB)"


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so that a rerun gives the same numbers."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def merged_model_of_04(profile: str) -> Path:
    """Notebook 04's merged model folder, built in `profile`; ProfileError saying what to run when it is not."""
    folder = runs_dir() / "04_lora_qlora" / "merged"
    if not (folder / "config.json").is_file():
        raise ProfileError(f"MODEL_NAME='{FROM_04}' but notebook 04 saved no merged model in {folder}: run 04 first "
                           f"(profile {profile}), or leave MODEL_NAME=None for the profile's model")
    results = folder.parent / "results.json"
    made_in = json.loads(results.read_text(encoding="utf-8")).get("profile") if results.is_file() else None
    if made_in != profile:
        raise ProfileError(f"MODEL_NAME='{FROM_04}' but notebook 04's merged model was built in profile {made_in!r}, "
                           f"this run is {profile!r}: run 04 in this profile, or leave MODEL_NAME=None")
    return folder


@dataclass
class RunContext:
    """What a notebook run uses: profile, why, device, the resolved settings and its output folder."""

    notebook: str
    profile: str
    reason: str
    platform: str
    device: str
    settings: dict[str, Any]
    out_dir: Path
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    model_source: str = ""
    gpus: str = ""
    note: str = ""  # e.g. that the models are random-weight stand-ins
    download: str = ""  # what a first run downloads (cpu and gpu)

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def table(self):
        """One short table: where it runs, device, profile and why, and the settings in use."""
        import pandas as pd

        rows = [("runs on", self.platform), ("device", self.device), ("profile", self.profile), ("why", self.reason)]
        rows += [("GPUs", self.gpus)] if self.gpus else []
        rows += [("models", self.note)] if self.note else []
        rows += [("first download", self.download)] if self.download else []
        for key, value in self.settings.items():
            note = " (set in parameters)" if key in self.overrides else ""
            rows.append((key, f"{value}{note}"))
        if self.model_source:
            rows.append(("model source", self.model_source))
        rows.append(("outputs", str(self.out_dir)))

        class Whole(pd.DataFrame):  # shown with every value whole: pandas would cut 'why' at 50 characters
            def _repr_html_(self) -> str:
                with pd.option_context("display.max_colwidth", None):
                    return super()._repr_html_()

        return Whole(pd.DataFrame(rows, columns=["", self.notebook]).set_index(""))


def start(notebook: str, profile: str, settings_by_profile: dict[str, dict[str, Any]], seed: int = 0,
          **overrides: Any) -> RunContext:
    """Choose the profile, merge its settings with the learner's overrides (None = profile default), seed, and
    make the run's output folder. Smoke runs and runs from the local cache are forced offline so that nothing
    reaches for the network."""
    gpus = one_gpu_on_kaggle()  # first: before anything asks torch about CUDA
    absent = [p for p in PROFILES if p not in settings_by_profile]
    if absent:
        raise ProfileError(f"{notebook}: settings are missing for profile(s) {absent}")
    given = {k: v for k, v in overrides.items() if v is not None}
    from_hub = {k: v for k, v in given.items() if v != FROM_04}  # notebook 04's model is a local folder
    needs = lambda p: items({**settings_by_profile[p], **from_hub})  # noqa: E731
    name, reason = choose_profile(profile, needs, notebook)
    refused = gpu_refusal() if name != "gpu" else ""
    gpus = hide_gpu(refused) if refused else gpus
    settings = dict(settings_by_profile[name])
    unknown = sorted(set(given) - set(settings))
    if unknown:
        raise ProfileError(f"{notebook}: unknown setting(s) {unknown}; known: {sorted(settings)}")
    settings.update(given)
    source = "MODEL_NAME, set in parameters" if "model" in given else "the profile's model"
    if given.get("model") == FROM_04:
        settings["model"] = str(merged_model_of_04(name))
        source = f"notebook 04's merged model (MODEL_NAME='{FROM_04}')"
    if name == "smoke" or reason.endswith(FROM_CACHE):
        os.environ.update(dict.fromkeys(OFFLINE_SWITCHES, "1"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_seed(seed)
    out = runs_dir() / notebook
    out.mkdir(parents=True, exist_ok=True)
    note = standin_note(needs(name)) if name != "smoke" else ""
    download = _download(needs(name)) if name != "smoke" else ""
    return RunContext(notebook, name, reason, detect_platform(), device_name(), settings, out, seed, given,
                      source if "model" in settings else "", gpus, note, download)
