"""The output folder's record of a batch job (`infinity-batch.jsonl`), so that a re-run resumes.

One JSON object a line: a header, then for each image a `started` record (appended just before the image
is written) and a `done` record with the file's SHA-256 (appended once the image has its name). Every
append is flushed to disk; a kill can only tear the last line, which the next run leaves out. Opening the
manifest rewrites it compacted (one record per image) through a temporary file and one rename.

What a row's image is, from its record and the folder (`RowState`):
- DONE: `done` with the same settings key, and the file is there with that SHA-256: skipped;
- NEW: no file of that name: drawn;
- REDO: `started` (a run stopped around its write): the file, if any, is ours: drawn again;
- CHANGED: `done` for other settings (the list was edited) and the file is ours: redrawn only when asked;
- FOREIGN: a file this command did not write (no record, or changed since we wrote it): never replaced.

One run at a time holds the folder (an advisory lock where the system has one: not on Windows).
"""
from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InfinityError
from ..output import TEMPORARY_SUFFIX, write_atomically

try:
    import fcntl
except ImportError:          # Windows: no advisory lock
    fcntl = None

log = logging.getLogger(__name__)

MANIFEST_NAME = "infinity-batch.jsonl"
HEADER = {"infinity_batch_manifest": 1}
# what write_atomically leaves behind when killed: ".{name}.{8 random hex digits}.part"
_LEFTOVER = re.compile(r"^\..+\.(png|jsonl)\.[A-Za-z0-9_]{8}" + re.escape(TEMPORARY_SUFFIX) + "$")


class RowState(enum.Enum):
    DONE = "done"
    NEW = "new"
    REDO = "redo"
    CHANGED = "changed"
    FOREIGN = "foreign"


@dataclass(frozen=True)
class Entry:
    name: str
    key: str
    state: str                  # "started" or "done"
    sha256: str | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Manifest:
    """The open manifest of `folder`: read, compacted and locked by `open`, appended to as images land."""

    def __init__(self, folder: Path, entries: dict[str, Entry], lock_handle: int | None):
        self.folder = folder
        self.path = folder / MANIFEST_NAME
        self.entries = entries
        self._lock_handle = lock_handle
        self._log = open(self.path, "a", encoding="utf-8")

    @classmethod
    def open(cls, folder: Path) -> "Manifest":
        """The folder's manifest (a new one in a new or empty folder); refuses a folder another run holds,
        and a file of the manifest's name that is not one."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise InfinityError(f"--output '{folder}' is a file; give a folder for the images")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InfinityError(f"--output '{folder}': cannot create the folder ({err.strerror})") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InfinityError(f"--output '{folder}': cannot write in this folder")
        lock_handle = _lock(folder)
        try:
            entries = _read(folder / MANIFEST_NAME)
            _remove_leftovers(folder)
            write_atomically(folder / MANIFEST_NAME, _serialise(entries.values()), "batch manifest")
        except BaseException:
            _unlock(lock_handle)
            raise
        return cls(folder, entries, lock_handle)

    def state(self, name: str, key: str) -> RowState:
        path = self.folder / name
        entry = self.entries.get(name)
        if not path.exists():
            return RowState.NEW
        if entry is None:
            return RowState.FOREIGN
        if entry.state == "started":
            return RowState.REDO
        if not path.is_file() or file_sha256(path) != entry.sha256:
            return RowState.FOREIGN
        return RowState.DONE if entry.key == key else RowState.CHANGED

    def start(self, name: str, key: str) -> None:
        """Claim `name` for an image about to be written (a kill after this leaves a REDO, not a FOREIGN)."""
        self._append(Entry(name, key, "started"))

    def finish(self, name: str, key: str, data: bytes) -> None:
        self._append(Entry(name, key, "done", hashlib.sha256(data).hexdigest()))

    def _append(self, entry: Entry) -> None:
        self._log.write(_line(entry))
        self._log.flush()
        os.fsync(self._log.fileno())
        self.entries[entry.name] = entry

    def close(self) -> None:
        self._log.close()
        _unlock(self._lock_handle)
        self._lock_handle = None

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _line(entry: Entry) -> str:
    record = {"name": entry.name, "key": entry.key, "state": entry.state}
    if entry.sha256 is not None:
        record["sha256"] = entry.sha256
    return json.dumps(record, sort_keys=True) + "\n"


def _serialise(entries) -> bytes:
    return (json.dumps(HEADER) + "\n" + "".join(_line(entry) for entry in entries)).encode()


def _read(path: Path) -> dict[str, Entry]:
    """The latest entry of each image; a torn last line (a kill during an append) is left out."""
    if not path.exists():
        return {}
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise InfinityError(f"'{path}' cannot be read as a batch manifest ({err}); move it away") from None
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        header = None
    if header != HEADER:
        raise InfinityError(f"'{path}' is not a manifest of this command (or of another version of it); "
                            "write the batch into another folder, or move that file away")
    entries: dict[str, Entry] = {}
    body = lines[1:]
    for position, text in enumerate(body):
        if not text:
            continue
        try:
            record = json.loads(text)
            entry = Entry(record["name"], record["key"], record["state"], record.get("sha256"))
        except (json.JSONDecodeError, KeyError, TypeError):
            if position == len(body) - 1:       # the torn last append
                log.info("manifest: the last line was cut off by a stop; that image is drawn again")
                continue
            raise InfinityError(f"'{path}' line {position + 2} is damaged; move the manifest away to start over "
                                "(the images already there will then be left alone as foreign files)") from None
        entries[entry.name] = entry
    return entries


def _remove_leftovers(folder: Path) -> None:
    """Delete the temporary files of writes a kill interrupted (only names of our own pattern)."""
    for path in folder.iterdir():
        if _LEFTOVER.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted write", path.name)


def _lock(folder: Path) -> int | None:
    if fcntl is None:
        return None
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        raise InfinityError(f"--output '{folder}' is in use by another batch run; wait for it or choose "
                            "another folder") from None
    return handle


def _unlock(handle: int | None) -> None:
    if handle is not None:
        os.close(handle)
