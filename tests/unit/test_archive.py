"""Extraction: integrity first, allow-list before any write, all-or-nothing, restartable."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from imgbatch.acquire.archive import archive_stem, bookkeeping_dir, verify_archive
from imgbatch.acquire.extract import extract_archive, is_extracted, marker_path, staging_path
from imgbatch.errors import PermanentError, UsageError
from imgbatch.sampledata.samples import write_tree


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def pack(path: Path, src: Path, arcname: str = "photos", mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        tf.add(src, arcname=arcname)
    return path


def file_member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A few real photos (scikit-image samples) in sub-folders."""
    root = tmp_path_factory.mktemp("photos")
    write_tree(root, 6, seed=3, subdirs=2)
    return root


@pytest.mark.parametrize("arcname", ["photos", "."])
def test_extracts_exact_tree_and_rerun_skips(tmp_path, photos, arcname):
    archive = pack(tmp_path / "train.tar.gz", photos, arcname)
    dest = tmp_path / "out"
    got = extract_archive(archive, dest)

    tree = dest / ("" if arcname == "." else arcname)  # where `tar -xzf ... -C out` puts it
    assert tree_bytes(tree) == tree_bytes(photos)
    assert (got.files, got.bytes, got.placed) == (6, sum(map(len, tree_bytes(photos).values())), 6)
    assert is_extracted(archive, dest) and not got.skipped
    assert tree_bytes(dest).keys() == {f"{arcname}/{p}".lstrip("./") for p in tree_bytes(photos)}
    assert marker_path(archive, dest).parent.parent == tmp_path / ".out.imgbatch"

    before = {p: p.stat().st_ino for p in tree.rglob("*")}
    again = extract_archive(archive, dest)
    assert again.skipped and {p: p.stat().st_ino for p in tree.rglob("*")} == before


BAD_MEMBERS = {
    "dotdot": (lambda out: file_member("../escaped.txt"), "'..'", "escaped.txt"),
    "nested-dotdot": (lambda out: file_member("ok/../../escaped.txt"), "'..'", "escaped.txt"),
    "absolute": (lambda out: file_member(str(out / "abs.txt")), "absolute", "abs.txt"),
    "symlink-out": (lambda out: special("link", tarfile.SYMTYPE, "../../etc"), "symlink", None),
    "symlink-abs": (lambda out: special("pw", tarfile.SYMTYPE, "/etc/passwd"), "symlink", None),
    "hardlink-out": (
        lambda out: special("hard", tarfile.LNKTYPE, "../escaped.txt"),
        "hardlink",
        None,
    ),
    "chardev": (lambda out: special("null", tarfile.CHRTYPE), "device", None),
    "blockdev": (lambda out: special("sda", tarfile.BLKTYPE), "device", None),
    "fifo": (lambda out: special("pipe", tarfile.FIFOTYPE), "FIFO", None),
}


@pytest.mark.parametrize("case", sorted(BAD_MEMBERS))
def test_bad_member_refused_before_anything_is_written(tmp_path, case):
    make, reason, escape_name = BAD_MEMBERS[case]
    dest = tmp_path / "area" / "out"
    bad, data = make(tmp_path / "area")
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.addfile(*file_member("first/harmless.txt", b"written first in the archive"))
        tf.addfile(bad, data)
        tf.addfile(*file_member("last.txt"))

    with pytest.raises(PermanentError) as err:
        extract_archive(archive, dest)

    assert repr(bad.name) in str(err.value) and reason in str(err.value)
    assert not dest.exists()  # not even the harmless member that came first
    assert sorted(p.name for p in (tmp_path / "area").rglob("*")) == []  # nor bookkeeping
    if escape_name:
        assert not list(tmp_path.rglob(escape_name))


def test_gzip_trailer_cut_is_detected_although_tarfile_extracts_it(tmp_path, photos):
    archive = pack(tmp_path / "cut.tar.gz", photos)
    archive.write_bytes(archive.read_bytes()[:-8])  # CRC32 + length gone

    # The trap: tarfile alone stops at the tar end blocks and never notices.
    with tarfile.open(archive, "r:gz") as tf:
        tf.extractall(tmp_path / "plain", filter="data")
    assert tree_bytes(tmp_path / "plain" / "photos") == tree_bytes(photos)

    with pytest.raises(PermanentError, match="damaged archive"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode,suffix", [("w:bz2", "tar.bz2"), ("w:xz", "tar.xz")])
def test_other_compressions_checked_to_the_end(tmp_path, photos, mode, suffix):
    good = pack(tmp_path / f"good.{suffix}", photos, mode=mode)
    assert extract_archive(good, tmp_path / "out").files == 6
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(good.read_bytes()[:-4])
    before = tree_bytes(tmp_path / "out")
    with pytest.raises(PermanentError, match="damaged archive"):
        extract_archive(cut, tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == before
    assert not is_extracted(cut, tmp_path / "out")


def test_archive_cut_in_the_middle_leaves_no_tree(tmp_path, photos):
    archive = pack(tmp_path / "half.tar.gz", photos)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    dest = tmp_path / "out"
    staging = staging_path(archive, dest)
    staging.mkdir(parents=True)  # leftovers of an earlier crashed run
    (staging / "junk.jpg").write_bytes(b"partial")

    with pytest.raises(PermanentError, match="damaged archive: truncated"):
        extract_archive(archive, dest)
    assert not dest.exists() and not staging.exists()
    assert not is_extracted(archive, dest)


def test_failure_while_writing_removes_staging(tmp_path):
    # Passes the checks, then cannot be written: "a" is a file, "a/b" needs it to be a folder.
    archive = tmp_path / "clash.tar"
    with tarfile.open(archive, "w") as tf:
        tf.addfile(*file_member("a", b"file"))
        tf.addfile(*file_member("a/b", b"below a file"))
    dest = tmp_path / "out"

    with pytest.raises(PermanentError, match="extraction failed"):
        extract_archive(archive, dest)
    assert list(dest.iterdir()) == [] and not staging_path(archive, dest).exists()
    assert not is_extracted(archive, dest)


def test_rerun_after_crash_while_moving_starts_clean(tmp_path, photos):
    archive = pack(tmp_path / "train.tgz", photos)
    dest = tmp_path / "out"
    extract_archive(archive, dest)
    # As a kill while files moved into place leaves it: some placed, marker "extracting".
    marker = marker_path(archive, dest)
    marker.write_text(marker.read_text().replace('"done"', '"extracting"'))
    placed = sorted((dest / "photos").rglob("*.*"))
    placed[0].unlink()
    placed[1].write_bytes(b"half written")
    (dest / "photos" / "user.txt").write_bytes(b"not from the archive")
    assert not is_extracted(archive, dest)

    got = extract_archive(archive, dest)
    assert not got.skipped and got.placed == 6 and is_extracted(archive, dest)
    user = {"user.txt": b"not from the archive"}  # not the archive's: left alone
    assert tree_bytes(dest / "photos") == {**tree_bytes(photos), **user}


def test_killed_during_extraction_rerun_starts_clean(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"f{i:03d}.bin").write_bytes(os.urandom(4096) * 64)  # quick to gzip
    archive = tmp_path / "big.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tf:
        tf.add(src, arcname="data")
    dest = tmp_path / "out"
    staging = staging_path(archive, dest) / "data"
    code = (
        f"from imgbatch.acquire.extract import extract_archive; extract_archive({str(archive)!r}, "
        f"{str(dest)!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not (staging.is_dir() and any(staging.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "extraction never started"
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not is_extracted(archive, dest)
    assert len(list(staging.iterdir())) < 200  # really stopped half-way
    assert tree_bytes(dest) == {}  # nothing reached DEST

    got = extract_archive(archive, dest)
    assert got.files == 200 and not got.skipped
    assert tree_bytes(dest / "data") == tree_bytes(src) and list(dest.iterdir()) == [dest / "data"]
    assert sorted(p.name for p in bookkeeping_dir(dest).iterdir()) == ["extracted", "lock"]


def test_changed_archive_is_extracted_again(tmp_path, photos):
    archive = pack(tmp_path / "set.tar.gz", photos)
    dest = tmp_path / "out"
    extract_archive(archive, dest)
    other = tmp_path / "other"
    write_tree(other, 2, seed=9, subdirs=1)
    pack(archive, other)
    os.utime(archive, ns=(time.time_ns(), time.time_ns() + 10**9))

    got = extract_archive(archive, dest)
    assert not got.skipped and got.files == 2
    assert tree_bytes(dest / "photos") == tree_bytes(other)  # the old version's files are gone


def test_file_not_placed_by_an_archive_is_never_replaced(tmp_path, photos):
    archive = pack(tmp_path / "set.tar.gz", photos)
    rel = sorted(tree_bytes(photos))[0]
    mine = tmp_path / "out" / "photos" / rel
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"user data")
    with pytest.raises(PermanentError) as err:
        extract_archive(archive, tmp_path / "out")
    assert f"photos/{rel}: differs" in str(err.value)
    assert "placed by a file not placed by any archive" in str(err.value)
    assert tree_bytes(tmp_path / "out") == {f"photos/{rel}": b"user data"}


def test_per_archive_layout_puts_each_archive_under_its_stem(tmp_path, photos):
    archive = pack(tmp_path / "set.tar.gz", photos)
    got = extract_archive(archive, tmp_path / "out", layout="per-archive")
    assert got.path == str(tmp_path / "out" / "set")
    assert tree_bytes(tmp_path / "out" / "set" / "photos") == tree_bytes(photos)
    assert is_extracted(archive, tmp_path / "out", layout="per-archive")
    assert not is_extracted(archive, tmp_path / "out")  # the tar layout was not extracted
    with pytest.raises(UsageError, match="layout must be one of"):
        extract_archive(archive, tmp_path / "out", layout="flat")


def test_verify_counts_members_and_names(tmp_path, photos):
    archive = pack(tmp_path / "a.tar", photos, mode="w")
    assert verify_archive(archive)[0] == 6
    assert [archive_stem(n) for n in ("a.tar.gz", "b.tgz", "c.tar", "d.TAR.XZ")] == [
        "a",
        "b",
        "c",
        "d",
    ]
    with pytest.raises(UsageError):
        archive_stem("images.zip")
