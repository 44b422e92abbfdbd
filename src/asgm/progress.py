"""Progress bars for long steps: tqdm in text mode, in a terminal and in notebooks alike.

Text mode (not tqdm's notebook widgets) because the notebooks run under papermill
(:mod:`asgm.notebooks`), which passes a text bar's updates to the terminal running ``make all``, and
the executed notebook keeps the bar's final line, which widgets (whose state is not saved) would not. Away from
a terminal (a notebook, a log file) the bar updates every few seconds instead of ten times a second,
so a log stays readable.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

#: Seconds between updates when stderr is not a terminal.
LOG_INTERVAL_S = 3.0


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar over ``iterable`` (or with ``total=``); keyword arguments as tqdm's."""
    if not getattr(sys.stderr, "isatty", lambda: False)():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)
