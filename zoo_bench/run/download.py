"""Fetch a public archive with a progress bar, verify its SHA-256, and hand it to the plugin's prepare."""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn, TimeRemainingColumn

from ..dataset import DownloadSpec
from ..errors import DataError


def fetch(url: str, target: Path, sha256: str, console=None, timeout: float = 30.0) -> None:
    """Download ``url`` to ``target`` (resuming nothing, verifying everything)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                       TransferSpeedColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console, transient=True) as progress:
                task = progress.add_task(f"download {target.name}", total=total)
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    progress.advance(task, len(chunk))
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot download {url}: {reason} (offline? fetch it on a machine with internet)") from None
    if digest.hexdigest() != sha256.lower():
        partial.unlink(missing_ok=True)
        raise DataError(f"{url}: checksum mismatch (got sha256 {digest.hexdigest()}, expected {sha256}); "
                        "the download was corrupted or the file changed upstream")
    os.replace(partial, target)


def get(spec: DownloadSpec, data_root: Path, cache_dir: Path, url: str | None = None, sha256: str | None = None,
        console=None) -> tuple[Path, dict[str, int]]:
    """Download (unless the archive is cached and verified), then lay out ``data_root/spec.name``."""
    url = url or spec.url
    sha256 = sha256 or spec.sha256
    archive = cache_dir / "downloads" / (os.path.basename(url.split("?")[0]) or f"{spec.name}.archive")
    if not (archive.exists() and _sha256(archive) == sha256.lower()):
        fetch(url, archive, sha256, console=console)
    dest = data_root / spec.name
    try:
        counts = spec.prepare(archive, dest)
    except Exception as exc:
        raise DataError(f"{archive}: could not lay out {spec.name}: {exc}") from None
    return dest, counts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
