"""Safe writes: outputs appear complete or not at all, never replace what the command did not
create, and leave no debris after an interrupted run.

- :func:`atomic_path` writes under a temporary name beside the target and renames it at the end.
  The temporary name carries the writer's process id, so a later run removes the leftovers of a
  run that was killed (``kill -9``) without touching those of a run still going.
- A directory is replaced only by a directory of the same kind (one holding ``marker``, e.g. a
  model directory's ``config.json``) or when it is empty; a file never replaces a directory, nor a
  directory a file (:func:`check_target`, called before the work and again before the rename).
- :func:`plain_name` refuses names used as path parts (experiment, profile) that could point
  elsewhere (``.``, ``..``, separators).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from asgm.errors import AsgmError

_PARTIAL = ".partial"


def plain_name(name: str, setting: str) -> str:
    """``name`` if it is one plain path component (no separators, not ``.`` or ``..``, not hidden).

    Raises
    ------
    AsgmError
        Naming ``setting`` and the fix.
    """
    text = str(name)
    if not text or text in (".", "..") or text.startswith(".") or "/" in text or "\\" in text or "\0" in text:
        raise AsgmError(f"{setting} {text!r} is not a plain name: it is used as a directory or file name, so it must not be empty, "
                        "start with a dot, or contain / or \\. Give a name such as my_run")
    return text


def check_target(path: str | Path, directory: bool, marker: str | None = None, what: str = "output") -> None:
    """Raise unless writing a ``directory`` (or a file) at ``path`` may replace what is there.

    Parameters
    ----------
    path
        The output about to be written.
    directory
        Whether the output is a directory.
    marker
        For a directory: a file that every directory of this kind holds (e.g. ``config.json``);
        an existing directory without it (and not empty) is left untouched.
    what
        What the output is, for the message (``model directory``, ``CSV``, …).
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not directory:
        raise AsgmError(f"{path} is a directory, so the {what} cannot be written there; it was left untouched. Give a file path, e.g. {path / 'out.csv'}")
    if not path.is_dir() and directory:
        raise AsgmError(f"{path} is a file, so the {what} (a directory) cannot be written there; it was left untouched. Give another name or path")
    if directory and any(path.iterdir()) and (marker is None or not (path / marker).is_file()):
        raise AsgmError(f"{path} exists and is not a {what} (it has no {marker or 'marker file'}); it was left untouched. "
                        "Give another name or path, or move that directory away yourself")


def _remove_stale(path: Path) -> None:
    """Remove temporaries of ``path`` left by writers that are no longer running."""
    for leftover in path.parent.glob(f".{path.stem}.*{_PARTIAL}{path.suffix}"):
        parts = leftover.name[len(path.stem) + 2:].split(".")
        if not parts[0].isdigit() or _alive(int(parts[0])):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_path(path: str | Path, marker: str | None = None, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and directories (the caller creates one at the yielded path). An existing
    target is replaced only as :func:`check_target` allows (``marker``, ``what``: see there). The
    temporary name keeps the suffix, so libraries that pick a driver from the extension (GDAL,
    pyogrio, matplotlib) still do the right thing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=f"{_PARTIAL}{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # callers create a file or a directory here themselves
    try:
        yield tmp
        check_target(path, tmp.is_dir(), marker, what)
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()


@contextmanager
def staging(path: str | Path) -> Iterator[Path]:
    """A temporary directory beside ``path`` for outputs that are moved into place together at the
    end (e.g. :func:`asgm.monitor.publish`); removed afterwards, whatever happens (and by a later
    run when its writer was killed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=f"{_PARTIAL}{path.suffix}", dir=path.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_writable(directory: str | Path, what: str) -> Path:
    """Create ``directory`` if needed and check that files can be written in it.

    Raises
    ------
    AsgmError
        Naming the directory, before any work whose results could not be saved.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise AsgmError(f"{directory}: cannot write the {what} there ({exc.strerror}). How to fix: make it writable "
                        "(e.g. chmod u+w), or run from a copy of the project where you can write") from None
    return directory


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_array(path: str | Path, array) -> Path:
    """Write a NumPy array to ``path`` (``.npy``) atomically and return the path."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return Path(path)
