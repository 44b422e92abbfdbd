"""Exceptions raised on bad input. Every message names the file (or setting) and the fix."""

from __future__ import annotations

import json
from pathlib import Path


class AsgmError(Exception):
    """Base class of every error this package raises on purpose."""


class AsgmWarning(UserWarning):
    """Something a reader of the results must know (shown as one sentence, without a source line)."""


class InputFileError(AsgmError):
    """A file the pipeline reads is missing, malformed or inconsistent."""

    def __init__(self, path: str | Path, problem: str, fix: str):
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}\n  How to fix: {fix}")


class ConfigError(AsgmError):
    """A profile setting is missing or has an invalid value."""

    def __init__(self, setting: str, problem: str, fix: str, source: str | Path | None = None):
        self.setting, self.problem, self.fix = setting, problem, fix
        where = f"{source} [{setting}]" if source else setting
        super().__init__(f"{where}: {problem}\n  How to fix: {fix}")


def read_json_object(path: str | Path, fix: str) -> dict:
    """The JSON object in ``path``; an :class:`InputFileError` with ``fix`` when the file is not valid
    JSON or holds another type (a list, a number, …)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"is not valid JSON ({exc})", fix) from None
    if not isinstance(value, dict):
        raise InputFileError(path, f"holds a JSON {type(value).__name__}, not an object", fix)
    return value
