"""Extract archives the way `tar -xzf ARCHIVE -C DEST` does, checked, all or nothing, restartable.

Every member lands at its own relative path under DEST: beauty_image.tar.gz holding
beauty_image/x.jpg gives DEST/beauty_image/x.jpg. Several archives may add to one folder.
(`layout="per-archive"` puts each archive under DEST/<archive stem>/ instead.)

Bookkeeping lives outside DEST, so it is never uploaded with the images, in
`<DEST parent>/.<DEST name>.imgbatch/` (same filesystem, so a rename moves files):
- `staging-<archive name>/`: the archive is extracted here first (with tarfile's "data"
  filter, members checked against the allow-list), then its files are renamed into DEST.
- `extracted/<archive name>.json`: the marker. `archive`, `size`, `mtime_ns`, `layout`,
  `state` ("extracting" while files move, "done" after), `files` {relative path: [size,
  tar mtime, placed]} where placed is false for a file that was already there, identical.
- `lock`: one extraction at a time moves files into DEST (staging runs in parallel).

Rules: the whole stream is checked first (skipped when the download already recorded a
full check, see imgbatch/acquire/archive.py); a file already in DEST with different content is
refused before anything moves, naming the archive that placed it; an identical one is left
as it is; a rerun skips an archive whose marker says done for the same file; a half-extracted
archive is redone from clean, removing only files it placed itself.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imgbatch.acquire.archive import (
    archive_stem,
    bookkeeping_dir,
    damage,
    drain,
    identity,
    member_problem,
    open_stream,
    refuse,
    verified_record,
    verify_archive,
)
from imgbatch.atomic_files import exclusive_lock, read_json, write_json
from imgbatch.errors import PermanentError, UsageError

LAYOUTS = ("tar", "per-archive")
_SHOWN_CONFLICTS = 3


@dataclass(frozen=True)
class Extracted:
    archive: str
    path: str  # where the members landed: DEST (tar layout) or DEST/STEM (per-archive)
    files: int
    bytes: int
    placed: int = 0  # files this run moved into place; the others were there already, identical
    skipped: bool = False  # the marker said this archive was already extracted


def marker_path(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    return bookkeeping_dir(dest_dir) / "extracted" / f"{Path(archive).name}.json"


def staging_path(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    return bookkeeping_dir(dest_dir) / f"staging-{Path(archive).name}"


def _wanted(archive: Path, layout: str) -> dict:
    return {"archive": str(archive.resolve()), **identity(archive), "layout": layout}


def _is_done(record: dict | None, wanted: dict, dest: Path) -> bool:
    """Marker done for this very archive, and every file it lists still there (same size)."""
    if not record or record.get("state") != "done":
        return False
    if any(record.get(k) != v for k, v in wanted.items()):
        return False
    files = record.get("files") or {}
    return all(_size(dest / rel) == entry[0] for rel, entry in files.items())


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def is_extracted(
    archive: str | os.PathLike, dest_dir: str | os.PathLike, layout: str = "tar"
) -> bool:
    """True when `archive` is completely extracted into dest_dir. For stages that read DEST."""
    archive, dest = Path(archive), Path(dest_dir)
    if not archive.is_file():
        return False
    return _is_done(read_json(str(marker_path(archive, dest))), _wanted(archive, layout), dest)


def extract_archive(
    archive: str | os.PathLike, dest_dir: str | os.PathLike, *, layout: str = "tar"
) -> Extracted:
    """Extract `archive` into dest_dir as tar would (see the module docstring), all or nothing.

    Raises PermanentError for a damaged archive, a refused member, or a conflict with a file
    already in dest_dir (the message names both archives and the path); UsageError for a bad
    layout. Retrying cannot fix any of these.
    """
    if layout not in LAYOUTS:
        raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    archive, dest = Path(archive), Path(dest_dir)
    if not archive.is_file():
        raise PermanentError(f"{archive}: no such archive")
    prefix = archive_stem(archive) if layout == "per-archive" else ""
    root = dest / prefix if prefix else dest
    marker, wanted = marker_path(archive, dest), _wanted(archive, layout)
    old = read_json(str(marker))
    if _is_done(old, wanted, dest):
        files = old["files"]
        return Extracted(str(archive), str(root), len(files), old["bytes"], skipped=True)
    staging = staging_path(archive, dest)
    shutil.rmtree(staging, ignore_errors=True)  # a crashed run's leftovers
    if verified_record(archive) is None:
        verify_archive(archive)  # refuses bad members before anything is written
    if old and old.get("state") != "done":
        _remove_placed(dest, marker, old)  # a half extraction: start from clean
        old = None
    dest.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True)
    try:
        _same_filesystem(staging, dest)
        members, folders = _extract_to_staging(archive, staging, prefix)
        with exclusive_lock(bookkeeping_dir(dest) / "lock"):
            files = _merge(archive, dest, staging, members, folders, old, wanted)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    placed = sum(1 for entry in files.values() if entry[2])
    return Extracted(str(archive), str(root), len(files), _total(files), placed)


def _same_filesystem(staging: Path, dest: Path) -> None:
    if staging.stat().st_dev != dest.stat().st_dev:
        raise PermanentError(
            f"{dest} is on another filesystem than its parent (a mount point?), so files cannot "
            f"be renamed into it from {staging.parent}: extract into a sub-folder of {dest}"
        )


def _extract_to_staging(
    archive: Path, staging: Path, prefix: str
) -> tuple[dict[str, list], set[str]]:
    """({file: [size, tar mtime]}, folders) of the archive, extracted below `staging`."""
    members: dict[str, list] = {}
    folders: set[str] = set()
    try:
        with open_stream(archive) as raw, tarfile.open(fileobj=raw, mode="r|") as tf:
            for member in tf:
                if reason := member_problem(member):  # the file may have changed since
                    raise refuse(archive, member, reason)
                tf.extract(member, staging / prefix, filter="data")
                rel = PurePosixPath(prefix, member.name.replace("\\", "/")).as_posix()
                if member.isreg():
                    members[rel] = [member.size, int(member.mtime)]
                elif rel != ".":
                    folders.add(rel)
            drain(raw)  # past the tar end: the compressor checks its trailer
    except PermanentError:
        raise
    except (tarfile.TarError, EOFError) as exc:
        raise damage(archive, exc) from exc
    except OSError as exc:
        raise PermanentError(f"{archive}: extraction failed: {exc}") from exc
    return members, folders


def _others(marker: Path) -> tuple[dict[str, str], set[str]]:
    """({file: archive that placed it}, every file listed) from the other archives' markers."""
    placer: dict[str, str] = {}
    listed: set[str] = set()
    for path in sorted(marker.parent.glob("*.json")):
        if path == marker or (doc := read_json(str(path))) is None:
            continue
        name = Path(doc.get("archive", path.stem)).name
        for rel, entry in (doc.get("files") or {}).items():
            listed.add(rel)
            if entry[2]:
                placer[rel] = name
        listed.update(doc.get("leftover") or ())
    return placer, listed


def _ours(record: dict | None) -> set[str]:
    """Files an earlier extraction of this archive placed (and may replace or remove)."""
    if not record:
        return set()
    files = record.get("files") or {}
    return {rel for rel, entry in files.items() if entry[2]} | set(record.get("leftover") or ())


def _remove_placed(dest: Path, marker: Path, record: dict) -> None:
    """Remove the files an unfinished extraction placed, except those others list too."""
    _, listed = _others(marker)
    for rel in sorted(_ours(record) - listed):
        (dest / rel).unlink(missing_ok=True)
    marker.unlink(missing_ok=True)


def _merge(
    archive: Path,
    dest: Path,
    staging: Path,
    members: dict[str, list],
    folders: set[str],
    old: dict | None,
    record: dict,
) -> dict[str, list]:
    """Check every target, then move the staged files into DEST; return the marker's files."""
    marker = marker_path(archive, dest)
    placer, listed = _others(marker)
    ours = _ours(old) - listed
    files, conflicts = _plan(dest, staging, members, folders, ours, placer)
    if conflicts:
        raise _conflict_error(archive, dest, conflicts)
    leftover = sorted(ours - set(files))
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_json(str(marker), {**record, "state": "extracting", "files": files, "leftover": leftover})
    _place(dest, staging, files, folders, leftover)
    write_json(str(marker), {**record, "state": "done", "files": files, "bytes": _total(files)})
    return files


def _total(files: dict[str, list]) -> int:
    return sum(entry[0] for entry in files.values())


def _plan(
    dest: Path,
    staging: Path,
    members: dict[str, list],
    folders: set[str],
    ours: set[str],
    placer: dict[str, str],
) -> tuple[dict[str, list], list[tuple[str, str]]]:
    """({file: [size, mtime, placed]}, [(path, why it conflicts)]) without changing anything."""
    files: dict[str, list] = {}
    conflicts: list[tuple[str, str]] = []
    checked: set[str] = set()
    for rel in sorted(folders):
        if why := _blocked(dest, rel, checked, folder=True):
            conflicts.append((rel, why))
    for rel, (size, mtime) in sorted(members.items()):
        target = dest / rel
        why = _blocked(dest, rel, checked, folder=False)
        if why is None and target.exists() and rel not in ours:
            if filecmp.cmp(staging / rel, target, shallow=False):
                files[rel] = [size, mtime, False]  # identical: left as it is
                continue
            why = "differs from the file already there"
        if why:
            conflicts.append((rel, f"{why}, placed by {_owner(rel, placer)}"))
        else:
            files[rel] = [size, mtime, True]
    return files, conflicts


def _owner(rel: str, placer: dict[str, str]) -> str:
    return f"archive {placer[rel]}" if rel in placer else "a file not placed by any archive"


def _blocked(dest: Path, rel: str, checked: set[str], folder: bool) -> str | None:
    """Why nothing can be put at dest/rel: a symlink or a file where a folder must be."""
    parts = PurePosixPath(rel).parts
    for i in range(1, len(parts) + (1 if folder else 0)):
        sub = "/".join(parts[:i])
        if sub in checked:
            continue
        path = dest / sub
        if path.is_symlink():
            return f"{sub} in the destination is a symlink (it could lead outside it)"
        if path.exists() and not path.is_dir():
            return f"{sub} in the destination is a file, the archive needs a folder there"
        checked.add(sub)
    target = dest / rel
    if not folder and (target.is_symlink() or target.is_dir()):
        return "a folder or symlink is in the way"
    return None


def _conflict_error(archive: Path, dest: Path, conflicts: list[tuple[str, str]]) -> PermanentError:
    shown = "; ".join(f"{rel}: {why}" for rel, why in conflicts[:_SHOWN_CONFLICTS])
    more = len(conflicts) - _SHOWN_CONFLICTS
    return PermanentError(
        f"{archive.name}: refusing to overwrite in {dest}: {shown}"
        + (f" (and {more} more)" if more > 0 else "")
        + f"; nothing of {archive.name} was placed"
    )


def _place(
    dest: Path, staging: Path, files: dict[str, list], folders: set[str], leftover: list[str]
) -> None:
    """Move staged files into DEST; on any failure take back what this call moved."""
    moved: list[Path] = []
    try:
        for rel in leftover:
            (dest / rel).unlink(missing_ok=True)
        for rel in sorted(folders):
            (dest / rel).mkdir(parents=True, exist_ok=True)
        for rel, entry in files.items():
            if entry[2]:
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, target)
                moved.append(target)
    except BaseException:
        for target in moved:
            target.unlink(missing_ok=True)
        raise
