"""One writer per gs:// output: a lock object taken with ifGenerationMatch=0, held as a lease.

The object (OUT/.imgbatch.lock) names its holder (pid, host, start, label) and its lease
length. A daemon thread rewrites it every third of the lease, each time over the generation
it wrote last, so a run that lives keeps it. A second run is refused with one line that says
when the lease runs out; once it has (the holder was killed, or lost the bucket for a whole
lease), the next run takes the object over, again by generation, so two runs never both win.
The holder that finds its lease gone (its renewal refused, or not renewed for a whole lease)
marks it lost, and every write of its store is then refused (`check`): it commits nothing
more. Expiry is judged from the object's `updated` time (GCS's clock) against this
machine's clock: machines must keep NTP time (GCE VMs do).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from google.api_core import exceptions as api_exc

from imgbatch.errors import PermanentError, UsageError
from imgbatch.outstore.holder import OutputBusy, busy_message, new_holder
from imgbatch.storage.gcs_client import RetryPolicy, call_endpoint, endpoint, translate

LEASE_ENV = "IMGBATCH_LEASE_SECONDS"  # lease length; tests set a short one
DEFAULT_LEASE_SECONDS = 60.0
POLL_SECONDS = 1.0  # how often a waiting run looks at the lock again


class LeaseLost(PermanentError):
    """This run's lease on OUT was lost: another run may write it now, so this one stops."""


def lease_seconds() -> float:
    """The lease length: IMGBATCH_LEASE_SECONDS, else 60 s."""
    return float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE_SECONDS)


_held: dict[str, Lease] = {}  # OUT url -> this process's lease on it


def check(url: str) -> None:
    """Refuse (LeaseLost) a write to `url` once this process's lease on it is lost."""
    lease = _held.get(url)
    if lease is not None and lease.lost:
        raise LeaseLost(lease.lost)


class Lease:
    """The lock object `name` in `bucket`, held for OUT `url` by this process."""

    def __init__(self, url: str, bucket, name: str, label: str, seconds: float) -> None:
        self.url, self.bucket, self.name, self.seconds = url, bucket, name, seconds
        self.policy = RetryPolicy(attempts=3, initial_wait=0.5, max_wait=2.0)
        self.holder = {**new_holder(label), "lease_seconds": seconds}
        self.generation = 0
        self.renewals = 0
        self.lost = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True, name="lease")

    def _body(self) -> bytes:
        return json.dumps({**self.holder, "renewals": self.renewals}).encode()

    def _kw(self) -> dict:
        return {"retry": self.policy.client_retry(), "timeout": self.policy.timeouts()}

    def _write(self, over: int) -> int | None:
        """Write the lock object over generation `over` (0: none); its new generation, or
        None when the precondition failed (someone else's object is there)."""
        blob = self.bucket.blob(self.name)
        body = self._body()

        def once() -> int | None:
            try:
                blob.upload_from_string(body, if_generation_match=over, **self._kw())
            except api_exc.PreconditionFailed:
                now, data = self._read()
                return now if data == body else None  # ours when the answer was lost
            except api_exc.NotFound:  # the first write to OUT: before any work is done
                raise UsageError(
                    f"out {self.url}: bucket gs://{self.bucket.name} does not exist"
                ) from None
            except api_exc.Forbidden:
                raise UsageError(
                    f"out {self.url}: bucket gs://{self.bucket.name} cannot be written with "
                    "these credentials (HTTP 403)"
                ) from None
            except Exception as exc:
                raise translate(exc, f"writing the lock {self.url}") from exc
            return blob.generation

        return call_endpoint(once, f"writing the lock {self.url}", self.policy, endpoint())

    def acquire(self, wait: float) -> None:
        """Take the lock object, or the expired lease of another; OutputBusy after `wait` s."""
        deadline = time.monotonic() + wait
        while True:
            generation = self._write(0)
            if generation is None:
                other, expires = self._current()
                if other is None:
                    continue  # released meanwhile: try to create it again
                if expires <= time.time():
                    generation = self._write(other)
                elif time.monotonic() >= deadline:
                    raise OutputBusy(self._busy())
            if generation is not None:
                self.generation = generation
                self._thread.start()
                return
            time.sleep(POLL_SECONDS)

    def _current(self) -> tuple[int | None, float]:
        """(generation, expiry as a Unix time) of the lock object there; (None, 0) if none."""
        blob = self.bucket.get_blob(self.name, **self._kw())
        if blob is None:
            return None, 0.0
        generation, data = self._read()
        doc = _doc(data) if generation == blob.generation else None
        seconds = float(doc.get("lease_seconds", DEFAULT_LEASE_SECONDS)) if doc else 0.0
        return blob.generation, blob.updated.timestamp() + seconds

    def _read(self) -> tuple[int | None, bytes | None]:
        """(generation, bytes) of the lock object, (None, None) when there is none. A blob
        made here, not one from a listing: that one's mediaLink may name another endpoint."""
        blob = self.bucket.blob(self.name)
        try:
            data = blob.download_as_bytes(**self._kw())
        except api_exc.NotFound:
            return None, None
        return blob.generation, data

    def _busy(self) -> str:
        """The one line for a run refused: who holds OUT and when its lease runs out."""
        generation, expires = self._current()
        doc = read_holder(self.bucket, self.name, self.policy) if generation else None
        left = max(0.0, expires - time.time())
        until = datetime.fromtimestamp(expires).astimezone().strftime("%H:%M:%S")
        lease = (
            f"its lease ends in {left:.0f} s (at {until}) unless it renews it; "
            "a holder that was killed is taken over then; "
        )
        return busy_message(self.url, doc, lease)

    def _renew_loop(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.seconds / 3):
            self.renewals += 1
            try:
                generation = self._write(self.generation)
            except Exception as exc:  # the bucket may come back within the lease
                if time.monotonic() - renewed > self.seconds:
                    self.lost = f"{self.url}: could not renew the writer lease for "
                    self.lost += f"{self.seconds:g} s ({exc}); stopping, nothing more committed"
                    return
                continue
            if generation is None:
                self.lost = (
                    f"{self.url}: another run took over this run's writer lease; stopping, "
                    "nothing more committed"
                )
                return
            self.generation, renewed = generation, time.monotonic()

    def release(self) -> None:
        """Stop renewing; delete the lock object if it is still ours."""
        self._stop.set()
        self._thread.join()
        if self.lost:
            return
        blob = self.bucket.get_blob(self.name, **self._kw())
        if blob is not None and blob.generation == self.generation:
            blob.delete(if_generation_match=self.generation, **self._kw())


@contextmanager
def held(url: str, bucket, name: str, label: str, wait: float = 0) -> Iterator[dict]:
    """Hold OUT's lease for the block (see Lease); yield the holder record."""
    lease = Lease(url, bucket, name, label, lease_seconds())
    lease.acquire(wait)
    _held[url] = lease
    try:
        yield dict(lease.holder)
    finally:
        _held.pop(url, None)
        lease.release()
        if lease.lost:
            raise LeaseLost(lease.lost)


def read_holder(bucket, name: str, policy: RetryPolicy) -> dict | None:
    """The holder recorded in the lock object, None when there is none."""
    blob = bucket.blob(name)

    def once() -> bytes | None:
        try:
            return blob.download_as_bytes(retry=policy.client_retry(), timeout=policy.timeouts())
        except api_exc.NotFound:
            return None
        except Exception as exc:
            raise translate(exc, f"reading {name}") from exc

    data = call_endpoint(once, f"reading the lock {name}", policy, endpoint())
    return _doc(data) if data is not None else None


def _doc(data: bytes) -> dict | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
