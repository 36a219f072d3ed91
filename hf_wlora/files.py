"""Durable files: what a power cut cannot tear, for the writers that commit work (encoding parts, checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's) contents to disk, so a power cut cannot leave it empty or torn."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def commit_path(temporary: Path, path: Path) -> None:
    """Rename a complete temporary file or folder into place, durably: its bytes (every file of a folder) reach the
    disk before the rename, and the rename before whatever the caller writes next (a line that commits it)."""
    for written in [*sorted(temporary.rglob("*")), temporary] if temporary.is_dir() else [temporary]:
        fsync_path(written)
    os.replace(temporary, path)
    fsync_path(path.parent)


__all__ = ["commit_path", "fsync_path"]
