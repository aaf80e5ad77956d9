"""Where the CLI writes its images: planned and checked before any model is read, written atomically.

An existing file is never replaced unless asked (`overwrite`), an input picture never, and each image
goes to a temporary file in the same folder first, then takes its name in one rename, so an interrupted
or failed run leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .errors import InfinityError

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


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
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                image.save(file, format=IMAGE_FORMATS[path.suffix.lower()])
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
