"""Pictures into the engine: fit an image (and a mask) of any size to a schedule, encode it to the bits
`generate(init_bits=...)` takes, and pad an image for outpainting.

Images are [B, C, H, W] float in [-1, 1] with C = 3 (RGB), 4 (RGBA: the alpha channel is dropped, as
ComfyUI's Load Image does, which hands alpha out as a separate MASK) or 1 (greyscale, copied to R, G, B).
Masks are [H, W] or [B, H, W] float in [0, 1], 1 = redraw (ComfyUI's MASK convention).

Geometry (`fit`), from a picture of (H, W) to the schedule's image size (Hs, Ws):
  * "crop":    scale by max(Hs / H, Ws / W), keeping the aspect, so the picture covers the canvas, then
               cut the centre (Hs, Ws) out. Nothing is invented; the overhang of one axis is lost.
  * "pad":     scale by min(Hs / H, Ws / W) so the whole picture fits, centre it, and fill the rest of
               the canvas by replicating the picture's edge pixels. The filled area is what an inpaint
               mask redraws: `fit_mask` marks it 1 (so `fit_mask(torch.zeros(H, W), schedule, "pad")`
               is the mask of the padding alone). Edge replication rather than mid-grey: the coarse
               scales' bits are averages over the whole canvas, and a grey band would pull them (and any
               kept coarse scale) towards grey and put a hard edge into the latent that the sampler
               then has to undo; the replicated edge continues the picture's own colours.
  * "stretch": resize to exactly (Hs, Ws); the aspect changes when the picture's differs.
Scaled sizes are rounded to whole pixels and the offset of a centred picture is rounded down.
Sizes are bounded before anything is allocated: "crop" scales to at most MAX_CROP_FACTOR canvases (a long
thin strip is refused with the fits that take it), and an outpainting canvas or a mask's image size holds at
most MAX_PICTURE_PIXELS (picture_file.py, the bound on picture files too).

Resampling (`resample`), ComfyUI's upscale-method names:
  "bicubic" / "bilinear": torch.nn.functional.interpolate, antialiased (the filter widens when
  shrinking, so downscaling does not alias); "area": box averaging (exact 2x2 means at half size);
  "nearest" (also spelt "nearest-exact", ComfyUI's name): interpolate's "nearest-exact" mode;
  "lanczos": Pillow's Lanczos filter on each channel of each image in float32.
Results are clamped to [-1, 1] (bicubic and Lanczos overshoot at hard edges).

Masks take the same geometry as their image. A mask whose size differs from the image's is first
stretched to the image's size (as ComfyUI's inpaint nodes resize a mask to their pixels), then placed
like the image. Masks are resized bilinearly (antialiased when shrinking) and kept soft, not
thresholded: a feathered edge survives, and a stroke thinner than the scale factor keeps a value > 0
instead of vanishing; how soft values become redrawn tokens is the sampler's rule.

Encoding happens on the VAE's own grids: the schedule's token grids times PIXELS_PER_TOKEN //
vae.config.downsample (x1 for the f16 VAEs, x2 for the 8B's f8 patchify VAE, whose 2x2 latents make
one token), which is the layout of `vae.encode(...).bits` and of `GenerationResult.bits`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .arrays import as_tensor
from .errors import InfinityError
from .picture_file import MAX_PICTURE_PIXELS
from .schedules import ASPECT_TEMPLATES, PIXELS_PER_TOKEN, Schedule, get_schedule
from .user_text import quoted
from .vae.autoencoder import BitwiseVAE

FIT_MODES = ("crop", "pad", "stretch")
# resample name -> torch.nn.functional.interpolate mode (None: Pillow's Lanczos)
RESAMPLE_MODES: dict[str, str | None] = {
    "bicubic": "bicubic", "bilinear": "bilinear", "area": "area",
    "nearest": "nearest-exact", "nearest-exact": "nearest-exact", "lanczos": None,
}
_ANTIALIASED = ("bilinear", "bicubic")
IMAGE_CHANNELS = {1: "greyscale", 3: "RGB", 4: "RGBA"}
RANGE_SLACK = 1e-3    # values this far outside [-1, 1] (rounding of a conversion) are accepted and clamped
# fit "crop" scales a picture to cover the canvas: a long thin strip would be scaled to many times the canvas
# (a 1 x 5000 px strip to 592 x 2960000 on the 1M 1:3 canvas) only to cut most of it off. At most this many
# canvases' worth of pixels are scaled; a picture beyond it is refused with the fits that take it.
MAX_CROP_FACTOR = 16


@dataclass(frozen=True)
class Placement:
    """Where a picture lands on a canvas: resized to `size`, its top-left corner at (`top`, `left`).

    Negative offsets cut the picture (crop), positive ones leave canvas to fill (pad)."""

    size: tuple[int, int]      # (h, w) of the resized picture
    top: int
    left: int
    canvas: tuple[int, int]    # (h, w) of the result


def placement(height: int, width: int, canvas: tuple[int, int], fit: str) -> Placement:
    """The `fit` geometry of a (height, width) picture on `canvas` (see the module docstring)."""
    _check_choice("fit", fit, FIT_MODES)
    canvas_h, canvas_w = canvas
    if fit == "stretch":
        return Placement((canvas_h, canvas_w), 0, 0, (canvas_h, canvas_w))
    if fit == "crop":
        scale = max(canvas_h / height, canvas_w / width)
        size = (max(canvas_h, round(height * scale)), max(canvas_w, round(width * scale)))
        if size[0] * size[1] > MAX_CROP_FACTOR * canvas_h * canvas_w:
            raise InfinityError(f"fit: a {width}x{height} px picture is too long and thin to crop onto the "
                                f"{canvas_w}x{canvas_h} px canvas (it would be scaled to {size[1]}x{size[0]} px to "
                                f"keep 1/{size[0] * size[1] // (canvas_h * canvas_w)} of it); cut it to an aspect "
                                "nearer the canvas's first, or use fit 'pad' or 'stretch'")
    else:
        scale = min(canvas_h / height, canvas_w / width)
        size = (min(canvas_h, max(1, round(height * scale))), min(canvas_w, max(1, round(width * scale))))
    top = (canvas_h - size[0]) // 2 if size[0] <= canvas_h else -((size[0] - canvas_h) // 2)
    left = (canvas_w - size[1]) // 2 if size[1] <= canvas_w else -((size[1] - canvas_w) // 2)
    return Placement(size, top, left, (canvas_h, canvas_w))


def schedule_for_image(height: int, width: int, pixels: str) -> Schedule:
    """The schedule of budget `pixels` whose aspect template is nearest the picture's own h/w.

    Nearest in log ratio, i.e. the template that a centre crop (or a pad) changes the least area for
    (1 - min(r/k, k/r)); pictures beyond the tallest or widest template get that template."""
    _check_size("height", height)
    _check_size("width", width)
    ratio = height / width
    key = min(ASPECT_TEMPLATES, key=lambda k: abs(math.log(k / ratio)))
    return get_schedule(key, pixels)


def fit_image(image: torch.Tensor, schedule: Schedule, fit: str = "crop", resample: str = "bicubic") -> torch.Tensor:
    """[B, C, H, W] in [-1, 1], C in {1, 3, 4}, any size -> [B, 3, Hs, Ws] float32 at `schedule.image_size`."""
    _check_choice("fit", fit, FIT_MODES)
    _check_choice("resample", resample, RESAMPLE_MODES)
    rgb = _as_rgb(image)                                                     # [B, 3, H, W] float32
    where = placement(*rgb.shape[-2:], schedule.image_size, fit)
    resized = _resize(rgb, where.size, resample).clamp_(-1, 1)               # [B, 3, h, w]
    return _place(resized, where, fill=None)                                 # [B, 3, Hs, Ws]


def fit_mask(mask: torch.Tensor, schedule: Schedule, fit: str = "crop", *, image_size: tuple[int, int] | None = None,
             batch_size: int | None = None) -> torch.Tensor:
    """[H, W] or [B, H, W] in [0, 1] -> [B, Hs, Ws] float32, placed as `fit_image` places its image.

    `image_size` (H, W) of the image the mask belongs to: a mask of another size is stretched to it first.
    `batch_size`: the image's batch; the mask must have 1 (it is repeated) or that many entries.
    With fit="pad" the padded canvas is 1 (redrawn)."""
    _check_choice("fit", fit, FIT_MODES)
    masks = _as_masks(mask, batch_size)                                      # [B, 1, H, W] float32
    if image_size is not None:
        _check_size("image height", image_size[0])
        _check_size("image width", image_size[1])
        _check_pixels("image_size", *image_size)
        masks = _resize(masks, tuple(image_size), "bilinear")
    where = placement(*masks.shape[-2:], schedule.image_size, fit)
    resized = _resize(masks, where.size, "bilinear").clamp_(0, 1)            # [B, 1, h, w]
    return _place(resized, where, fill=1.0).squeeze(1)                       # [B, Hs, Ws]


def vae_grids(vae: BitwiseVAE, schedule: Schedule) -> list[tuple[int, int]]:
    """The schedule's token grids on the VAE's latent grid (x2 for an f8 VAE, whose 2x2 latents make a token)."""
    downsample = vae.config.downsample
    if PIXELS_PER_TOKEN % downsample:
        raise InfinityError(f"vae: a VAE that downsamples x{downsample} does not tile the {PIXELS_PER_TOKEN} px "
                            f"tokens of a schedule; valid VAEs downsample x16 or x8")
    return schedule.latent_grids(PIXELS_PER_TOKEN // downsample)


def encode_image(vae: BitwiseVAE, image: torch.Tensor, schedule: Schedule, fit: str = "crop",
                 resample: str = "bicubic") -> list[torch.Tensor]:
    """Fit `image` to `schedule` and encode it: per scale [B, h, w, d] uint8 bits on the VAE's grids,
    what `generate(init_bits=...)` takes."""
    if vae.encoder is None:
        raise InfinityError("vae: this VAE was loaded without its encoder, so it cannot encode images; "
                            "load it with with_encoder=True")
    grids = vae_grids(vae, schedule)
    fitted = fit_image(image, schedule, fit, resample)                       # [B, 3, Hs, Ws]
    with torch.inference_mode():
        return vae.encode(fitted.to(vae.encoder.conv_in.weight.device), grids).bits


def pad_for_outpaint(image: torch.Tensor, left: int, top: int, right: int, bottom: int, pixels: str,
                     feather: int = 0, resample: str = "bicubic") -> tuple[torch.Tensor, torch.Tensor, Schedule]:
    """Extend `image` by the given margins (pixels of the input) and fit the canvas to a schedule.

    Returns (padded [B, 3, Hs, Ws], mask [B, Hs, Ws], schedule): the schedule of budget `pixels` whose
    aspect is nearest the padded canvas; the new area is filled by edge replication and is 1 in the
    mask. Where the canvas's aspect differs from the template's, the canvas is padded further (fit "pad"),
    and that area is new too. `feather` > 0 ramps the mask into the old image along the padded sides:
    an old pixel d px (d < feather) from a padded side gets ((feather - d) / feather)^2, as ComfyUI's
    Pad Image for Outpainting does."""
    rgb = _as_rgb(image)                                                      # [B, 3, H, W]
    batch, _, height, width = rgb.shape
    outpaint_canvas(height, width, left, top, right, bottom, feather)
    if 2 * feather >= min(height, width):
        raise InfinityError(f"feather: {feather} px is too wide for a {height}x{width} image; "
                            f"valid: 0 .. {(min(height, width) - 1) // 2}")
    canvas = F.pad(rgb, (left, right, top, bottom), mode="replicate")         # [B, 3, H', W']
    mask = F.pad(_feather(height, width, feather, left, top, right, bottom),
                 (left, right, top, bottom), value=1.0)                       # [H', W']
    schedule = schedule_for_image(*canvas.shape[-2:], pixels)
    padded = fit_image(canvas, schedule, "pad", resample)
    return padded, fit_mask(mask, schedule, "pad", batch_size=batch), schedule


def outpaint_canvas(height: int, width: int, left: int, top: int, right: int, bottom: int,
                    feather: int = 0) -> tuple[int, int]:
    """(height, width) of a (height, width) picture grown by the margins, checked before anything is allocated:
    whole numbers >= 0, and a canvas of at most MAX_PICTURE_PIXELS."""
    margins = {"left": left, "top": top, "right": right, "bottom": bottom, "feather": feather}
    for name, value in margins.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InfinityError(f"{name}: padding must be a whole number of pixels >= 0, got {quoted(value)}")
    canvas = (height + top + bottom, width + left + right)
    _check_pixels("outpaint canvas", *canvas)
    return canvas


def paste_outside_mask(decoded: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor,
                       ramp: int = PIXELS_PER_TOKEN) -> torch.Tensor:
    """The last step of inpainting: `reference` where the mask keeps the picture, `decoded` inside it.

    decoded, reference [B, 3, H, W] (the decoded generation; the fitted input or its VAE reconstruction),
    mask [H, W] or [B, H, W] at that size (1 = redraw; a pixel is redrawn from 0.5 up, as the sampler
    reads it). Over the first `ramp` px inside the mask the two are mixed linearly by the (chessboard)
    distance to the nearest kept pixel, so the edge does not show a step. Needed because the VAE decoder
    is not local (GroupNorm statistics span the whole image, and its convolutions reach several tokens):
    kept codes alone do not give kept pixels."""
    if decoded.shape != reference.shape or decoded.dim() != 4:
        raise InfinityError(f"reference: must have the decoded image's shape {tuple(decoded.shape)}, "
                            f"got {tuple(reference.shape)}")
    if isinstance(ramp, bool) or not isinstance(ramp, int) or ramp < 0:
        raise InfinityError(f"ramp: must be a whole number of pixels >= 0, got {quoted(ramp)}")
    masks = _as_masks(mask, decoded.shape[0])                                # [B, 1, H, W]
    if tuple(masks.shape[-2:]) != tuple(decoded.shape[-2:]):
        raise InfinityError(f"mask: is {tuple(masks.shape[-2:])} but the image is {tuple(decoded.shape[-2:])}; "
                            "fit it with fit_mask first")
    kept = (masks < 0.5).to(decoded.device, torch.float32)                   # [B, 1, H, W]
    inside = 1 - kept
    if ramp:                         # 1 - kept grown by r, summed over r < ramp: min(distance, ramp) / ramp
        covered, weight = kept, torch.zeros_like(kept)
        for _ in range(ramp):
            weight += 1 - covered
            covered = F.max_pool2d(covered, 3, stride=1, padding=1)
        inside = weight / ramp
    return torch.lerp(reference.float(), decoded.float(), inside)


def match_kept_colour(decoded: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`decoded` shifted per image and channel by the mean of (reference - decoded) over the pixels the mask
    keeps (mask < 0.5), clamped to [-1, 1]; unchanged where the mask keeps nothing.

    decoded, reference [B, 3, H, W] in [-1, 1]; mask [H, W] or [B, H, W] at that size. Run before
    `paste_outside_mask`: the decoder's GroupNorm statistics span the whole image, so a redrawn area shifts
    the tone of everything it decodes; without the shift the redrawn area shows as a faint box of another
    shade of the background next to the pasted picture."""
    if decoded.shape != reference.shape or decoded.dim() != 4:
        raise InfinityError(f"reference: must have the decoded image's shape {tuple(decoded.shape)}, "
                            f"got {tuple(reference.shape)}")
    kept = (_as_masks(mask, decoded.shape[0]) < 0.5).to(decoded.device, torch.float32)   # [B, 1, H, W]
    if tuple(kept.shape[-2:]) != tuple(decoded.shape[-2:]):
        raise InfinityError(f"mask: is {tuple(kept.shape[-2:])} but the image is {tuple(decoded.shape[-2:])}; "
                            "fit it with fit_mask first")
    count = kept.sum(dim=(2, 3), keepdim=True)                                   # [B, 1, 1, 1]
    difference = ((reference.float() - decoded.float()) * kept).sum(dim=(2, 3), keepdim=True)   # [B, 3, 1, 1]
    shift = torch.where(count > 0, difference / count.clamp(min=1), torch.zeros_like(difference))
    return (decoded.float() + shift).clamp(-1, 1)


def _feather(height: int, width: int, feather: int, left: int, top: int, right: int, bottom: int) -> torch.Tensor:
    """[H, W] mask of the old image: ((feather - d) / feather)^2 within `feather` px of a padded side, else 0."""
    if feather == 0:
        return torch.zeros(height, width)
    far = float(feather)
    rows = torch.arange(height, dtype=torch.float32)
    cols = torch.arange(width, dtype=torch.float32)
    from_top = rows if top else torch.full_like(rows, far)
    from_bottom = height - 1 - rows if bottom else torch.full_like(rows, far)
    from_left = cols if left else torch.full_like(cols, far)
    from_right = width - 1 - cols if right else torch.full_like(cols, far)
    distance = torch.minimum(torch.minimum(from_top, from_bottom)[:, None],
                             torch.minimum(from_left, from_right)[None, :])   # [H, W]
    return ((far - distance).clamp(min=0) / far) ** 2


def _check_choice(name: str, value: str, valid) -> None:
    if not isinstance(value, str) or value not in valid:
        raise InfinityError(f"{name}: {quoted(value)} is not an option; valid: {', '.join(valid)}")


def _check_size(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InfinityError(f"{name}: must be a whole number of pixels >= 1, got {quoted(value)}")


def _check_pixels(name: str, height: int, width: int) -> None:
    if height * width > MAX_PICTURE_PIXELS:
        raise InfinityError(f"{name}: {width}x{height} px is {height * width} pixels; at most {MAX_PICTURE_PIXELS} "
                            "(8192x8192); use smaller margins or a smaller picture")


def _check_values(name: str, values: torch.Tensor, low: float, high: float) -> None:
    if not values.is_floating_point():
        raise InfinityError(f"{name}: expected a float tensor with values in [{low:g}, {high:g}], got {values.dtype}")
    if values.numel() == 0:
        raise InfinityError(f"{name}: is empty (shape {tuple(values.shape)})")
    lowest, highest = float(values.min()), float(values.max())
    if not (math.isfinite(lowest) and math.isfinite(highest)):
        raise InfinityError(f"{name}: holds NaN or infinite values")
    if lowest < low - RANGE_SLACK or highest > high + RANGE_SLACK:
        raise InfinityError(f"{name}: values must lie in [{low:g}, {high:g}], found [{lowest:.4g}, {highest:.4g}]"
                            + (" (an image in [0, 1], like ComfyUI's IMAGE, maps to [-1, 1] as 2 * x - 1)"
                               if name == "image" else ""))


def _as_rgb(image: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W], C in {1, 3, 4} -> [B, 3, H, W] float32 (alpha dropped, greyscale copied to R, G, B)."""
    image = as_tensor("image", image, "[B, C, H, W] in [-1, 1]")
    if image.dim() != 4 or image.shape[1] not in IMAGE_CHANNELS:
        shape = tuple(image.shape)
        raise InfinityError(f"image: expected [B, C, H, W] with C in {{1, 3, 4}} "
                            f"({', '.join(IMAGE_CHANNELS.values())}), got {shape}")
    _check_values("image", image, -1.0, 1.0)
    rgb = image[:, :3] if image.shape[1] == 4 else image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
    return rgb.float().clamp(-1, 1).contiguous()


def _as_masks(mask: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    """[H, W] or [B, H, W] -> [B, 1, H, W] float32, repeated to `batch_size` when it has one entry."""
    mask = as_tensor("mask", mask, "[H, W] or [B, H, W] in 0..1")
    if mask.dim() not in (2, 3):
        raise InfinityError(f"mask: expected [H, W] or [B, H, W], got {tuple(mask.shape)}")
    if mask.dtype == torch.bool:                       # True = redraw
        mask = mask.float()
    _check_values("mask", mask, 0.0, 1.0)
    masks = (mask if mask.dim() == 3 else mask[None]).float().clamp(0, 1)[:, None]   # [B, 1, H, W]
    if batch_size is not None and masks.shape[0] != batch_size:
        if masks.shape[0] != 1:
            raise InfinityError(f"mask: has {masks.shape[0]} entries but the image batch has {batch_size}; "
                                f"give 1 mask (used for every image) or {batch_size}")
        masks = masks.expand(batch_size, -1, -1, -1)
    return masks.contiguous()


def _resize(images: torch.Tensor, size: tuple[int, int], resample: str) -> torch.Tensor:
    """[B, C, H, W] float32 -> [B, C, *size] with `resample` (returned as is when already at size)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    mode = RESAMPLE_MODES[resample]
    if mode is None:
        return _resize_lanczos(images, size)
    if mode in _ANTIALIASED:
        return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=True)
    return F.interpolate(images, size=size, mode=mode)


def _resize_lanczos(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pillow's Lanczos resampling of every channel as a float32 ("F" mode) image."""
    height, width = size
    planes = images.detach().cpu().numpy()                                   # [B, C, H, W]
    out = np.empty(planes.shape[:2] + (height, width), dtype=np.float32)
    for b, c in np.ndindex(*planes.shape[:2]):
        plane = Image.fromarray(np.ascontiguousarray(planes[b, c], dtype=np.float32))
        out[b, c] = np.asarray(plane.resize((width, height), Image.Resampling.LANCZOS))
    return torch.from_numpy(out).to(images.device)


def _place(resized: torch.Tensor, where: Placement, fill: float | None) -> torch.Tensor:
    """Cut or pad [B, C, h, w] onto the canvas: padding replicates the edges (fill None) or is `fill`."""
    canvas_h, canvas_w = where.canvas
    cut_top, cut_left = max(0, -where.top), max(0, -where.left)
    visible = resized[..., cut_top:cut_top + canvas_h, cut_left:cut_left + canvas_w]
    pad_top, pad_left = max(0, where.top), max(0, where.left)
    pads = (pad_left, canvas_w - pad_left - visible.shape[-1], pad_top, canvas_h - pad_top - visible.shape[-2])
    if any(pads):
        visible = (F.pad(visible, pads, mode="replicate") if fill is None
                   else F.pad(visible, pads, mode="constant", value=fill))
    return visible.contiguous()
