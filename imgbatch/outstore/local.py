"""OUT as a local folder: atomic renames (atomic_files), the publish journal (journal.py) and
flock (folder_lock.py). One writer holds the flock, so files carry no version."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import BinaryIO

from imgbatch.atomic_files import atomic_path, remove_stale_temps
from imgbatch.errors import UsageError
from imgbatch.layout import JOURNAL, SHARDS_DIR
from imgbatch.outstore.base import OutputStore, Publication, Stat
from imgbatch.outstore.folder_lock import folder_lock, read_holder
from imgbatch.outstore.journal import JournalPublication, recover


class LocalStore(OutputStore):
    """OUT as a folder on this machine (or a shared file system with working flock)."""

    remote = False
    pins_versions = False  # a copied folder keeps its shards: sizes, not inodes, are checked
    composes = False  # a folder has nothing cheaper than copying bytes through this machine

    def __init__(self, url: str) -> None:
        self.url = url

    def where(self, name: str) -> str:
        return os.path.join(self.url, name)

    def prepare(self) -> None:
        os.makedirs(self.url, exist_ok=True)
        for folder in (self.url, self.where(SHARDS_DIR)):
            remove_stale_temps(folder)

    def names(self) -> dict[str, bool] | None:
        if os.path.exists(self.url) and not os.path.isdir(self.url):
            raise UsageError(f"--out {self.url} is a file, not a folder")
        if not os.path.isdir(self.url):
            return None
        found = {}
        for name in sorted(os.listdir(self.url)):
            path = self.where(name)
            found[name] = os.path.isdir(path) and not os.path.islink(path)
        return found

    def stat(self, name: str) -> Stat | None:
        """Size, and as version the inode and mtime: a rename or rewrite changes it."""
        try:
            st = os.stat(self.where(name))
        except OSError:
            return None
        return Stat(st.st_size, f"{st.st_ino}-{st.st_mtime_ns}")

    def read_bytes(self, name: str) -> bytes | None:
        try:
            with open(self.where(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def open_read(self, name: str, version: str | None = None, size: int | None = None) -> BinaryIO:
        return open(self.where(name), "rb")

    def read_range(self, name: str, start: int, length: int, version: str | None = None) -> bytes:
        """By pread: no buffer beyond the bytes asked for."""
        with open(self.where(name), "rb") as f:
            return os.pread(f.fileno(), length, start)

    @contextmanager
    def writing(self, name: str, durable: bool = True, batched: bool = False) -> Iterator[str]:
        path = self.where(name)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with atomic_path(path, sync_file=durable, sync_dir=durable and not batched) as tmp:
            yield tmp

    def write_bytes(
        self, name: str, data: bytes, durable: bool = True, if_version: str | None = None
    ) -> None:
        """Atomic write; `if_version` needs no check here: the flock holder is the only writer."""
        with self.writing(name, durable) as tmp, open(tmp, "wb") as f:
            f.write(data)

    def delete(self, name: str) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self.where(name))

    def lock(self, label: str, wait: float = 0) -> AbstractContextManager[dict]:
        return folder_lock(self.url, label, wait)

    def holder(self) -> dict | None:
        return read_holder(self.url)

    def publication(self) -> Publication:
        return JournalPublication(self.url)

    def recover(self) -> str | None:
        return recover(self.url)

    def settled(self, files: dict[str, dict]) -> bool:
        if os.path.exists(self.where(JOURNAL)):
            return False
        try:
            return all(os.path.getsize(self.where(f)) == r["bytes"] for f, r in files.items())
        except (OSError, KeyError, TypeError):
            return False
