"""Picture files: every unreadable one refused naming the file before a pixel is decoded or a pipe read;
every valid mode read as ComfyUI's Load Image and Pillow users expect (RGB in 0..1, transparency as alpha,
16-bit scaled, EXIF orientation). Tiny pictures made here with Pillow."""
from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from infinity_core import InfinityError
from infinity_core.picture_file import MAX_PICTURE_PIXELS, open_picture, picture_planes


def _png_bytes(picture: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", **save)
    return buffer.getvalue()


def _ramp(width=8, height=6) -> Image.Image:
    x = np.arange(width * height, dtype=np.uint8).reshape(height, width) * 3
    return Image.fromarray(np.stack([x, 255 - x, x // 2], -1))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR says width x height (with a correct CRC): a decompression bomb's header."""
    data = bytearray(_png_bytes(Image.new("L", (1, 1))))
    ihdr = 8 + 8                                     # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    return bytes(data)


def _text_bomb() -> bytes:
    """A small PNG with a zTXt chunk that inflates past Pillow's limit on text chunks."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "A" * (PngImagePlugin.MAX_TEXT_CHUNK + 1024), zip=True)
    return _png_bytes(Image.new("RGB", (4, 4)), pnginfo=info)


def _write(name: str, data: bytes | None):
    def build(folder: Path) -> Path:
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        return path
    return build


def _fifo(folder: Path) -> Path:
    path = folder / "pipe.png"
    os.mkfifo(path)
    return path


def _folder(folder: Path) -> Path:
    (folder / "dir.png").mkdir()
    return folder / "dir.png"


JPEG = io.BytesIO()
_ramp(64, 64).save(JPEG, format="JPEG")
UNREADABLE = [
    ("missing file", _write("missing.png", None), "does not exist"),
    ("a folder", _folder, "is a folder, not a picture file"),
    ("a named pipe", _fifo, "is not a regular file"),
    ("empty file", _write("empty.png", b""), r"is empty \(0 bytes\)"),
    ("random bytes", _write("noise.png", bytes(range(256)) * 8), "is not a picture Pillow can read"),
    ("text named .png", _write("note.png", b"not a picture\n"), "is not a picture Pillow can read"),
    ("PNG cut in half", _write("cut.png", _png_bytes(_ramp())[:60]), "may be truncated or corrupt"),
    ("JPEG cut in half", _write("cut.jpg", JPEG.getvalue()[:len(JPEG.getvalue()) // 2]), "may be truncated"),
    ("PNG header claiming 100000 x 100000", _write("bomb.png", _png_claiming(100_000, 100_000)),
     "decompression bomb"),
    ("PNG header claiming 9000 x 9000", _write("big.png", _png_claiming(9000, 9000)),
     r"is 9000x9000 = 81000000 pixels; at most 67108864"),
    ("zTXt chunk inflating past the limit", _write("text_bomb.png", _text_bomb()), "Pillow can read"),
]


@pytest.mark.parametrize("case, build, reason", UNREADABLE, ids=[case for case, _, _ in UNREADABLE])
def test_unreadable_pictures_are_refused_naming_the_file(tmp_path, case, build, reason):
    path = build(tmp_path)
    with pytest.raises(InfinityError, match=reason) as refusal:
        open_picture(path, "--image")
    assert str(refusal.value).startswith(f"--image '{path}'")


def test_a_device_is_refused_without_reading_it():
    with pytest.raises(InfinityError, match="'/dev/zero' is not a regular file"):
        open_picture("/dev/zero", "--mask")


def test_the_bound_is_below_pillows_own_refusal():
    assert MAX_PICTURE_PIXELS <= Image.MAX_IMAGE_PIXELS


# --- valid pictures in every mode ---------------------------------------------------------------------------

def _read(tmp_path: Path, picture: Image.Image, **save) -> tuple[torch.Tensor, torch.Tensor | None]:
    path = tmp_path / "p.png"
    path.write_bytes(_png_bytes(picture, **save))
    return picture_planes(open_picture(path, "--image"))


def test_16_bit_greyscale_is_scaled_from_65535(tmp_path):
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    rgb, alpha = _read(tmp_path, Image.fromarray(values))
    expected = torch.from_numpy(values.astype(np.float32) / 65535)
    assert alpha is None and rgb.shape == (1, 3, 1, 4)
    torch.testing.assert_close(rgb[0], expected.expand(3, 1, 4), atol=1e-6, rtol=0)


def test_greyscale_with_alpha_gives_grey_rgb_and_the_alpha(tmp_path):
    la = Image.fromarray(np.array([[[10, 255], [200, 0]]], dtype=np.uint8), mode="LA")
    rgb, alpha = _read(tmp_path, la)
    assert torch.equal(rgb[0, :, 0], torch.tensor([[10, 200]] * 3) / 255)
    assert torch.equal(alpha, torch.tensor([[[1.0, 0.0]]]))


def test_indexed_png_with_a_transparent_entry_gives_it_as_alpha(tmp_path):
    indexed = Image.fromarray(np.array([[0, 1, 1, 0]], dtype=np.uint8), mode="P")
    indexed.putpalette([0, 0, 0, 255, 255, 255])
    rgb, alpha = _read(tmp_path, indexed, transparency=0)              # entry 0 is transparent
    assert torch.equal(alpha, torch.tensor([[[0.0, 1.0, 1.0, 0.0]]]))
    assert torch.equal(rgb[0, 0, 0], torch.tensor([0.0, 1.0, 1.0, 0.0]))


def test_greyscale_with_a_transparent_value_gives_alpha(tmp_path):
    grey = Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8))
    _, alpha = _read(tmp_path, grey, transparency=128)
    assert torch.equal(alpha, torch.tensor([[[1.0, 0.0, 1.0]]]))


def test_exif_orientation_turns_the_picture(tmp_path):
    picture = _ramp(8, 6)
    exif = Image.Exif()
    exif[0x0112] = 6                                                     # rotate 90 degrees clockwise to view
    rgb, _ = _read(tmp_path, picture, exif=exif)
    upright, _ = picture_planes(picture.transpose(Image.Transpose.ROTATE_270))
    assert rgb.shape == (1, 3, 8, 6) and torch.equal(rgb, upright)


MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "LA", "PA", "La", "RGBa", "RGBX",
         "I;16", "I;16B"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_rgb_in_0_1_and_alpha_where_it_has_one(mode):
    picture = Image.new(mode, (5, 3))
    rgb, alpha = picture_planes(picture)
    assert rgb.shape == (1, 3, 3, 5) and rgb.dtype == torch.float32 and 0 <= rgb.min() <= rgb.max() <= 1
    assert (alpha is not None) == (mode in ("LA", "PA", "La", "RGBA", "RGBa"))


def test_float_greyscale_is_clipped_to_0_1():
    rgb, _ = picture_planes(Image.fromarray(np.array([[-0.5, 0.25, 3.0]], dtype=np.float32), mode="F"))
    assert torch.equal(rgb[0, 0, 0], torch.tensor([0.0, 0.25, 1.0]))


def test_an_8_bit_rgb_picture_reads_as_before(tmp_path):
    """The plain case keeps its values: bytes / 255."""
    picture = _ramp()
    rgb, alpha = _read(tmp_path, picture)
    assert alpha is None
    assert torch.equal(rgb, torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float() / 255)
