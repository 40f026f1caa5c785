"""Where OUT's bytes live: one interface, `OutputStore`, for a local folder and gs://.

The output stage (shards, assembly, ownership, verify, stats) and the plan file reach OUT
only through it, by file name (e.g. "run.json", "shards/part-00000.npy"). Each store keeps
the same promises by its own means: a write is all or nothing, a shard's done-record and
run.json are commit records written last, one writer at a time, and a publish leaves the
old set or the new one. How, is the store's business: renames, a journal and flock on a
folder; generation preconditions and a leased lock object on a bucket.

Stores are found by URL scheme in one table, `SCHEMES` (as imgbatch.storage.base does for
sources): the module of a scheme is imported only when such an OUT is opened, so a local
run never loads the Google client. A new scheme is one module and one line here.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from imgbatch.errors import PermanentError, UsageError
from imgbatch.storage.urls import GCS_SCHEME

# URL scheme -> "module:class"; the class takes the URL. "" is a local folder.
SCHEMES: dict[str, str] = {
    GCS_SCHEME: "imgbatch.outstore.gcs:GCSStore",
    "": "imgbatch.outstore.local:LocalStore",
}


@dataclass(frozen=True)
class Stat:
    """What a store says about one file: its size and its version, which changes whenever
    the file is replaced (a GCS generation; inode and mtime in a folder)."""

    size: int
    version: str
    crc32c: str | None = None  # base64, where the store keeps one (GCS)


@dataclass(frozen=True)
class Part:
    """One source of a composed file: a file of OUT at a version, with its size and crc32c."""

    name: str
    version: str | None
    size: int
    crc32c: str


class PartsChanged(PermanentError):
    """A composed file was refused, not published: parts are no longer what their records
    say (replaced or deleted since). `names`: the parts found changed (may be empty)."""

    def __init__(self, message: str, names: list[str]) -> None:
        super().__init__(message)
        self.names = names


class Staged(Protocol):
    """One file of a publication, as `Publication.done` records it."""

    bytes: int


class Publication(AbstractContextManager, ABC):
    """Several files published as one set, run.json (the commit record) last.

    with store.publication() as pub:
        path = pub.new("images.npy"); write path; pub.done("images.npy")
        ...
        pub.commit(remove=("images_f32.npy",))

    `new` hands out a local file to write; files not committed are dropped when the block ends.
    """

    paths: dict[str, str]  # final name -> the local file written for it
    staged: dict[str, Staged]

    @abstractmethod
    def new(self, final: str) -> str:
        """A local path to write `final`'s new content to."""

    @abstractmethod
    def done(self, final: str, sha256: str | None = None) -> Staged:
        """`final` is written: record its size and sha256 (computed unless given)."""

    @abstractmethod
    def records(self) -> dict[str, dict]:
        """{final name: what run.json records of it} for the files done so far."""

    @abstractmethod
    def commit(self, remove: tuple[str, ...] = ()) -> None:
        """Publish every file done, the last one (run.json) as the commit record; `remove`
        names files the new set makes stale."""

    def compose(self, final: str, head: bytes, parts: list[Part]) -> Staged | None:
        """Make `final` = `head` + the parts' bytes on the store's side, checked, and record
        it as done; None when the store cannot (the caller then streams the parts itself).
        Only stores that `compose` (OutputStore.composes) are asked."""
        return None


class OutputStore(ABC):
    """OUT, a local folder or a bucket prefix; names are '/'-separated, relative to OUT."""

    url: str  # OUT as the user names it: a folder, or gs://bucket/prefix
    remote: bool  # every call is a network round trip
    pins_versions: bool  # commit records name the versions of the files they commit
    # Files can be concatenated on the store's side (GCS compose): shards then keep their
    # pixels headerless, so images.npy is built without their bytes crossing this machine.
    composes: bool

    @abstractmethod
    def where(self, name: str) -> str:
        """Where `name` is, for messages: a path or a URL."""

    @abstractmethod
    def prepare(self) -> None:
        """Make OUT ready to write (a folder exists) and drop killed writers' temp files."""

    @abstractmethod
    def names(self) -> dict[str, bool] | None:
        """The entries directly in OUT (name -> is a folder); None when OUT does not exist.
        A local OUT that is a file is a UsageError."""

    @abstractmethod
    def stat(self, name: str) -> Stat | None:
        """Size and version of `name`, None when it does not exist."""

    @abstractmethod
    def read_bytes(self, name: str) -> bytes | None:
        """The whole file, None when it does not exist."""

    @abstractmethod
    def open_read(self, name: str, version: str | None = None, size: int | None = None) -> BinaryIO:
        """A seekable binary reader (FileNotFoundError when missing); with `version`, a file
        replaced since is refused rather than read (a reader never mixes two sets). `size`
        with `version`: the file as the caller's own `stat` found it, not asked for again."""

    @abstractmethod
    def read_range(self, name: str, start: int, length: int, version: str | None = None) -> bytes:
        """`length` bytes of `name` from `start` (fewer at its end); `version` as in open_read."""

    @abstractmethod
    def writing(
        self, name: str, durable: bool = True, batched: bool = False
    ) -> AbstractContextManager[str]:
        """Context manager: a local temp path to write; when the block ends the file is `name`,
        whole, or nothing changed. `durable=False`: a crash may lose it (costs a recompute);
        `batched`: a later durable write to the same folder makes this one durable too."""

    @abstractmethod
    def write_bytes(
        self, name: str, data: bytes, durable: bool = True, if_version: str | None = None
    ) -> None:
        """Write `name` whole. With `if_version` ("0": must not exist yet) a store with
        versions refuses (PermanentError) to replace a file someone else wrote meanwhile."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove `name` if it exists."""

    @abstractmethod
    def lock(self, label: str, wait: float = 0) -> AbstractContextManager[dict]:
        """Hold OUT's one-writer lock for the block; yield the holder record (pid, host,
        started, label). OutputBusy, one line naming the holder, after `wait` seconds."""

    @abstractmethod
    def holder(self) -> dict | None:
        """What the current (or last) lock holder recorded; None when nobody holds it."""

    @abstractmethod
    def publication(self) -> Publication:
        """A new publication of a set of files (see Publication)."""

    @abstractmethod
    def recover(self) -> str | None:
        """Finish or undo a publish that was interrupted; say what was done (None: nothing).
        Call it holding the lock, before anything else reads or writes OUT."""

    @abstractmethod
    def settled(self, files: dict[str, dict]) -> bool:
        """True when every file `files` (run.json's "files") names is there as recorded and
        no publish is under way."""

    def read_json(self, name: str) -> dict | None:
        """The document, or None when it is missing or unreadable (treated as not done)."""
        data = self.read_bytes(name)
        try:
            doc = json.loads(data) if data is not None else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def read_parquet(self, name: str, columns: list[str] | None = None):
        """A Parquet file as a pyarrow Table (FileNotFoundError when missing)."""
        import pyarrow.parquet as pq

        with self.open_read(name) as f, pq.ParquetFile(f) as pf:
            return pf.read(columns=columns)


def json_bytes(doc: dict) -> bytes:
    """A JSON document as imgbatch writes every one (sorted keys, indented, final newline)."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def open_output(url: str) -> OutputStore:
    """The store for OUT given as a local folder or gs://bucket/prefix."""
    if not isinstance(url, str) or not url:
        raise UsageError(f"--out must be a folder or a gs://BUCKET/PREFIX URL, got {url!r}")
    scheme = url[: url.index("://") + 3] if "://" in url else ""
    if scheme not in SCHEMES:
        known = ", ".join(s for s in SCHEMES if s) or "nothing else"
        raise UsageError(f"--out {url}: unsupported scheme; use a folder or {known}")
    module, _, name = SCHEMES[scheme].partition(":")
    return getattr(importlib.import_module(module), name)(url)


def locate(path: str) -> tuple[OutputStore, str]:
    """(the store of OUT, the name in it) of a file directly in OUT named by path or URL."""
    folder, _, name = path.rstrip("/").rpartition("/")
    return open_output(folder or "."), name
