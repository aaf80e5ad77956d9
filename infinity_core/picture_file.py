"""Picture files read safely and the way ComfyUI's Load Image and Pillow users expect.

`open_picture` refuses, naming the file, before any pixel is decoded: a path that is missing, a folder, not a
regular file (a named pipe or device would block or never end: the file is opened non-blocking and checked
with fstat before a byte is read), or empty; a picture whose header claims more than `MAX_PICTURE_PIXELS`
(a decompression bomb); and anything Pillow cannot decode to the end (truncated data, a compressed text chunk
past Pillow's limits, a broken chunk). The picture is decoded whole and turned by its EXIF orientation.

`picture_planes` gives every Pillow mode as RGB in 0..1 and its transparency as a separate alpha plane:
16-bit and 32-bit integer greyscale ("I;16", "I") scaled from 0..65535, float greyscale ("F") clipped to 0..1,
greyscale copied to R, G and B, alpha from an alpha channel, a premultiplied one ("La", "RGBa"), or the
transparency entry of an indexed, greyscale or RGB picture (PNG tRNS), and every other mode (CMYK, YCbCr,
LAB, HSV, 1-bit) converted to RGB by Pillow.
"""
from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import InfinityError

MAX_PICTURE_PIXELS = 8192 * 8192   # 67 Mpx: a picture this size is ~0.8 GB as float RGB; Pillow warns at 89 Mpx
_WIDE_GREY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")   # integer greyscale read as 16-bit (0..65535)
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def open_picture(path: str | os.PathLike, what: str) -> Image.Image:
    """The picture at `path`, decoded and EXIF-oriented; `what` names it in errors (e.g. "--image")."""
    path = Path(path)
    name = f"{what} '{path}'"
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)   # a FIFO opens at once instead of waiting
    except FileNotFoundError:
        raise InfinityError(f"{name} does not exist") from None
    except IsADirectoryError:
        raise InfinityError(f"{name} is a folder, not a picture file") from None
    except OSError as err:
        raise InfinityError(f"{name} cannot be opened ({err.strerror})") from None
    status = os.fstat(descriptor)
    refusal = (f"{name} is a folder, not a picture file" if stat.S_ISDIR(status.st_mode) else
               f"{name} is not a regular file (a pipe, device or socket); give a picture file"
               if not stat.S_ISREG(status.st_mode) else
               f"{name} is empty (0 bytes)" if status.st_size == 0 else None)
    if refusal is not None:
        os.close(descriptor)
        raise InfinityError(refusal)
    with os.fdopen(descriptor, "rb") as handle:
        return _decode(handle, name)


def _decode(handle, name: str) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            picture = Image.open(handle)                     # reads the header only
            width, height = picture.size
            if width * height > MAX_PICTURE_PIXELS:
                raise InfinityError(f"{name} is {width}x{height} = {width * height} pixels; at most "
                                    f"{MAX_PICTURE_PIXELS} (8192x8192) are read (larger claims are how "
                                    "decompression bombs start); scale it down first")
            picture.load()
            return ImageOps.exif_transpose(picture)
        except InfinityError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InfinityError(f"{name} claims more pixels than Pillow reads (a decompression bomb); at most "
                                f"{MAX_PICTURE_PIXELS} (8192x8192) are read") from None
        except Exception as err:   # noqa: BLE001 -- Pillow raises many types on bad bytes; all mean an unreadable file
            detail = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
            raise InfinityError(f"{name} is not a picture Pillow can read to the end: it may be truncated or "
                                f"corrupt ({detail})") from None


def picture_planes(picture: Image.Image) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(RGB [1, 3, H, W] float32 in 0..1, alpha [1, H, W] float32 in 0..1 (1 = opaque) or None)."""
    mode = picture.mode
    transparency = picture.info.get("transparency")
    if mode in _WIDE_GREY_MODES or mode == "F":
        grey = np.asarray(picture, dtype=np.float32)                                # [H, W]
        if mode != "F":
            grey = grey / 65535
        rgb = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)                  # [H, W, 3]
        alpha = None
        if isinstance(transparency, int) and mode != "F":                           # 16-bit tRNS: one grey value
            alpha = (np.asarray(picture) != transparency).astype(np.float32)
    else:
        has_alpha = mode in _ALPHA_MODES or (transparency is not None and mode in ("P", "L", "RGB"))
        if mode == "La":                     # premultiplied greyscale: Pillow converts it to LA only
            picture = picture.convert("LA")
        try:
            converted = picture.convert("RGBA" if has_alpha else "RGB")
        except (ValueError, OSError) as err:
            raise InfinityError(f"picture mode '{mode}' cannot be converted to RGB ({err})") from None
        values = np.asarray(converted, dtype=np.float32) / 255                       # [H, W, 3 or 4]
        rgb, alpha = values[..., :3], values[..., 3] if has_alpha else None
    colour = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0)   # [1, 3, H, W]
    return colour.contiguous(), None if alpha is None else torch.from_numpy(np.ascontiguousarray(alpha))[None]
