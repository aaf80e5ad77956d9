"""Where the CLI writes its images: planned and checked before any model is read, written atomically.

An existing file is never replaced unless asked (`overwrite`), an input picture never, and each image
goes to a temporary file in the same folder first (flushed to disk), then takes its name in one rename,
so an interrupted or failed run (a full disk or a power cut included) leaves either the old file or the new
one, never half of one. The plan proves the folder writable by creating (and removing) a file in it, and
any missing folders above it, so a path that cannot be written (read-only, /proc, a file in the way) fails
before the run. Files are created with mode 0666 less the umask, as any file the user writes. A PNG can
carry text chunks (`image_file_bytes(..., text=...)`): the batch command writes the prompt and settings
there, so an image can be traced and drawn again.
"""
from __future__ import annotations

import errno
import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .errors import InfinityError

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
FILE_MODE = 0o666        # less the umask, as open() creates files
TEMPORARY_SUFFIX = ".part"      # a file being written: ".{name}.{8 random hex digits}.part" next to its target
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _temporary_file(folder: Path, name: str) -> tuple[int, Path]:
    """A new file `.name.<random>.part` in `folder`, opened for writing (never an existing one)."""
    while True:
        temporary = folder / f".{name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), temporary
        except FileExistsError:
            continue


def _probe_folder(output: Path, folder: Path) -> None:
    """Create the missing folders up to `folder` and a file in it, then remove what was created."""
    created, current = [], folder
    try:
        for current in reversed([folder, *folder.parents]):
            if not current.exists():
                current.mkdir()
                created.append(current)
        handle, temporary = _temporary_file(folder, "probe")
        os.close(handle)
        temporary.unlink()
    except OSError as err:
        raise InfinityError(f"--output '{output}': cannot write in '{current}' ({err.strerror or err})") from None
    finally:
        for level in reversed(created):
            try:
                level.rmdir()
            except OSError:
                pass


def image_file_bytes(image: Image.Image, suffix: str, text: dict[str, str] | None = None) -> bytes:
    """The file's bytes for `suffix` (a key of IMAGE_FORMATS); `text` becomes PNG text chunks (PNG only).
    The same image and text give the same bytes (no time stamps)."""
    file_format = IMAGE_FORMATS[suffix.lower()]
    options = {}
    if text:
        if file_format != "PNG":
            raise InfinityError(f"text metadata is written into PNG files only, not '{suffix}'")
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes, label: str) -> None:
    """`data` into `path` through a temporary file in the same folder, flushed to disk, then renamed into
    place (and the folder flushed, where the system allows), so `path` is the old file or the new one. A
    failed write (a full disk) removes the temporary file and says so, naming the file as `label` (the
    argument or role it came from)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = _temporary_file(path.parent, path.name)
    except OSError as err:
        raise InfinityError(f"{label} '{path}': cannot write in '{path.parent}' ({err.strerror or err})") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        temporary.unlink(missing_ok=True)
        if isinstance(err, OSError):
            reason = "the disk is full" if err.errno in _FULL else (err.strerror or str(err))
            raise InfinityError(f"{label} '{path}' could not be written: {reason}; nothing was written "
                                "there") from None
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


@dataclass(frozen=True)
class OutputPaths:
    paths: tuple[Path, ...]

    @classmethod
    def plan(cls, output: Path, count: int, *, overwrite: bool, inputs: list[Path]) -> "OutputPaths":
        """The files of `count` images (name_1, name_2, ... for more than one), refused with the reason when
        one cannot be written: unknown suffix, a folder, a folder that cannot be created or written in, an
        input picture, or an existing file without `overwrite`."""
        output = Path(output)
        if output.suffix.lower() not in IMAGE_FORMATS:
            raise InfinityError(f"--output '{output}' must end in one of {sorted(IMAGE_FORMATS)}")
        paths = ((output,) if count == 1 else
                 tuple(output.with_name(f"{output.stem}_{i + 1}{output.suffix}") for i in range(count)))
        parent = output.parent if str(output.parent) else Path(".")
        if parent.exists() and not parent.is_dir():
            raise InfinityError(f"--output '{output}': '{parent}' is not a folder")
        protected = {Path(p).resolve() for p in inputs}
        for path in paths:
            if path.is_dir():
                raise InfinityError(f"--output '{path}' is a folder; give a file name such as '{path / 'image.png'}'")
            if path.resolve() in protected:
                raise InfinityError(f"--output '{path}' is an input picture; choose another name")
            if path.exists() and not overwrite:
                raise InfinityError(f"--output '{path}' already exists; choose another name or pass --overwrite")
        _probe_folder(output, parent)
        return cls(paths)

    def write(self, path: Path, image: Image.Image) -> None:
        """Save through a temporary file in the same folder, then rename it into place (`write_atomically`)."""
        write_atomically(path, image_file_bytes(image, path.suffix), "--output")
