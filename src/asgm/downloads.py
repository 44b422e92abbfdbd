"""Files fetched at run time (the public reference data of a profile), pinned by SHA-256.

Each file is downloaded once with pooch, verified against its checksum and cached where the profile
says (under ``data/``); a rerun checks the cached copy and downloads nothing. A local mirror of the
files (``$ASGM_REFERENCE_DATA/reference``, e.g. ``../shared/data``) is used instead of the network
when it holds a copy with the right checksum.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pooch
import requests

from asgm.atomic import atomic_path
from asgm.config import Download
from asgm.errors import AsgmError, InputFileError

#: Environment variable naming a directory whose ``reference/`` holds copies of the reference files.
MIRROR_ENV = "ASGM_REFERENCE_DATA"


def sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_mirror() -> Path | None:
    """``$ASGM_REFERENCE_DATA/reference`` when that directory exists."""
    root = os.environ.get(MIRROR_ENV)
    return Path(root) / "reference" if root and (Path(root) / "reference").is_dir() else None


def fetch(download: Download, mirror: Path | None = None, progress: bool = True) -> Path:
    """Make sure ``download.path`` exists with the pinned checksum, and return it.

    Order: the cached file if its checksum matches; else a copy from ``mirror`` (a directory holding
    a file of the same name) if its checksum matches; else a download from ``download.url``. The
    file appears only once verified (pooch downloads to a temporary file and renames it).

    Raises
    ------
    InputFileError
        The downloaded file's checksum differs from the pinned one (the file is not kept).
    AsgmError
        The URL cannot be reached (no network, server down), with what to do offline.
    """
    path = download.path
    if path.is_file() and sha256(path) == download.sha256:
        return path
    # the mirror holds the file by name, or in a folder named like the file's own (reference/amw/…)
    for local in (mirror / path.name, mirror / path.parent.name / path.name) if mirror else ():
        if local.is_file() and sha256(local) == download.sha256:
            with atomic_path(path) as tmp:
                shutil.copyfile(local, tmp)
            return path
    try:
        pooch.retrieve(download.url, known_hash=f"sha256:{download.sha256}", fname=path.name, path=path.parent, progressbar=progress)
    except ValueError as exc:
        if "hash" not in str(exc).lower():
            raise
        raise InputFileError(
            download.url,
            f"downloaded file does not match its pinned SHA-256 {download.sha256[:12]}… ({exc})",
            "the file changed upstream: check it, then update the url or sha256 in the profile's region.downloads",
        ) from None
    except requests.exceptions.RequestException as exc:
        raise AsgmError(
            f"could not download {download.url} ({type(exc).__name__})\n"
            f"  How to fix: connect to the internet, or place a copy of {path.name} (sha256 {download.sha256}) at {path}, "
            f"or set {MIRROR_ENV} to a directory whose reference/ holds it"
        ) from None
    return path


def fetch_all(downloads: Iterable[Download], mirror: Path | None = None, progress: bool = True) -> list[Path]:
    """:func:`fetch` every file (the mirror defaults to :func:`default_mirror`).

    Raises
    ------
    AsgmError
        One error listing every file that could not be fetched, each with its fix.
    """
    mirror = mirror if mirror is not None else default_mirror()
    paths, problems = [], []
    for download in downloads:
        try:
            paths.append(fetch(download, mirror, progress))
        except AsgmError as exc:
            problems.append(str(exc))
    if problems:
        raise AsgmError(f"{len(problems)} reference file(s) could not be fetched:\n" + "\n".join(f"  * {p}" for p in problems))
    return paths
