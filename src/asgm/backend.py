"""TensorFlow and Keras, imported once for the whole package, with TensorFlow's C++ start-up lines
kept off the terminal.

Loading TensorFlow prints, through absl before its logging is set up (so ``TF_CPP_MIN_LOG_LEVEL``
does not reach them), "All log messages before absl::InitializeLog() …", "oneDNN custom operations
are on …" and a CPU-feature notice. Each appears twice because two of TensorFlow's shared libraries
(``libtensorflow_framework.so.2`` and the profiler plugin ``_pywrap_profiler_plugin.so``) carry their
own copy of that code. While they load, file descriptor 2 points at a temporary file; afterwards
everything in it but those lines goes to stderr, so a real error still shows. oneDNN stays on (it
is 1.5–3× faster on the CPUs this runs on).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

#: The start-up lines of TensorFlow's C++ libraries that are dropped.
STARTUP_LINE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} \S+\s+\d+ (port|cpu_feature_guard)\.cc:\d+\]"
                          r"|To enable the following instructions:")


def without_startup_lines(text: str) -> str:
    """``text`` without TensorFlow's C++ start-up lines (every other line kept, in order)."""
    return "".join(line for line in text.splitlines(keepends=True) if not STARTUP_LINE.match(line))


def _import_quietly():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = without_startup_lines(captured.read().decode(errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
    return tensorflow, keras


tf, keras = _import_quietly()

__all__ = ["keras", "tf"]
