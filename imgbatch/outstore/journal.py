"""Publish several files of a folder as one set: a crash leaves the old set or the new one.

Each file is first written in full under a staged name (files.staged_name) and fsynced.
Then a journal, OUT/.publish.json, names every staged -> final rename with the size and
sha256 of each file; it is written atomically and fsynced before the first rename. Then
the renames run (the commit record, run.json, last), the folder is fsynced and the journal
deleted. A journal found later is finished by `recover` (under the output lock): forward
when every file is still there, at its staged name or (same inode: renamed) its final one.
Otherwise something outside imgbatch deleted or cut a staged file: back when no rename
had happened (the old set is whole), else the outputs are removed, since neither set is
whole any more, and the next run rebuilds them from the shards.
Size and inode suffice for that decision because the staged files were fsynced before the
journal existed; verify.verify_output checks the hashes.
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import asdict, dataclass

from imgbatch.atomic_files import (
    STAGED,
    TEMP,
    file_digest,
    fsync_dir,
    fsync_file,
    read_json,
    remove_stale_temps,
    staged_name,
    write_json,
)
from imgbatch.layout import JOURNAL
from imgbatch.outstore.base import Publication

JOURNAL_FORMAT = "imgbatch-publish/1"


@dataclass(frozen=True)
class Staged:
    final: str  # file name inside OUT
    tmp: str  # staged file name inside OUT
    sha256: str
    bytes: int
    inode: int  # kept by the rename: tells the new file at the final name from the old one


class JournalPublication(Publication):
    """Staged files of one publish in a folder; those not published are deleted when the
    block ends (see base.Publication for the use)."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.paths: dict[str, str] = {}
        self.staged: dict[str, Staged] = {}

    def __exit__(self, *exc: object) -> None:
        for path in self.paths.values():
            with suppress(FileNotFoundError):
                os.unlink(path)

    def new(self, final: str) -> str:
        """The staged path to write `final`'s new content to."""
        self.paths[final] = staged_name(os.path.join(self.out, final))
        return self.paths[final]

    def done(self, final: str, sha256: str | None = None) -> Staged:
        """Fsync the staged file and record its size and sha256 (computed unless given)."""
        path = self.paths[final]
        fsync_file(path)
        digest = file_digest(path)[0] if sha256 is None else sha256
        st = os.stat(path)
        self.staged[final] = Staged(final, os.path.basename(path), digest, st.st_size, st.st_ino)
        return self.staged[final]

    def records(self) -> dict[str, dict]:
        """{final name: {"sha256", "bytes"}} of the files staged so far."""
        return {s.final: {"sha256": s.sha256, "bytes": s.bytes} for s in self.staged.values()}

    def commit(self, remove: tuple[str, ...] = ()) -> None:
        """Journal, rename every staged file into place (in staging order), then drop the
        journal; `remove` names files that the new set makes stale (deleted with it)."""
        journal = {
            "format": JOURNAL_FORMAT,
            "files": [asdict(s) for s in self.staged.values()],
            "remove": list(remove),
        }
        write_json(os.path.join(self.out, JOURNAL), journal)
        _roll_forward(self.out, journal)
        self.paths.clear()


def _roll_forward(out: str, journal: dict) -> None:
    for entry in journal["files"]:
        with suppress(FileNotFoundError):  # already renamed by an earlier attempt
            os.replace(os.path.join(out, entry["tmp"]), os.path.join(out, entry["final"]))
    for name in journal["remove"]:
        with suppress(FileNotFoundError):
            os.unlink(os.path.join(out, name))
    fsync_dir(out)
    os.unlink(os.path.join(out, JOURNAL))
    fsync_dir(out)


def _state(out: str, entry: dict) -> str:
    """ "staged" (whole, at its staged name), "renamed" (the new file is at its final name)
    or "lost" (something else removed or cut it)."""
    for name, state in ((entry["tmp"], "staged"), (entry["final"], "renamed")):
        try:
            st = os.stat(os.path.join(out, name))
        except OSError:
            continue
        if st.st_size == entry["bytes"] and (state == "staged" or st.st_ino == entry["inode"]):
            return state
    return "lost"


def recover(out: str) -> str | None:
    """Finish a publish that was interrupted; say what was done (None: nothing to do).

    Call it holding the folder's lock (folder_lock), before anything else reads or writes OUT.
    Also deletes temp and staged files of killed writers (their journal never got written).
    """
    path = os.path.join(out, JOURNAL)
    journal = read_json(path)
    note = None
    if journal is not None and journal.get("format") == JOURNAL_FORMAT:
        states = {_state(out, e) for e in journal["files"]}
        if "lost" not in states:
            _roll_forward(out, journal)
            note = f"{out}: finished an interrupted publish (the new outputs are in place)"
        elif "renamed" not in states:
            _undo(out, journal, finals=False)
            note = f"{out}: undid an interrupted publish that lost a staged file (old outputs kept)"
        else:
            _undo(out, journal, finals=True)
            note = (
                f"{out}: an interrupted publish lost a staged file after it began renaming; "
                "outputs removed, shards kept: rerun to assemble"
            )
    elif os.path.exists(path):
        os.unlink(path)
    for pattern in (TEMP, STAGED):
        remove_stale_temps(out, pattern)
    return note


def _undo(out: str, journal: dict, finals: bool) -> None:
    """Delete the staged files; with `finals` (neither set is whole) the outputs too, the
    commit record first. The journal goes last."""
    names = [e["tmp"] for e in journal["files"]]
    if finals:
        names = [e["final"] for e in reversed(journal["files"])] + names
    for name in names:
        with suppress(FileNotFoundError):
            os.unlink(os.path.join(out, name))
    fsync_dir(out)
    os.unlink(os.path.join(out, JOURNAL))
    fsync_dir(out)
