"""What a notebook shows besides tables: progress bars and the course's own source code. The ground floor: it
imports no other course module."""
from __future__ import annotations

import os
from typing import Any


def headless() -> bool:
    """A headless run (TQDM_DISABLE, set by tools.runner): its saved copy keeps only the last frame of any live
    display, so bars and live tables are left out."""
    return os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")


def progress(iterable: Any = None, show: bool = True, **kwargs: Any):
    """tqdm.auto's progress bar, off when `show` is False and in the course's headless runs (`headless`): a bar
    widget does not survive in a saved notebook, where it shows frozen at 0 %."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=headless() or not show, **kwargs)


def show_source(*objects: Any):
    """The source code of course functions or classes, highlighted: the notebook shows the very code that runs,
    from its one copy in utils/."""
    import inspect
    import textwrap

    from IPython.display import Code

    return Code("\n\n".join(textwrap.dedent(inspect.getsource(o)) for o in objects), language="python")
