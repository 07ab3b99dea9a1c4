"""Where a notebook runs and which run profile it uses: smoke (offline, tiny), cpu (laptop) or gpu (Colab/Kaggle)."""
from __future__ import annotations

import json
import os
import platform as _platform
import random
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILES = ("smoke", "cpu", "gpu")
FROM_04 = "from-04"  # MODEL_NAME for notebook 04's merged model (06, 07) instead of the profile's model
ROOT = Path(__file__).resolve().parent.parent
HUB_HOST = os.environ.get("COURSE_HUB_HOST", "huggingface.co")


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


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the Hugging Face Hub answers a TCP connection within `timeout` seconds (and offline mode is off)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def one_gpu_on_kaggle() -> str:
    """On Kaggle (two T4s) show torch only the first GPU: Trainer would wrap the model in DataParallel and
    device_map='auto' would split it across both. Works only before CUDA starts; returns a note, '' elsewhere."""
    if detect_platform() != "Kaggle" or "CUDA_VISIBLE_DEVICES" in os.environ:
        return ""
    os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    return "one GPU (CUDA_VISIBLE_DEVICES=0): Kaggle's second T4 stays idle, the course code runs on one device"


def choose_profile(requested: str = "auto") -> tuple[str, str]:
    """Resolve `requested` ('auto', 'smoke', 'cpu', 'gpu') to a profile and the reason for it."""
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        requested = os.environ.get("COURSE_PROFILE", "auto").strip().lower()
        if requested != "auto":
            return _check(requested, f"COURSE_PROFILE={requested} in the environment")
        if cuda_available():
            return "gpu", "auto: a CUDA GPU is present"
        if hub_reachable():
            return "cpu", "auto: no GPU, the Hugging Face Hub answers"
        return "smoke", "auto: no GPU and the Hugging Face Hub did not answer (offline)"
    return _check(requested, f"PROFILE='{requested}' was asked for")


def _check(profile: str, reason: str) -> tuple[str, str]:
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile '{profile}': use one of 'auto', " + ", ".join(f"'{p}'" for p in PROFILES))
    if profile in ("cpu", "gpu") and not hub_reachable():
        raise ProfileError(
            f"profile {profile} needs the Hugging Face Hub; it did not answer — use PROFILE='smoke' "
            "(offline, tiny local models) or connect to the internet"
        )
    if profile == "gpu" and not cuda_available():
        raise ProfileError("profile gpu needs a CUDA GPU and torch sees none — on Colab choose Runtime > Change "
                           "runtime type > T4 GPU, or use PROFILE='cpu'")
    return profile, reason


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so that a rerun gives the same numbers."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def runs_dir() -> Path:
    """Folder for executed notebooks and results (COURSE_RUNS_DIR, default runs/ in the repository)."""
    return Path(os.environ.get("COURSE_RUNS_DIR", ROOT / "runs"))


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

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def table(self):
        """One short table: where it runs, device, profile and why, and the settings in use."""
        import pandas as pd

        rows = [("runs on", self.platform), ("device", self.device), ("profile", self.profile), ("why", self.reason)]
        rows += [("GPUs", self.gpus)] if self.gpus else []
        for key, value in self.settings.items():
            note = " (set in parameters)" if key in self.overrides else ""
            rows.append((key, f"{value}{note}"))
        if self.model_source:
            rows.append(("model source", self.model_source))
        rows.append(("outputs", str(self.out_dir)))
        return pd.DataFrame(rows, columns=["", self.notebook]).set_index("")


def start(notebook: str, profile: str, settings_by_profile: dict[str, dict[str, Any]], seed: int = 0,
          **overrides: Any) -> RunContext:
    """Choose the profile, merge its settings with the learner's overrides (None = profile default), seed, and
    make the run's output folder. Smoke runs are forced offline so that nothing reaches for the network."""
    gpus = one_gpu_on_kaggle()  # first: before anything asks torch about CUDA
    name, reason = choose_profile(profile)
    missing = [p for p in PROFILES if p not in settings_by_profile]
    if missing:
        raise ProfileError(f"{notebook}: settings are missing for profile(s) {missing}")
    settings = dict(settings_by_profile[name])
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(settings))
    if unknown:
        raise ProfileError(f"{notebook}: unknown setting(s) {unknown}; known: {sorted(settings)}")
    settings.update(given)
    source = "MODEL_NAME, set in parameters" if "model" in given else "the profile's model"
    if given.get("model") == FROM_04:
        settings["model"] = str(merged_model_of_04(name))
        source = f"notebook 04's merged model (MODEL_NAME='{FROM_04}')"
    if name == "smoke":
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ[var] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_seed(seed)
    out = runs_dir() / notebook
    out.mkdir(parents=True, exist_ok=True)
    return RunContext(notebook, name, reason, detect_platform(), device_name(), settings, out, seed, given,
                      source if "model" in settings else "", gpus)
