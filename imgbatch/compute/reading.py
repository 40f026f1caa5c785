"""The read side of a partition: where reads run, and how far they may run ahead.

A `Reader` sends reads either path by path to an I/O thread pool in this process, or chunk
by chunk to fetch processes that each read on their own I/O threads (see
imgbatch.compute.parallel.fetch_processes for why). A `Window` bounds the chunks in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from functools import partial

from imgbatch.compute import parallel
from imgbatch.errors import TransientError
from imgbatch.pixels.images import Outcome
from imgbatch.storage.base import Storage
from imgbatch.storage.relpath import InvalidPath

# Sources read, and then standardized, as one unit of work.
IMAGES_PER_CHUNK = 32

Fetched = bytes | Outcome


@dataclass(frozen=True)
class Window:
    """How far reads run ahead: chunks being read, and chunks handed to the decode pool.

    At most (reading + decoding) * IMAGES_PER_CHUNK sources are held at once, whatever the
    partition size; a full decode window stops new reads (backpressure).
    """

    reading: int = 2
    decoding: int = 4

    @classmethod
    def sized(cls, io_threads: int, decode_workers: int) -> Window:
        """Enough chunks in reading to keep every I/O thread busy, two per decode worker."""
        return cls(reading=-(-io_threads // IMAGES_PER_CHUNK) + 1, decoding=2 * decode_workers)


def fetch(storage: Storage, path: str) -> Fetched:
    """The source's bytes, or the outcome that explains why there are none."""
    try:
        return storage.read(path)
    except FileNotFoundError:
        return Outcome("missing", f"not found: {path}")
    except InvalidPath as exc:
        return Outcome("rejected", str(exc))
    except IsADirectoryError:
        return Outcome("missing", f"is a folder, not a file: {path}")
    except TransientError:
        raise
    except OSError as exc:
        return Outcome("error", f"read failed: {exc}")


def fetch_many(storage: Storage, paths: Sequence[str], threads: int) -> list[Fetched]:
    """A chunk read on this process's I/O pool of `threads`; runs in a fetch process."""
    return list(parallel.io_pool(threads).map(partial(fetch, storage), paths))


@dataclass(frozen=True)
class Reader:
    """Where reads run: `threads` I/O threads in all. With `processes` = 0, `pool` is an I/O
    thread pool here and gets one task per path; otherwise it is a pool of that many fetch
    processes and gets one task per chunk, read there on threads / processes threads."""

    pool: Executor
    threads: int
    processes: int = 0

    @classmethod
    def for_decoders(cls, kind: str, remote: bool, decode_workers: int) -> Reader:
        """The reader that keeps `decode_workers` decoders of `kind` fed from this source."""
        threads = parallel.io_threads(remote, decode_workers)
        processes = parallel.fetch_processes(kind, remote, decode_workers)
        if processes:
            return cls(parallel.fetch_pool(processes), threads, processes)
        return cls(parallel.io_pool(threads), threads)

    def submit(self, storage: Storage, paths: Sequence[str]) -> list[Future]:
        """Start reading one chunk."""
        if self.processes:
            each = -(-self.threads // self.processes)
            return [self.pool.submit(fetch_many, storage, paths, each)]
        return [self.pool.submit(fetch, storage, p) for p in paths]

    def collect(self, futures: list[Future]) -> list[Fetched]:
        """The chunk's items, in order (waits for them)."""
        if self.processes:
            return futures[0].result()
        return [f.result() for f in futures]
