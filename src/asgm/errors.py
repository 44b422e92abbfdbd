"""Exceptions raised on bad input. Every message names the file (or setting) and the fix."""

from __future__ import annotations

from pathlib import Path


class AsgmError(Exception):
    """Base class of every error this package raises on purpose."""


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
