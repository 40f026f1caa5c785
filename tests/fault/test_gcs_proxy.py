"""gs:// reads behind a proxy: the object GETs (imgbatch's own http.client path) take the proxy
and CA settings the storage client's listing takes (HTTP(S)_PROXY, NO_PROXY, proxy
credentials, REQUESTS_CA_BUNDLE), through a real forward proxy (tests/helpers/forward_proxy.py)
in front of the real emulator, over plain HTTP and through a CONNECT tunnel to its HTTPS port.
"""

from __future__ import annotations

import ssl
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.forward_proxy import forward_proxy
from helpers.gcs import _new_bucket, direct_client
from helpers.hung import refused_port

from imgbatch.errors import ImgbatchError
from imgbatch.storage.gcs import GCSStorage
from imgbatch.storage.gcs_client import RetryPolicy

QUICK = RetryPolicy(attempts=2, timeout=5, initial_wait=0.05, max_wait=0.1)
NAMES = ["a.png", "b/c.png"]
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy")


@pytest.fixture
def bucket(gcs_emulator, monkeypatch) -> str:
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    name = _new_bucket(gcs_emulator)
    for i, path in enumerate(NAMES):
        blob = direct_client(gcs_emulator.url).bucket(name).blob(f"imgs/{path}")
        blob.upload_from_string(bytes([i]) * 100)
    return name


def read_all(bucket: str) -> list[bytes]:
    """List, then read every object, on a new thread (no kept-alive connection from before)."""
    storage = GCSStorage(f"gs://{bucket}/imgs", policy=QUICK)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: [storage.read(p) for p in NAMES]).result()


def test_reads_go_through_the_http_proxy_with_its_credentials(bucket, gcs_emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    with forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("://", "://ann:s%40cret@"))
        assert read_all(bucket) == [bytes([i]) * 100 for i in range(len(NAMES))]
    media = [s for s in proxy.seen if "alt=media" in s[1]]
    assert len(media) == len(NAMES)
    assert all(target.startswith(gcs_emulator.url + "/download/") for _, target, _ in media)
    assert {auth for _, _, auth in media} == {"Basic YW5uOnNAY3JldA=="}  # ann:s@cret


def test_no_proxy_sends_reads_around_the_proxy(bucket, gcs_emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    with forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert len(read_all(bucket)) == len(NAMES)
    assert proxy.seen == []


def test_a_proxy_that_is_down_fails_the_reads(bucket, gcs_emulator, monkeypatch):
    """The emulator answers; only the proxy named for it refuses: the reads went to it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{refused_port()}")
    with pytest.raises(ImgbatchError, match="(?i)connection refused"):
        read_all(bucket)


def test_https_reads_tunnel_through_the_proxy_and_trust_the_ca_bundle(
    bucket, gcs_emulator, monkeypatch, tmp_path
):
    """The emulator's HTTPS certificate is self-signed for 127.0.0.1: trusted only through
    REQUESTS_CA_BUNDLE, as the storage client trusts it."""
    https = f"https://127.0.0.1:{gcs_emulator.https_port}"
    cert = tmp_path / "emulator.pem"
    cert.write_text(ssl.get_server_certificate(("127.0.0.1", gcs_emulator.https_port)))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", https)
    with forward_proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        assert read_all(bucket) == [bytes([i]) * 100 for i in range(len(NAMES))]
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        with pytest.raises(ImgbatchError, match="CERTIFICATE_VERIFY_FAILED"):
            read_all(bucket)  # the client's default bundle does not know the emulator's CA
    tunnels = [target for method, target, _ in proxy.seen if method == "CONNECT"]
    assert tunnels and set(tunnels) == {f"127.0.0.1:{gcs_emulator.https_port}"}
