"""Where the CLI writes its images: planned and checked before any model is read, written atomically.

An existing file is never replaced unless asked (`overwrite`), an input picture never, and each image
goes to a temporary file in the same folder first (flushed to disk), then takes its name in one rename,
so an interrupted or failed run, or a power cut, leaves either the old file or the new one, never half of
one. A PNG can carry text chunks (`encode_image(..., text=...)`): the batch command writes the prompt and
settings there, so an image can be traced and drawn again.
"""
from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .errors import InfinityError

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
TEMPORARY_SUFFIX = ".part"      # a file being written: ".{name}.{random}.part" next to its target


def encode_image(image: Image.Image, suffix: str, text: dict[str, str] | None = None) -> bytes:
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


def write_atomically(path: Path, data: bytes) -> None:
    """`data` into `path` through a temporary file in the same folder, flushed to disk, then renamed into
    place (and the folder flushed, where the system allows), so `path` is the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            os.chmod(temporary, 0o666 & ~_umask())     # a new file's usual mode, not mkstemp's private 0600
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def _umask() -> int:
    mask = os.umask(0o022)      # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


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
        one cannot be written: unknown suffix, a folder, a missing or read-only parent, an input picture,
        or an existing file without `overwrite`."""
        output = Path(output)
        if output.suffix.lower() not in IMAGE_FORMATS:
            raise InfinityError(f"--output '{output}' must end in one of {sorted(IMAGE_FORMATS)}")
        paths = ((output,) if count == 1 else
                 tuple(output.with_name(f"{output.stem}_{i + 1}{output.suffix}") for i in range(count)))
        parent = output.parent if str(output.parent) else Path(".")
        if parent.exists() and not parent.is_dir():
            raise InfinityError(f"--output '{output}': '{parent}' is not a folder")
        existing = parent
        while not existing.exists():
            existing = existing.parent
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InfinityError(f"--output '{output}': cannot write in '{existing}'")
        protected = {Path(p).resolve() for p in inputs}
        for path in paths:
            if path.is_dir():
                raise InfinityError(f"--output '{path}' is a folder; give a file name such as '{path / 'image.png'}'")
            if path.resolve() in protected:
                raise InfinityError(f"--output '{path}' is an input picture; choose another name")
            if path.exists() and not overwrite:
                raise InfinityError(f"--output '{path}' already exists; choose another name or pass --overwrite")
        return cls(paths)

    def write(self, path: Path, image: Image.Image) -> None:
        """Save through a temporary file in the same folder, then rename it into place."""
        write_atomically(path, encode_image(image, path.suffix))
