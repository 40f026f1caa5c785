"""Tar archives (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz): what they are, whether they are whole.

Traps this avoids:
- `tarfile` stops at the tar end-of-archive blocks and never reads the gzip trailer, so a
  .tar.gz missing its last bytes extracts "fine". The whole compressed stream is read,
  which makes gzip/bz2/xz check their own CRC and length.
- A member may point outside the tree (`..`, absolute path, symlink, hardlink) or be a
  device or FIFO. Every member is checked against an allow-list (regular files and folders).
- An HTML error page saved as x.tar.gz is not "damaged": `describe_non_archive` says what the
  bytes are instead (HTML, JSON, XML, empty), so the message can say so.

Bookkeeping lives beside a folder, never inside it (users upload the folder):
`<parent>/.<name>.imgbatch/` for `<parent>/<name>/`. Holding:
- `verified/<archive name>.json`: this archive passed `verify_archive` (size, mtime_ns,
  sha256, files, bytes), so extraction need not read a 35 GB file twice.
- `extracted/`, `staging-*/`: see imgbatch/acquire/extract.py.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from imgbatch.atomic_files import read_json, write_json
from imgbatch.errors import PermanentError, UsageError
from imgbatch.upstream import tar_ended_early

READ_BYTES = 1 << 20  # bytes per read while checking an archive
SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")
FORMATS = {".tar.gz": "gzip", ".tgz": "gzip", ".tar.bz2": "bzip2", ".tbz2": "bzip2"}
FORMATS |= {".tar.xz": "xz", ".txz": "xz", ".tar": "tar"}
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
_OPENERS = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}
_DAMAGE = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


class DamagedArchive(PermanentError):
    """The bytes are an archive, but cut short (`truncated`) or corrupt (bad CRC, bad header)."""

    def __init__(self, archive: Path, detail: str, truncated: bool) -> None:
        reason = f"truncated ({detail})" if truncated else detail
        super().__init__(f"{archive}: damaged archive: {reason}")
        self.detail, self.truncated = detail, truncated


def _suffix(name: str) -> str | None:
    lower = name.lower()
    return next((s for s in SUFFIXES if lower.endswith(s) and len(name) > len(s)), None)


def is_archive_name(name: str | os.PathLike) -> bool:
    """True when the file name ends in one of SUFFIXES (the downloads that get checked)."""
    return _suffix(Path(name).name) is not None


def archive_stem(archive: str | os.PathLike) -> str:
    """Folder name for an archive: `train.tar.gz` -> `train`."""
    name = Path(archive).name
    if suffix := _suffix(name):
        return name[: -len(suffix)]
    raise UsageError(f"not a tar archive name (expected one of {', '.join(SUFFIXES)}): {name}")


def expected_format(archive: str | os.PathLike) -> str:
    """The format the name promises: gzip, bzip2, xz or tar."""
    return FORMATS[_suffix(Path(archive).name) or ".tar"]


def content_format(path: Path) -> str | None:
    """The format the bytes are in (gzip, bzip2, xz, tar), by magic number; None if neither."""
    with path.open("rb") as f:
        magic = f.read(6)
    for prefix, kind in _MAGIC:
        if magic.startswith(prefix):
            return kind
    try:
        return "tar" if magic and tarfile.is_tarfile(path) else None
    except OSError:
        return None


def describe_non_archive(path: Path, content_type: str | None = None) -> str | None:
    """What the file is when it is not an archive ("an HTML page"), else None.

    Told by the bytes, not by the server's Content-Type (an error page is often labelled
    with the type the archive would have had); that label is added only when it disagrees
    with the bytes and says something ("an HTML page (labelled application/gzip)").
    """
    if content_format(path) is not None:
        return None
    with path.open("rb") as f:
        head = f.read(512).lstrip().lower()
    if not head:
        return "an empty file"
    if head.startswith(b"<!doctype html") or b"<html" in head:
        what, family = "an HTML page", "html"
    elif head.startswith((b"{", b"[")):
        what, family = "a JSON document", "json"
    elif head.startswith(b"<"):
        what, family = "an XML document", "xml"
    else:
        what, family = f"a file that is no archive (first bytes {head[:16]!r})", None
    label = (content_type or "").strip()
    if label.lower() in _UNINFORMATIVE_TYPES or (family and family in label.lower()):
        return what
    return f"{what} (labelled {label})"


# Content types that say nothing about what a file is.
_UNINFORMATIVE_TYPES = ("", "application/octet-stream", "binary/octet-stream")


def open_stream(path: Path) -> IO[bytes]:
    """The decompressed byte stream, chosen by magic number rather than by file name."""
    opener = _OPENERS.get(content_format(path) or "tar")
    return opener(path, "rb") if opener else path.open("rb")


def bookkeeping_dir(folder: str | os.PathLike) -> Path:
    """`<parent>/.<name>.imgbatch` for `<parent>/<name>`: same filesystem, outside the tree."""
    folder = Path(folder).resolve()
    if folder.parent == folder:
        raise UsageError(f"{folder}: choose a folder below the filesystem root")
    return folder.parent / f".{folder.name}.imgbatch"


def identity(path: Path) -> dict:
    """Size and mtime: enough to tell that a file was not replaced since it was checked."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def verified_path(archive: str | os.PathLike) -> Path:
    archive = Path(archive)
    return bookkeeping_dir(archive.parent) / "verified" / f"{archive.name}.json"


def record_verified(archive: str | os.PathLike, sha256: str, files: int, nbytes: int) -> Path:
    """Note that `archive` passed verify_archive (raises OSError when that cannot be written)."""
    archive, path = Path(archive), verified_path(archive)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**identity(archive), "sha256": sha256, "files": files, "bytes": nbytes}
    write_json(str(path), doc)
    return path


def verified_record(archive: str | os.PathLike) -> dict | None:
    """The record of an earlier full check of this very file (same size and mtime), or None."""
    archive = Path(archive)
    doc = read_json(str(verified_path(archive))) if archive.is_file() else None
    if doc is None or any(doc.get(k) != v for k, v in identity(archive).items()):
        return None
    return doc


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


def refuse(archive: Path, member: tarfile.TarInfo, reason: str) -> PermanentError:
    """The error for a member outside the allow-list."""
    return PermanentError(f"{archive}: member {member.name!r} refused: {reason}")


def verify_archive(archive: str | os.PathLike) -> tuple[int, int]:
    """Read the whole archive once, writing nothing; return (files, bytes) or raise.

    PermanentError names the refused member or says what the file is instead (HTML, ...);
    DamagedArchive (a PermanentError) says the archive is cut short or corrupt.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise PermanentError(f"{archive}: no such archive")
    if what := describe_non_archive(archive):
        raise PermanentError(f"{archive} is {what}, not a {expected_format(archive)} archive")
    files = nbytes = 0
    try:
        with open_stream(archive) as raw, tarfile.open(fileobj=raw, mode="r|") as tf:
            for member in tf:
                if reason := member_problem(member):
                    raise refuse(archive, member, reason)
                if member.isreg():
                    got = drain(tf.extractfile(member))
                    if got != member.size:
                        short = f"member {member.name!r} has {got} of {member.size} bytes"
                        raise DamagedArchive(archive, short, truncated=True)
                    files, nbytes = files + 1, nbytes + got
            # Past the tar end: read on so the compressor checks its trailer (CRC, length).
            drain(raw)
    except PermanentError:
        raise
    except _DAMAGE as exc:
        raise damage(archive, exc) from exc
    return files, nbytes


def damage(archive: Path, exc: BaseException) -> DamagedArchive:
    """The DamagedArchive for an exception met while reading `archive`."""
    text = str(exc) or type(exc).__name__
    return DamagedArchive(archive, text, isinstance(exc, EOFError) or tar_ended_early(exc))


def drain(f: IO[bytes] | None) -> int:
    """Read `f` to its end (so a compressor checks its trailer); return the byte count."""
    n = 0
    while f is not None and (block := f.read(READ_BYTES)):
        n += len(block)
    return n
