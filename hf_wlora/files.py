"""Durable files: what a power cut cannot tear, for the writers that commit work (encoding parts, checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path

TEMP_SUFFIX = ".tmp"  # of a file being written: renamed into place when complete, or left by a crash


def temporary_path(path: Path) -> Path:
    """A temporary file next to `path`, named per process: processes of a distributed run that write the same file
    at once (the split's settings) must not rename each other's temporary away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.name}.{os.getpid()}{TEMP_SUFFIX}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, renamed into place when complete."""
    temporary = temporary_path(path)
    temporary.write_text(text)
    commit_path(temporary, path)


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


__all__ = ["TEMP_SUFFIX", "commit_path", "fsync_path", "temporary_path", "write_text_atomic"]
