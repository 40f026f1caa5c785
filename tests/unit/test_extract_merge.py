"""Extraction with tar's own layout: archives whose members carry their folder, several
archives adding to one folder, conflicts refused before anything moves, bookkeeping outside."""

from __future__ import annotations

import csv
import hashlib
import io
import random
import tarfile
from pathlib import Path

import pytest

import imgbatch.acquire.extract
from imgbatch.acquire.archive import record_verified, verified_record
from imgbatch.acquire.extract import extract_archive, is_extracted, marker_path
from imgbatch.errors import PermanentError
from imgbatch.sampledata.samples import varied_image, write_csv

CATEGORIES = ("beauty_image", "fashion_image", "mobile_image")


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def seed_photos(n: int, seed: int) -> dict[str, bytes]:
    """n real photos named like the Shopee data: <md5 of the bytes>.jpg/png."""
    rng = random.Random(seed)
    out = {}
    for _ in range(n):
        data, ext = varied_image(rng, 48, 120)
        out[f"{hashlib.md5(data).hexdigest()}.{ext}"] = data
    return out


def tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz whose members carry the given relative paths (folders included)."""
    with tarfile.open(path, "w:gz") as tf:
        for folder in sorted({name.rsplit("/", 1)[0] for name in members if "/" in name}):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> tuple[Path, Path, dict[str, bytes]]:
    """(folder of the three archives, the CSV naming category/file, every member's bytes)."""
    root = tmp_path_factory.mktemp("seed")
    members = {}
    for i, category in enumerate(CATEGORIES):
        mine = {f"{category}/{name}": data for name, data in seed_photos(4, i).items()}
        tar_gz(root / f"{category}.tar.gz", mine)
        members |= mine
    return root, write_csv(root / "train.csv", sorted(members)), members


def csv_paths(path: Path) -> list[str]:
    with path.open() as f:
        return [row["image_path"] for row in csv.DictReader(f)]


def test_seed_archives_extract_where_the_csv_paths_point(tmp_path, seed):
    archives, table, members = seed
    dest = tmp_path / "work" / "images"
    for category in CATEGORIES:
        got = extract_archive(archives / f"{category}.tar.gz", dest)
        assert got.path == str(dest) and got.files == 4 and got.placed == 4
    for rel in csv_paths(table):
        assert (dest / rel).read_bytes() == members[rel]
    # Only images inside DEST: markers and staging live in the hidden sibling.
    assert tree_bytes(dest) == members
    assert sorted(p.name for p in dest.iterdir()) == sorted(CATEGORIES)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [".images.imgbatch", "images"]
    assert all(is_extracted(archives / f"{c}.tar.gz", dest) for c in CATEGORIES)


def test_two_archives_merge_into_one_folder_identical_file_kept(tmp_path):
    photos = seed_photos(5, seed=7)
    names = sorted(photos)
    first = {f"cat/{n}": photos[n] for n in names[:3]}
    second = {f"cat/{n}": photos[n] for n in names[2:]}  # names[2] is in both, identical
    a, b = tar_gz(tmp_path / "a.tar.gz", first), tar_gz(tmp_path / "b.tar.gz", second)
    dest = tmp_path / "images"
    extract_archive(a, dest)
    shared = dest / "cat" / names[2]
    before = (shared.stat().st_ino, shared.stat().st_mtime_ns)

    got = extract_archive(b, dest)

    assert (got.files, got.placed) == (3, 2)
    assert tree_bytes(dest) == {**first, **second}
    assert (shared.stat().st_ino, shared.stat().st_mtime_ns) == before  # not rewritten
    assert is_extracted(a, dest) and is_extracted(b, dest)


def test_conflicting_member_is_refused_and_nothing_of_it_placed(tmp_path):
    photos = seed_photos(4, seed=8)
    names = sorted(photos)
    first = {f"cat/{n}": photos[n] for n in names[:2]}
    second = {f"cat/{names[1]}": photos[names[3]], f"cat/{names[2]}": photos[names[2]]}
    a, b = tar_gz(tmp_path / "a.tar.gz", first), tar_gz(tmp_path / "b.tar.gz", second)
    dest = tmp_path / "images"
    extract_archive(a, dest)

    with pytest.raises(PermanentError) as err:
        extract_archive(b, dest)

    message = str(err.value)
    assert message.startswith("b.tar.gz: refusing to overwrite")
    assert f"cat/{names[1]}: differs" in message and "placed by archive a.tar.gz" in message
    assert "nothing of b.tar.gz was placed" in message and "\n" not in message
    assert tree_bytes(dest) == first  # not even the member without a conflict
    assert not is_extracted(b, dest) and is_extracted(a, dest)


def test_failure_while_moving_leaves_nothing_and_rerun_completes(tmp_path, monkeypatch):
    photos = seed_photos(6, seed=9)
    other = tar_gz(tmp_path / "other.tar.gz", {"cat/keep.jpg": b"from another archive"})
    archive = tar_gz(tmp_path / "cat.tar.gz", {f"cat/{n}": d for n, d in photos.items()})
    dest = tmp_path / "images"
    extract_archive(other, dest)
    real_replace, calls = imgbatch.acquire.extract.os.replace, []

    def replace_then_crash(src, dst):
        calls.append(dst)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(imgbatch.acquire.extract.os, "replace", replace_then_crash)
    with pytest.raises(OSError, match="No space left"):
        extract_archive(archive, dest)
    monkeypatch.setattr(imgbatch.acquire.extract.os, "replace", real_replace)

    assert len(calls) == 4  # three files had been moved when it failed
    assert tree_bytes(dest) == {"cat/keep.jpg": b"from another archive"}
    assert not is_extracted(archive, dest)
    got = extract_archive(archive, dest)
    assert not got.skipped and got.placed == 6
    assert tree_bytes(dest) == {"cat/keep.jpg": b"from another archive"} | {
        f"cat/{n}": d for n, d in photos.items()
    }


def test_symlink_in_destination_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "images"
    dest.mkdir()
    (dest / "cat").symlink_to(outside)
    archive = tar_gz(tmp_path / "a.tar.gz", {"cat/x.jpg": b"photo"})

    with pytest.raises(PermanentError, match="cat in the destination is a symlink"):
        extract_archive(archive, dest)
    assert list(outside.iterdir()) == []


def test_file_where_the_archive_needs_a_folder_is_refused(tmp_path):
    dest = tmp_path / "images"
    dest.mkdir()
    (dest / "cat").write_bytes(b"a user's file")
    archive = tar_gz(tmp_path / "a.tar.gz", {"cat/x.jpg": b"photo"})
    with pytest.raises(PermanentError, match="cat in the destination is a file"):
        extract_archive(archive, dest)
    assert tree_bytes(dest) == {"cat": b"a user's file"}


def test_recorded_full_check_skips_the_second_read(tmp_path, monkeypatch):
    archive = tar_gz(tmp_path / "a.tar.gz", {"cat/x.jpg": b"photo"})
    checks = []
    real_verify = imgbatch.acquire.extract.verify_archive
    monkeypatch.setattr(
        imgbatch.acquire.extract, "verify_archive", lambda a: checks.append(a) or real_verify(a)
    )
    extract_archive(archive, tmp_path / "one")
    assert len(checks) == 1

    record_verified(archive, "0" * 64, 1, 5)
    assert verified_record(archive)["files"] == 1
    extract_archive(archive, tmp_path / "two")
    assert len(checks) == 1 and (tmp_path / "two" / "cat" / "x.jpg").read_bytes() == b"photo"

    tar_gz(archive, {"cat/x.jpg": b"other photo"})  # replaced: the record no longer applies
    assert verified_record(archive) is None


def test_recorded_check_does_not_hide_a_damaged_trailer(tmp_path):
    archive = tar_gz(tmp_path / "a.tar.gz", {"cat/x.jpg": b"photo" * 1000})
    archive.write_bytes(archive.read_bytes()[:-8])  # gzip CRC and length gone
    record_verified(archive, "0" * 64, 1, 5000)  # a wrong record must not make it pass
    with pytest.raises(PermanentError, match="damaged archive"):
        extract_archive(archive, tmp_path / "images")
    assert tree_bytes(tmp_path / "images") == {}


def test_marker_lists_every_placed_file(tmp_path, seed):
    archives, _, members = seed
    archive = archives / "beauty_image.tar.gz"
    dest = tmp_path / "images"
    extract_archive(archive, dest)
    marker = marker_path(archive, dest)
    assert marker.parent == tmp_path / ".images.imgbatch" / "extracted"
    listed = imgbatch.acquire.extract.read_json(str(marker))["files"]
    mine = {k: v for k, v in members.items() if k.startswith("beauty_image/")}
    assert {rel: entry[0] for rel, entry in listed.items()} == {k: len(v) for k, v in mine.items()}


def test_parallel_extractions_into_one_folder_still_see_each_other(tmp_path):
    # Flows extract several archives at once; the conflict check must not race.
    from concurrent.futures import ThreadPoolExecutor

    archives = [
        tar_gz(tmp_path / f"{i}.tar.gz", {"cat/same.jpg": bytes([i]) * 1000, f"cat/{i}.jpg": b"x"})
        for i in range(4)
    ]
    dest = tmp_path / "images"
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(extract_archive, a, dest) for a in archives]
    errors = [f.exception() for f in futures]

    assert sum(e is None for e in errors) == 1  # exactly one archive may place cat/same.jpg
    assert all("cat/same.jpg: differs" in str(e) for e in errors if e is not None)
    winner = errors.index(None)
    assert tree_bytes(dest) == {"cat/same.jpg": bytes([winner]) * 1000, f"cat/{winner}.jpg": b"x"}
