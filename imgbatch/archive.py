"""Safe, restartable extraction of tar archives (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz).

Three traps this avoids:
- `tarfile` stops at the tar end-of-archive blocks and never reads the gzip trailer, so a
  .tar.gz missing its last bytes extracts "fine". The whole compressed stream is read first,
  which makes gzip/bz2/xz check their own CRC and length.
- A member may point outside the tree (`..`, absolute path, symlink, hardlink) or be a
  device or FIFO. Every member is checked against an allow-list (regular files and folders)
  before anything is written, and extraction also runs with tarfile's "data" filter.
- A crash mid-extraction must not leave a half tree that later stages take for complete.
  Files land in a staging folder that is renamed into place; a marker beside the tree says
  "extracting" before work starts and "done" after the rename. Later stages and reruns
  trust a tree only when its marker says done for this very archive (size and mtime).
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from imgbatch.errors import PermanentError, UsageError

CHUNK = 1 << 20
SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")
_DAMAGE = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


@dataclass(frozen=True)
class Extracted:
    archive: str
    path: str  # the extracted tree
    files: int
    bytes: int
    skipped: bool = False  # the marker said this archive was already extracted


def archive_stem(archive: str | os.PathLike) -> str:
    """Folder name for an archive: `train.tar.gz` -> `train`."""
    name = Path(archive).name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    raise UsageError(f"not a tar archive name (expected one of {', '.join(SUFFIXES)}): {name}")


def marker_path(tree: str | os.PathLike) -> Path:
    """Where the done-marker of an extracted tree lives (beside it, not inside it)."""
    tree = Path(tree)
    return tree.parent / f".{tree.name}.extracted.json"


def _open_stream(path: Path) -> IO[bytes]:
    """The decompressed byte stream, chosen by magic number rather than by file name."""
    with path.open("rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    return path.open("rb")


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why a member is refused, or None. Only regular files and folders inside the tree pass."""
    if member.issym():
        return f"symlink (-> {member.linkname}) not allowed"
    if member.islnk():
        return f"hardlink (-> {member.linkname}) not allowed"
    if member.ischr() or member.isblk():
        return "device file not allowed"
    if member.isfifo():
        return "FIFO not allowed"
    if not (member.isreg() or member.isdir()):
        return f"member type {member.type!r} not allowed"
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path not allowed"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "path with '..' leaves the tree"
    return None


def _refuse(archive: Path, member: tarfile.TarInfo, reason: str) -> PermanentError:
    return PermanentError(f"{archive}: member {member.name!r} refused: {reason}")


def verify_archive(archive: str | os.PathLike) -> tuple[int, int]:
    """Read the whole archive once, writing nothing; return (files, bytes) or raise.

    PermanentError names the refused member, or says the archive is damaged (cut, bad CRC).
    """
    archive = Path(archive)
    if not archive.is_file():
        raise PermanentError(f"{archive}: no such archive")
    files = nbytes = 0
    try:
        with _open_stream(archive) as raw, tarfile.open(fileobj=raw, mode="r|") as tf:
            for member in tf:
                if reason := member_problem(member):
                    raise _refuse(archive, member, reason)
                if member.isreg():
                    got = _drain(tf.extractfile(member))
                    if got != member.size:
                        raise PermanentError(
                            f"{archive}: damaged archive: member {member.name!r} has {got} of "
                            f"{member.size} bytes"
                        )
                    files, nbytes = files + 1, nbytes + got
            # Past the tar end: read on so the compressor checks its trailer (CRC, length).
            _drain(raw)
    except PermanentError:
        raise
    except _DAMAGE as exc:
        raise PermanentError(f"{archive}: damaged archive: {exc}") from exc
    return files, nbytes


def _drain(f: IO[bytes] | None) -> int:
    n = 0
    while f is not None and (block := f.read(CHUNK)):
        n += len(block)
    return n


def _identity(archive: Path) -> dict:
    st = archive.stat()
    return {"archive": str(archive.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_marker(marker: Path) -> dict | None:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def _write_marker(marker: Path, record: dict) -> None:
    tmp = marker.with_name(marker.name + ".tmp")
    with tmp.open("w") as f:
        json.dump(record, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)


def is_extracted(tree: str | os.PathLike) -> bool:
    """True when `tree` is complete: its marker says done. For stages that read the tree."""
    record = _read_marker(marker_path(tree))
    return Path(tree).is_dir() and record is not None and record.get("state") == "done"


def extract_archive(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Extracted:
    """Extract `archive` to dest_dir/<archive stem>, checked first, all or nothing.

    A rerun skips an archive whose marker says done for the same file; anything else left
    by an earlier run (staging folder, tree with an "extracting" marker) is removed first.
    A folder already at the target that this function did not make is never deleted.
    """
    archive = Path(archive)
    dest = Path(dest_dir)
    target = dest / archive_stem(archive)
    staging = dest / f".{target.name}.staging"
    marker = marker_path(target)
    if not archive.is_file():
        raise PermanentError(f"{archive}: no such archive")
    identity = _identity(archive)
    record = _read_marker(marker)
    if (
        record
        and record.get("state") == "done"
        and target.is_dir()
        and all(record.get(k) == v for k, v in identity.items())
    ):
        return Extracted(str(archive), str(target), record["files"], record["bytes"], True)
    if record is None and target.exists():
        raise PermanentError(
            f"{target} exists and was not made by extracting an archive: "
            "move it away or choose another destination"
        )

    shutil.rmtree(staging, ignore_errors=True)  # a crashed run's leftovers: start clean
    files, nbytes = verify_archive(archive)  # refuses bad members before anything is written
    dest.mkdir(parents=True, exist_ok=True)
    _write_marker(marker, {**identity, "state": "extracting"})
    try:
        staging.mkdir()
        with _open_stream(archive) as raw, tarfile.open(fileobj=raw, mode="r|") as tf:
            for member in tf:
                if reason := member_problem(member):  # the file may have changed since
                    raise _refuse(archive, member, reason)
                tf.extract(member, staging, filter="data")
        if target.exists():
            shutil.rmtree(target)  # ours: the marker said "extracting" or an older archive
        os.rename(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, _DAMAGE):
            raise PermanentError(f"{archive}: extraction failed: {exc}") from exc
        raise
    _write_marker(marker, {**identity, "state": "done", "files": files, "bytes": nbytes})
    return Extracted(str(archive), str(target), files, nbytes)
