"""OUT on gs://BUCKET/PREFIX, crash-safe by GCS's own means (docs/decisions/output-store-gcs.md).

An upload is all or nothing, so a file needs no temp name: data objects are uploaded as they
are, each checked by crc32c. Commit records are written last and with a generation
precondition (`ifGenerationMatch`): a shard's done-record names its data objects'
generations, and run.json names the generations of the set it publishes, so a reader that
goes through run.json (verify, stats, `up_to_date`) reads that set or sees that it was
replaced, never a mix. One writer: a leased lock object (lease.py); a run that lost its lease
commits nothing more.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from google.api_core import exceptions as api_exc

from imgbatch.atomic_files import file_digest
from imgbatch.errors import PermanentError, TransientError
from imgbatch.layout import RUN
from imgbatch.outstore import compose, lease
from imgbatch.outstore.base import OutputStore, Part, Publication, Stat
from imgbatch.storage.gcs_client import (
    RetryPolicy,
    call_endpoint,
    crc32c_b64,
    endpoint,
    file_crc32c,
    gs_url,
    object_name,
    parse_gs_url,
    shared_client,
    translate,
)

T = TypeVar("T")
READ_CHUNK = 8 << 20  # bytes per ranged GET of a streamed read


class GCSStore(OutputStore):
    """OUT as the objects under gs://bucket/prefix/. Picklable: the client is per process."""

    remote = True
    pins_versions = True
    composes = True

    def __init__(self, url: str, policy: RetryPolicy | None = None) -> None:
        self.bucket_name, self.prefix = parse_gs_url(url)
        self.url = gs_url(self.bucket_name, self.prefix)
        self.policy = policy or RetryPolicy()

    def _object(self, name: str) -> str:
        return object_name(self.prefix, name)

    def _bucket(self):
        return shared_client().bucket(self.bucket_name)

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """fn with the client's retry inside and backoff around; errors as imgbatch's."""

        def once() -> T:
            try:
                return fn()
            except Exception as exc:
                raise translate(exc, what) from exc

        return call_endpoint(once, what, self.policy, endpoint())

    def _kw(self) -> dict:
        return {"retry": self.policy.client_retry(), "timeout": self.policy.timeouts()}

    def where(self, name: str) -> str:
        return gs_url(self.bucket_name, self._object(name))

    def prepare(self) -> None:
        """Nothing to do: a bucket has no folders, and an upload leaves no temp object."""

    def names(self) -> dict[str, bool] | None:
        prefix = f"{self.prefix}/" if self.prefix else ""

        def listing() -> dict[str, bool]:
            pages = shared_client().list_blobs(
                self.bucket_name, prefix=prefix or None, delimiter="/", **self._kw()
            )
            found = {b.name[len(prefix) :]: False for b in pages}
            found.update({p[len(prefix) :].rstrip("/"): True for p in pages.prefixes})
            return found

        found = self._call(listing, f"listing {self.url}")
        return dict(sorted(found.items())) or None

    def stat(self, name: str) -> Stat | None:
        def get() -> Stat | None:
            blob = self._bucket().get_blob(self._object(name), **self._kw())
            return None if blob is None else Stat(blob.size, str(blob.generation), blob.crc32c)

        return self._call(get, f"reading the metadata of {self.where(name)}")

    def read_bytes(self, name: str) -> bytes | None:
        def get() -> bytes | None:
            try:
                blob = self._bucket().blob(self._object(name))
                return blob.download_as_bytes(checksum="crc32c", **self._kw())
            except api_exc.NotFound:
                return None

        return self._call(get, f"reading {self.where(name)}")

    def open_read(self, name: str, version: str | None = None, size: int | None = None) -> BinaryIO:
        """A streamed reader (ranged GETs); with `version`, only that generation is read: one
        replaced since is FileNotFoundError, not the new bytes."""
        known = version is not None and size is not None  # the caller's stat: no second one
        stat = Stat(size, version) if known else self.stat(name)
        if stat is None or (version is not None and stat.version != version):
            raise FileNotFoundError(f"{self.where(name)}: no such object (generation {version})")
        return io.BufferedReader(_Ranges(self, name, stat), buffer_size=READ_CHUNK)

    def read_range(self, name: str, start: int, length: int, version: str | None = None) -> bytes:
        """One ranged GET; with `version`, of that generation only (FileNotFoundError once
        it was replaced)."""
        generation = int(version) if version is not None else None
        blob = self._bucket().blob(self._object(name), generation=generation)
        kw = self._kw()

        def get() -> bytes:
            try:
                return blob.download_as_bytes(start=start, end=start + length - 1, **kw)
            except api_exc.NotFound:
                gone = f"{self.where(name)} (generation {version}) is gone: replaced or deleted"
                raise FileNotFoundError(gone) from None

        return self._call(get, f"reading {self.where(name)}")

    @contextmanager
    def writing(self, name: str, durable: bool = True, batched: bool = False) -> Iterator[str]:
        """A local temp file, uploaded to `name` (crc32c checked) when the block ends."""
        fd, path = tempfile.mkstemp(prefix="imgbatch-out-")
        os.close(fd)
        try:
            yield path
            self.upload(name, path)
        finally:
            os.unlink(path)

    def upload(self, name: str, path: str, if_version: str | None = None) -> Stat:
        """Upload a local file to `name`, crc32c checked; `if_version` as in write_bytes."""

        def send(blob, generation: int | None) -> None:
            blob.upload_from_filename(
                path, if_generation_match=generation, checksum="crc32c", **self._kw()
            )

        return self._put(name, file_crc32c(path), os.path.getsize(path), if_version, send)

    def write_bytes(
        self, name: str, data: bytes, durable: bool = True, if_version: str | None = None
    ) -> None:
        """Upload `data`; with `if_version` ("0": must not exist) only over that generation."""
        self.upload_bytes(name, data, if_version)

    def upload_bytes(self, name: str, data: bytes, if_version: str | None = None) -> Stat:
        """write_bytes, telling what was stored (its generation)."""

        def send(blob, generation: int | None) -> None:
            blob.upload_from_string(data, if_generation_match=generation, **self._kw())

        return self._put(name, crc32c_b64(data), len(data), if_version, send)

    def _put(
        self,
        name: str,
        crc: str,
        size: int,
        if_version: str | None,
        send: Callable[..., None],
    ) -> Stat:
        """One upload with retries: refused once this run lost its lease; a stored crc32c
        other than ours is deleted and sent again; a 412 is resolved by `_already`."""
        lease.check(self.url)
        where = self.where(name)
        generation = int(if_version) if if_version is not None else None

        def once() -> Stat:
            blob = self._bucket().blob(self._object(name))
            try:
                send(blob, generation)
            except api_exc.PreconditionFailed:
                return self._already(name, crc, size)
            if blob.crc32c != crc:
                blob.delete(if_generation_match=blob.generation, **self._kw())
                raise TransientError(f"{where}: stored crc32c {blob.crc32c} != sent {crc}")
            return Stat(size, str(blob.generation), crc)

        return self._call(once, f"writing {where}")

    def _already(self, name: str, crc: str, size: int) -> Stat:
        """After a 412: our own write whose answer was lost (same bytes there), or someone
        else's (PermanentError: nothing is overwritten)."""
        blob = self._bucket().get_blob(self._object(name), **self._kw())
        if blob is not None and blob.crc32c == crc and blob.size == size:
            return Stat(size, str(blob.generation), crc)
        raise PermanentError(
            f"{self.where(name)} was written by someone else meanwhile (precondition failed); "
            "another run writes this output: check who holds its lock"
        )

    def compose_objects(self, dest: str, sources: list[Part]) -> Part:
        """One compose call: `dest` = `sources` in order, each pinned to its generation
        (compose.Refused: the bucket refuses compose; compose.SourceChanged: a 412)."""
        lease.check(self.url)
        bucket = self._bucket()

        def once() -> Part:
            blob = bucket.blob(self._object(dest))
            blobs = [bucket.blob(self._object(s.name)) for s in sources]
            pins = [int(s.version) if s.version else None for s in sources]
            try:
                blob.compose(blobs, if_source_generation_match=pins, **self._kw())
            except api_exc.PreconditionFailed:
                raise compose.SourceChanged(self.where(dest)) from None
            except api_exc.GoogleAPICallError as exc:
                if exc.code is not None and 400 <= exc.code < 500 and exc.code not in (408, 429):
                    raise compose.Refused(f"{self.where(dest)}: {exc.code} {exc}") from exc
                raise
            return Part(dest, str(blob.generation), blob.size or 0, blob.crc32c or "")

        return self._call(once, f"composing {self.where(dest)}")

    def list_under(self, folder: str) -> list[str]:
        """The names (relative to OUT) of every object under `folder`, in one listing."""
        prefix = self._object(folder) + "/"

        def listing() -> list[str]:
            blobs = self._bucket().list_blobs(prefix=prefix, **self._kw())
            return [f"{folder}/{b.name[len(prefix) :]}" for b in blobs]

        return self._call(listing, f"listing {self.where(folder)}")

    def delete(self, name: str) -> None:
        lease.check(self.url)

        def remove() -> None:
            with suppress(api_exc.NotFound):
                self._bucket().blob(self._object(name)).delete(**self._kw())

        self._call(remove, f"deleting {self.where(name)}")

    def lock(self, label: str, wait: float = 0) -> AbstractContextManager[dict]:
        return lease.held(self.url, self._bucket(), self._object(".imgbatch.lock"), label, wait)

    def holder(self) -> dict | None:
        return lease.read_holder(self._bucket(), self._object(".imgbatch.lock"), self.policy)

    def publication(self) -> Publication:
        return GCSPublication(self)

    def recover(self) -> str | None:
        """Nothing to finish: an interrupted publish leaves a run.json whose generations no
        longer match (not `settled`), so the next run publishes the set again."""
        return None

    def settled(self, files: dict[str, dict]) -> bool:
        for name, record in files.items():
            stat = self.stat(name)
            if stat is None or stat.size != record.get("bytes"):
                return False
            if stat.version != record.get("generation"):
                return False
        return True


class _Ranges(io.RawIOBase):
    """One generation of an object as a seekable raw file: each read is a ranged GET (with
    retries), from a blob made here, so the download goes to the client's endpoint, not to
    a mediaLink (BlobReader reloads the metadata, and the emulator's names its HTTPS port)."""

    def __init__(self, store: GCSStore, name: str, stat: Stat) -> None:
        self.store, self.name, self.stat, self.pos = store, name, stat, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.stat.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.stat.size - self.pos)
        if n <= 0:
            return 0
        data = self.store.read_range(self.name, self.pos, n, self.stat.version)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


@dataclass(frozen=True)
class Uploaded:
    """One file of a GCS publication: what run.json records of it."""

    bytes: int
    sha256: str | None  # None for a composed file: its bytes never passed through here
    generation: str | None  # None for the commit record itself, uploaded at commit
    crc32c: str | None = None


class GCSPublication(Publication):
    """Files written locally, uploaded as each is done; run.json last, over the generation it
    had when the publication began (a second writer's run.json is never overwritten)."""

    def __init__(self, store: GCSStore) -> None:
        self.store = store
        self.folder = tempfile.TemporaryDirectory(prefix="imgbatch-publish-")
        self.paths: dict[str, str] = {}
        self.staged: dict[str, Uploaded] = {}
        before = store.stat(RUN)
        self.run_version = before.version if before is not None else "0"

    def __exit__(self, *exc: object) -> None:
        self.folder.cleanup()

    def new(self, final: str) -> str:
        self.paths[final] = os.path.join(self.folder.name, final)
        return self.paths[final]

    def done(self, final: str, sha256: str | None = None) -> Uploaded:
        path = self.paths[final]
        digest = file_digest(path)[0] if sha256 is None else sha256
        if final == RUN:
            self.staged[final] = Uploaded(os.path.getsize(path), digest, None)
        else:
            stat = self.store.upload(final, path)
            self.staged[final] = Uploaded(stat.size, digest, stat.version, stat.crc32c)
        return self.staged[final]

    def compose(self, final: str, head: bytes, parts: list[Part]) -> Uploaded | None:
        """`final` composed on the bucket (compose.py); None when the bucket refuses compose."""
        try:
            stat = compose.compose(self.store, final, head, parts)
        except compose.Refused:
            return None
        self.staged[final] = Uploaded(stat.size, None, stat.version, stat.crc32c)
        return self.staged[final]

    def records(self) -> dict[str, dict]:
        """Size, generation and crc32c of each file, and its sha256 when it was read here."""
        return {
            name: {
                "bytes": u.bytes,
                "generation": u.generation,
                "crc32c": u.crc32c,
                **({"sha256": u.sha256} if u.sha256 else {}),
            }
            for name, u in self.staged.items()
            if name != RUN
        }

    def commit(self, remove: tuple[str, ...] = ()) -> None:
        for name in remove:
            self.store.delete(name)
        self.store.upload(RUN, self.paths[RUN], if_version=self.run_version)
