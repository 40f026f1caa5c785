"""An archive name that receives no whole archive (an HTML error page, JSON, an empty or cut
file) is never kept under its name, says what arrived, and a rerun after the fix succeeds.
Real wget against the loopback server; real .tar.gz files of real photos."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from helpers.http_server import serve

import imgbatch.acquire.extract
from imgbatch.acquire.archive import verified_record
from imgbatch.acquire.download import WgetOptions, download
from imgbatch.acquire.extract import extract_archive
from imgbatch.errors import PermanentError, TransientError
from imgbatch.sampledata.samples import write_tree

FAST = WgetOptions(tries=2, waitretry=0, read_timeout=1, connect_timeout=2)
HTML = b"<!DOCTYPE html>\n<html><body><h1>Sign in to continue</h1></body></html>\n"


@pytest.fixture
def server():
    with serve() as srv:
        yield srv


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, bytes]:
    """(folder of real photos, a .tar.gz of them whose members sit under beauty_image/)."""
    root = tmp_path_factory.mktemp("photos")
    write_tree(root, 6, seed=4, subdirs=1, min_side=200, max_side=400)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(root / "d0", arcname="beauty_image")
    return root / "d0", buf.getvalue()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_html_page_is_named_set_aside_and_a_rerun_after_the_fix_succeeds(server, photos, tmp_path):
    server.add("beauty_image.tar.gz", HTML, content_type="text/html; charset=utf-8")
    url = server.url("beauty_image.tar.gz")

    with pytest.raises(PermanentError) as err:
        download(url, tmp_path, options=FAST)

    bad = tmp_path / "beauty_image.tar.gz.bad"
    assert str(err.value) == (
        f"{url}: the server sent an HTML page, not a gzip archive; kept as {bad}"
    )
    assert names(tmp_path) == ["beauty_image.tar.gz.bad"] and bad.read_bytes() == HTML
    assert len(server.gets("beauty_image.tar.gz")) == 1  # wget did not retry a 200

    server.add("beauty_image.tar.gz", photos[1])  # the server is fixed
    got = download(url, tmp_path, options=FAST)
    assert not got.skipped and (tmp_path / "beauty_image.tar.gz").read_bytes() == photos[1]
    assert (got.members, got.member_bytes) == (
        6,
        sum(p.stat().st_size for p in photos[0].iterdir()),
    )


@pytest.mark.parametrize(
    "body,content_type,what",
    [
        (b'{"error": {"code": 403, "message": "denied"}}', "application/json", "a JSON document"),
        (b"", "application/octet-stream", "an empty file"),
        (b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", None, "an XML"),
        (b"just some text", "text/plain", "a file that is no archive"),
    ],
)
def test_other_non_archives_say_what_they_are(server, tmp_path, body, content_type, what):
    faults = {"content_type": content_type} if content_type else {}
    server.add("x.tgz", body, **faults)
    with pytest.raises(PermanentError, match="not a gzip archive; kept as") as err:
        download(server.url("x.tgz"), tmp_path, options=FAST)
    assert f"the server sent {what}" in str(err.value)
    assert names(tmp_path) == ["x.tgz.bad"]


@pytest.mark.parametrize(
    "content_type,said",
    [
        ("application/gzip", "an HTML page (labelled application/gzip), not a gzip"),
        ("text/html; charset=utf-8", "an HTML page, not a gzip"),
        ("application/octet-stream", "an HTML page, not a gzip"),
    ],
)
def test_a_page_is_described_by_its_bytes_and_a_contrary_label_is_added(
    server, tmp_path, content_type, said
):
    server.add("x.tar.gz", HTML, content_type=content_type)
    with pytest.raises(PermanentError) as err:
        download(server.url("x.tar.gz"), tmp_path, options=FAST)
    assert f"the server sent {said} archive; kept as" in str(err.value)


def test_truncated_archive_of_announced_size_is_permanent_then_rerun_succeeds(
    server, photos, tmp_path
):
    archive = photos[1]
    server.add("set.tar.gz", archive[: len(archive) * 2 // 3])  # the server's file is cut
    url = server.url("set.tar.gz")

    with pytest.raises(PermanentError, match="truncated gzip archive") as err:
        download(url, tmp_path, options=FAST)

    assert str(err.value).startswith(f"{url}: the server sent a truncated gzip archive (")
    assert str(err.value).endswith(f"; kept as {tmp_path / 'set.tar.gz.bad'}")
    assert names(tmp_path) == ["set.tar.gz.bad"]

    server.add("set.tar.gz", archive)
    got = download(url, tmp_path, options=FAST)
    assert (tmp_path / "set.tar.gz").read_bytes() == archive and got.members == 6


def test_truncated_archive_without_announced_size_is_transient(server, photos, tmp_path):
    # No Content-Length: wget cannot tell a dropped connection from the end of the body.
    server.add("set.tar.gz", photos[1][:-20], send_length=False)
    with pytest.raises(TransientError, match="truncated gzip archive"):
        download(server.url("set.tar.gz"), tmp_path, options=FAST)
    assert names(tmp_path) == ["set.tar.gz.bad"]


def test_archive_with_a_refused_member_is_not_kept(server, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        link = tarfile.TarInfo("cat/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    server.add("evil.tar.gz", buf.getvalue())
    with pytest.raises(PermanentError, match=r"member 'cat/passwd' refused: symlink"):
        download(server.url("evil.tar.gz"), tmp_path, options=FAST)
    assert names(tmp_path) == ["evil.tar.gz.bad"]


def test_html_left_as_the_archive_by_an_older_version_is_fetched_again(server, photos, tmp_path):
    (tmp_path / "set.tar.gz").write_bytes(HTML)  # "already there", but no archive
    server.add("set.tar.gz", photos[1])
    notes = []

    got = download(server.url("set.tar.gz"), tmp_path, options=FAST, on_progress=notes.append)

    assert not got.skipped and (tmp_path / "set.tar.gz").read_bytes() == photos[1]
    assert (tmp_path / "set.tar.gz.bad").read_bytes() == HTML
    assert any("is an HTML page, not a gzip archive; moved to" in n for n in notes)


def test_checked_download_is_read_once_more_only_by_extraction(
    server, photos, tmp_path, monkeypatch
):
    server.add("beauty_image.tar.gz", photos[1])
    dest = tmp_path / "archives"
    got = download(server.url("beauty_image.tar.gz"), dest, options=FAST)
    record = verified_record(got.path)
    assert record["sha256"] == got.sha256 and record["files"] == 6
    assert record is not None and not any(p.suffix == ".json" for p in dest.iterdir())

    again = download(server.url("beauty_image.tar.gz"), dest, sha256=got.sha256, options=FAST)
    assert again.skipped and len(server.gets("beauty_image.tar.gz")) == 1

    checks = []
    monkeypatch.setattr(imgbatch.acquire.extract, "verify_archive", checks.append)
    extract_archive(got.path, tmp_path / "images")
    assert checks == []  # the recorded check stood in for a second full read
    for photo in photos[0].iterdir():
        assert (tmp_path / "images" / "beauty_image" / photo.name).read_bytes() == (
            photo.read_bytes()
        )
