"""Image in, measured on the demo model: inpainting, outpainting and image-to-image (issue 15's tables).

    python tools/measure_inpaint.py --scenes 100 --seed 0 [--grey-pad] [--mask-study 40]

Scenes are held-out single-object scenes of the training data generator (training/shapes.py), scored
by training/detector.py. Sampling uses the core's defaults (SamplingConfig) at 0.06M.
Image i of every table draws from seed + i, so each row compares the same random numbers.

* Inpainting: the mask is the object's box grown by one token (16 px) on every side; the prompt asks for
  another colour (same shape), and separately another shape (same colour). Path: encode_image ->
  generate(init_bits=, mask=) -> decode. Colour, shape and position are read by the detector (the kept
  region is plain background, so the only object it can find is the one drawn in the mask), next to plain
  text-to-image generation of the same prompts. PSNR against the input is taken over the pixels more than
  16 px from the mask (no masked pixel in their 33 x 33 neighbourhood), next to the VAE reconstruction's
  PSNR on the same pixels. Seam: the mean squared RGB gradient (forward differences, 0..1 scale) over the
  band of pixels within 2 px of the mask edge, divided by the same mean over the kept pixels more than
  16 px from the mask; 1 means the edge is as smooth as the rest of the kept background. Rows with
  image_in.paste_outside_mask show the decode-side composite (the VAE reconstruction, or the input, where
  the mask keeps): the decoder's GroupNorm spans the whole image, so kept codes alone do not keep pixels.
  --mask-study N adds other masks (0 / 1 / 2 tokens of margin, edges that cut tokens).
* Outpainting: the scene's left half, padded back to 256 x 256 by pad_for_outpaint (the new right half
  is masked), prompted with the scene's own caption. Continuity: over the new area's pixels outside the
  object's grown box (background in the original scene), the share whose nearest palette colour is the
  scene's background and their mean RGB distance to it (0..255). Seam as above, along the new area's
  edge, both band and reference restricted to pixels outside the object's grown box. --grey-pad adds
  the same run from a mid-grey fill, the alternative to pad_for_outpaint's edge replication.
* Image-to-image: the official fixtures (tests/fixtures/infinity_tiny_img2img) through
  vae.encode(...).bits -> generate(init_bits=, init_scales=K), and on the demo model keep K = 0 .. all
  scales with the colour-edit prompt: how K trades the prompt against the picture.
* Time: per phase (wall and this process's CPU time, which a shared machine disturbs less), and
  generate() alone, plain against inpainting, alternating on one batch.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from infinity_core import generate, get_schedule, load_text_encoder, load_transformer, load_vae  # noqa: E402
from infinity_core.model_files import add_model_arguments  # noqa: E402
from infinity_core.image_in import encode_image, pad_for_outpaint, paste_outside_mask  # noqa: E402
from infinity_core.pipeline import to_uint8  # noqa: E402
from infinity_core.text import TextCondition  # noqa: E402
from training.detector import _nearest_palette_index, score  # noqa: E402
from training.shapes import (COLORS, PALETTE, SHAPES, SQUARE_256, SceneSpec, caption,  # noqa: E402
                             heldout_specs, render)
from training.vae_trainer import images_to_tensor  # noqa: E402

log = logging.getLogger("measure_inpaint")

PIXELS = "0.06M"
CANVAS = SQUARE_256          # the 0.06M 1:1 image
IMAGE_SIZE = CANVAS.height
TOKEN = 16                  # px per token: the mask's margin around the object and the "far" distance
SEAM_BAND = 2               # px either side of the mask edge
BATCH = 20
SWEEP_SCENES = 20           # scenes of the keep-K sweep
FIXTURES = ROOT / "tests" / "fixtures"


# ----------------------------------------------------------------------------------------------- scenes

def object_box(spec: SceneSpec, margin: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) px of the object's square box grown by `margin`, inside the image."""
    size = CANVAS.single_object_size
    half = size // 2 + margin
    cx, cy = (round(c) for c in CANVAS.cell_center(spec.position, size))
    return max(0, cy - half), max(0, cx - half), min(IMAGE_SIZE, cy + half), min(IMAGE_SIZE, cx + half)


def shifted(box: tuple[int, int, int, int], offset: int) -> tuple[int, int, int, int]:
    """The box moved `offset` px right and down, cut at the image's edge."""
    top, left, bottom, right = box
    return top + offset, left + offset, min(IMAGE_SIZE, bottom + offset), min(IMAGE_SIZE, right + offset)


def box_mask(box: tuple[int, int, int, int]) -> torch.Tensor:
    top, left, bottom, right = box
    mask = torch.zeros(IMAGE_SIZE, IMAGE_SIZE)
    mask[top:bottom, left:right] = 1.0
    return mask


def edits(specs: list[SceneSpec], seed: int) -> tuple[list[SceneSpec], list[SceneSpec]]:
    """Per scene a colour edit (another colour, not the background) and a shape edit (another shape)."""
    rng = np.random.default_rng(seed)
    colour, shape = [], []
    for spec in specs:
        colours = [c for c in COLORS if c not in (spec.color, spec.background)]
        shapes = [s for s in SHAPES if s != spec.shape]
        colour.append(SceneSpec(spec.shape, colours[rng.integers(len(colours))], spec.position, spec.background))
        shape.append(SceneSpec(shapes[rng.integers(len(shapes))], spec.color, spec.position, spec.background))
    return colour, shape


# ---------------------------------------------------------------------------------------------- running

@dataclass
class Timer:
    """Wall and CPU (this process) seconds per phase, and images per phase. On a shared machine the CPU
    time is the steadier figure; with 2 threads and no other load, wall ~ CPU / 2."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)

    def add(self, phase: str, wall: float, cpu: float, images: int) -> None:
        self.wall[phase] = self.wall.get(phase, 0.0) + wall
        self.cpu[phase] = self.cpu.get(phase, 0.0) + cpu
        self.images[phase] = self.images.get(phase, 0) + images

    def per_image(self, phase: str, clock: str = "wall") -> float:
        return getattr(self, clock)[phase] / self.images[phase]


@dataclass(frozen=True)
class Models:
    transformer: object
    vae: object
    text_encoder: object


def timed(timer: Timer, phase: str, images: int, work):
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    timer.add(phase, time.perf_counter() - wall, time.process_time() - cpu, images)
    return out


def encode_all(models: Models, images: torch.Tensor, timer: Timer, phase: str) -> list[torch.Tensor]:
    """Per scale [N, h, w, d] bits of `images` [N, 3, 256, 256], encoded in batches."""
    schedule = get_schedule(1.0, PIXELS)
    chunks = [timed(timer, phase, len(images[i:i + BATCH]),
                    lambda i=i: encode_image(models.vae, images[i:i + BATCH], schedule))
              for i in range(0, len(images), BATCH)]
    return [torch.cat(scale) for scale in zip(*chunks)]


def decode(models: Models, codes: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return models.vae.decode(codes)                                     # [n, 3, H, W] in [-1, 1]


def as_uint8(images: torch.Tensor) -> np.ndarray:
    return to_uint8(images).numpy()                                         # [n, H, W, 3]


def reconstruct(models: Models, images: torch.Tensor) -> torch.Tensor:
    """The VAE's own round trip of `images` [n, 3, 256, 256] over every scale, [n, 3, H, W] in [-1, 1]."""
    with torch.inference_mode():
        codes = models.vae.encode(images, list(get_schedule(1.0, PIXELS).grids)).summed_codes
    return decode(models, codes)


def run(models: Models, specs: list[SceneSpec], seed: int, timer: Timer, phase: str, *,
        init_bits: list[torch.Tensor] | None = None, masks: torch.Tensor | None = None,
        init_scales: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Generate one image per spec (its caption as the prompt), batch by batch; image i draws from seed + i.

    Returns the decoded images [N, 3, H, W] in [-1, 1] and the per-scale bits [N, h, w, d]."""
    images, bits = [], []
    for first in range(0, len(specs), BATCH):
        batch = specs[first:first + BATCH]
        cond = models.text_encoder.encode([caption(spec) for spec in batch])
        extra = {}
        if init_bits is not None:
            extra = dict(init_bits=[b[first:first + len(batch)] for b in init_bits], init_scales=init_scales)
        if masks is not None:
            extra["mask"] = masks[first:first + len(batch)]
        result = timed(timer, f"{phase}: generate", len(batch), lambda: generate(
            models.transformer, cond, pixels=PIXELS, seed=seed + first, **extra))
        images.append(timed(timer, f"{phase}: decode", len(batch), lambda: decode(models, result.codes)))
        bits.append(result.bits)
    return torch.cat(images), [torch.cat(scale) for scale in zip(*bits)]


# ---------------------------------------------------------------------------------------------- metrics

def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """[N, H, W] bool grown by `radius` px (a (2r+1)^2 square)."""
    grown = F.max_pool2d(torch.from_numpy(mask).float()[:, None], 2 * radius + 1, stride=1, padding=radius)
    return grown[:, 0].numpy() > 0


def psnr(images: np.ndarray, reference: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Per image PSNR (dB, peak 255) over the pixels `where` [N, H, W]."""
    error = (images.astype(np.float64) - reference.astype(np.float64)) ** 2        # [N, H, W, 3]
    mse = (error.sum(-1) * where).sum((1, 2)) / (3 * where.sum((1, 2)))
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def gradient_energy(images: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, H, W] squared RGB gradient (forward differences, 0..1 scale, 0 at the last row/column)."""
    x = images.astype(np.float64) / 255.0
    energy = np.zeros(x.shape[:3])
    energy[:, :, :-1] += ((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum(-1)
    energy[:, :-1, :] += ((x[:, 1:] - x[:, :-1]) ** 2).sum(-1)
    return energy


def seam(images: np.ndarray, band: np.ndarray, reference: np.ndarray) -> float:
    """Mean gradient energy over `band` / the same over `reference` (pooled over the images); inf where the
    reference pixels are perfectly flat."""
    energy = gradient_energy(images)
    kept = energy[reference].mean()
    return float(energy[band].mean() / kept) if kept > 0 else float("inf")


def edge_energy(images: np.ndarray, band: np.ndarray) -> float:
    return float(gradient_energy(images)[band].mean())


def edge_band(masks: np.ndarray) -> np.ndarray:
    """Pixels within SEAM_BAND px of the boundary between masked and kept pixels."""
    return dilate(masks, SEAM_BAND) & dilate(~masks, SEAM_BAND)


def accuracy(images: np.ndarray, specs: list[SceneSpec]) -> dict[str, float]:
    scores = [score(image, spec) for image, spec in zip(images, specs)]
    return {name: float(np.mean([getattr(s, f"{name}_correct") for s in scores]))
            for name in ("color", "shape", "position", "background")}


def percent(value: float) -> str:
    return f"{100 * value:.1f} %"


# ----------------------------------------------------------------------------------------------- tables

def inpaint_tables(models: Models, specs, scenes: np.ndarray, scenes_tensor: torch.Tensor, recon: torch.Tensor,
                   bits, seed: int, timer: Timer) -> str:
    masks_np = np.stack([box_mask(object_box(spec, TOKEN)).numpy() > 0 for spec in specs])    # [N, H, W]
    masks = torch.from_numpy(masks_np).float()
    far = ~dilate(masks_np, TOKEN)
    band = edge_band(masks_np)
    colour_specs, shape_specs = edits(specs, seed)
    recon_u8 = as_uint8(recon)
    recon_psnr = psnr(recon_u8, scenes, far)
    recon_kept_energy = float(gradient_energy(recon_u8)[far].mean())
    lines = [f"Inpainting, {len(specs)} held-out scenes, mask = object box + {TOKEN} px, cfg 3 tau 0.5 (seed {seed}). "
             f"PSNR over the pixels > {TOKEN} px from the mask: the VAE reconstruction of the input scores "
             f"{recon_psnr.mean():.2f} dB (min {recon_psnr.min():.2f}) there, seam {seam(recon_u8, band, far):.2f}. "
             "Seam A = gradient energy along the mask edge / inside the kept region of the same image; "
             "seam B = the edge's energy / the VAE reconstruction's kept-region energy (one yardstick for all rows).",
             "",
             "| prompt asks for | image | colour | shape | position | background | PSNR > 16 px from mask "
             "(mean / min) | scenes with PSNR >= recon's | seam A | seam B |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, edited in (("another colour", colour_specs), ("another shape", shape_specs)):
        inpainted, _ = run(models, edited, seed, timer, f"inpaint {name}", init_bits=bits, masks=masks)
        plain, _ = run(models, edited, seed, timer, f"plain {name}")
        variants = [("plain text-to-image, same prompts", plain, False),
                    ("inpainted: vae.decode(generate(init_bits=, mask=).codes)", inpainted, True),
                    (f"inpainted, VAE recon pasted outside the mask (paste_outside_mask, {TOKEN} px ramp inside)",
                     paste_outside_mask(inpainted, recon, masks, TOKEN), True),
                    (f"inpainted, input pasted outside the mask ({TOKEN} px ramp inside)",
                     paste_outside_mask(inpainted, scenes_tensor, masks, TOKEN), True),
                    ("inpainted, VAE recon pasted outside the mask, no ramp",
                     paste_outside_mask(inpainted, recon, masks, 0), True)]
        for label, images, masked in variants:
            images = as_uint8(images)
            found = accuracy(images, edited)
            fidelity = "- | - | - | -"
            if masked:
                kept = psnr(images, scenes, far)
                fidelity = (f"{kept.mean():.2f} / {kept.min():.2f} dB | "
                            f"{percent(float(np.mean(kept >= recon_psnr - 1e-9)))} | {seam(images, band, far):.2f} | "
                            f"{edge_energy(images, band) / recon_kept_energy:.2f}")
            lines.append(f"| {name} | {label} | {percent(found['color'])} | {percent(found['shape'])} | "
                         f"{percent(found['position'])} | {percent(found['background'])} | {fidelity} |")
    return "\n".join(lines)


def mask_study_table(models: Models, specs, scenes: np.ndarray, scenes_tensor: torch.Tensor, recon: torch.Tensor,
                     bits, seed: int, timer: Timer) -> str:
    """Colour-edit inpainting with other masks: the object's box grown by 0, 1 or 2 tokens, and grown by one
    token then shifted by half a token (every edge cuts through tokens, which the sampler then redraws)."""
    colour_specs, _ = edits(specs, seed)
    recon_u8 = as_uint8(recon)
    lines = [f"Inpainting mask study, {len(specs)} held-out scenes, prompt asks for another colour; PSNR over the "
             f"pixels > {TOKEN} px from each mask, next to the VAE reconstruction's on the same pixels",
             "", "| mask | colour | shape | position | PSNR, vae.decode(codes) | PSNR, recon pasted outside "
             f"({TOKEN} px ramp) | VAE recon PSNR | seam A, decode | seam A, pasted |", "|---|---|---|---|---|---|---|---|---|"]
    layouts = [("object box (0 tokens margin)", 0, 0), ("box + 1 token", TOKEN, 0), ("box + 2 tokens", 2 * TOKEN, 0),
               ("box + 1 token, shifted 8 px right and down (edges cut tokens)", TOKEN, TOKEN // 2)]
    for label, margin, shift in layouts:
        masks = torch.stack([box_mask(shifted(object_box(spec, margin), shift)) for spec in specs])
        masks_np = masks.numpy() > 0.5
        far, band = ~dilate(masks_np, TOKEN), edge_band(masks_np)
        inpainted, _ = run(models, colour_specs, seed, timer, "mask study", init_bits=bits, masks=masks)
        pasted = as_uint8(paste_outside_mask(inpainted, recon, masks, TOKEN))
        inpainted = as_uint8(inpainted)
        found = accuracy(inpainted, colour_specs)
        lines.append(f"| {label} | {percent(found['color'])} | {percent(found['shape'])} | {percent(found['position'])} | "
                     f"{psnr(inpainted, scenes, far).mean():.2f} dB | {psnr(pasted, scenes, far).mean():.2f} dB | "
                     f"{psnr(recon_u8, scenes, far).mean():.2f} dB | {seam(inpainted, band, far):.2f} | "
                     f"{seam(pasted, band, far):.2f} |")
    return "\n".join(lines)


def outpaint_table(models: Models, specs, scenes_tensor: torch.Tensor, scenes: np.ndarray, recon: torch.Tensor,
                   seed: int, timer: Timer, grey_pad: bool) -> str:
    half = IMAGE_SIZE // 2
    padded, masks, schedule = pad_for_outpaint(scenes_tensor[..., :half], 0, 0, IMAGE_SIZE - half, 0, PIXELS)
    assert schedule.image_size == (IMAGE_SIZE, IMAGE_SIZE)
    new = masks.numpy() > 0.5                                                               # [N, H, W]
    objects = np.stack([box_mask(object_box(spec, TOKEN)).numpy() > 0 for spec in specs])
    background_new = new & ~objects
    background_old = ~dilate(new, TOKEN) & ~objects
    band = edge_band(new) & ~objects
    grey = torch.where(masks[:, None] > 0.5, torch.zeros_like(padded), padded)            # mid-grey fill instead
    rows = [("original scene (reference)", scenes), ("VAE reconstruction of the scene", as_uint8(recon)),
            ("padded input, edge-replicated (no generation)", as_uint8(padded))]
    canvases = [("outpainted from the edge-replicated pad (pad_for_outpaint)", padded)]
    if grey_pad:
        canvases.append(("outpainted from a mid-grey pad (comparison)", grey))
    for label, canvas in canvases:
        bits = encode_all(models, canvas, timer, "outpaint: encode")
        images, _ = run(models, specs, seed, timer, "outpaint", init_bits=bits, masks=masks)
        rows.append((label, as_uint8(images)))
        if canvas is padded:
            rows.append((f"  same, input pasted outside the new area (paste_outside_mask, {TOKEN} px ramp)",
                         as_uint8(paste_outside_mask(images, padded, masks, TOKEN))))
    lines = [f"Outpainting, {len(specs)} held-out scenes: left half kept, right half new (pad_for_outpaint to 1:1), "
             "prompt = the scene's caption",
             "",
             "| image | new-area background pixels of the background colour | mean RGB distance to it (0-255) "
             "| seam (edge / kept gradient energy) | detector: colour / shape / position / background |",
             "|---|---|---|---|---|"]
    for label, images in rows:
        background_rgb = np.array([PALETTE[spec.background] for spec in specs], dtype=np.float64)   # [N, 3]
        nearest = _nearest_palette_index(images.astype(np.float32))                                # [N, H, W]
        target = np.array([COLORS.index(spec.background) for spec in specs])[:, None, None]
        match = float((nearest == target)[background_new].mean())
        distance = np.linalg.norm(images.astype(np.float64) - background_rgb[:, None, None], axis=-1)
        found = accuracy(images, specs)
        lines.append(f"| {label} | {percent(match)} | {distance[background_new].mean():.1f} | "
                     f"{seam(images, band, background_old):.2f} | {percent(found['color'])} / {percent(found['shape'])} / "
                     f"{percent(found['position'])} / {percent(found['background'])} |")
    return "\n".join(lines)


def fixture_parity_table() -> str:
    """The official gt_leak cases on the tiny fixture models: kept scales, per-scale exactness, bits matching."""
    directory = FIXTURES / "infinity_tiny_img2img"
    manifest = json.loads((directory / "manifest.json").read_text())
    transformer = load_transformer(FIXTURES / "infinity_tiny" / "infinity_tiny.safetensors", "cpu", torch.float32)
    vae = load_vae(FIXTURES / "infinity_tiny" / "vae_tiny.safetensors", "cpu", torch.float32)
    text = load_file(str(directory / manifest["text_encoder"]["file"]))
    lines = ["img2img parity with the official autoregressive_infer_cfg(gt_leak=K) (tiny fixture models)", "",
             "| case | keep K | input bits = vae.encode's | scales bit-exact | bits matching |", "|---|---|---|---|---|"]
    for name, case in manifest["cases"].items():
        settings = case["settings"]
        expected = load_file(str(directory / case["file"]))
        key = next(k for k, p in manifest["text_encoder"]["prompts"].items() if p["prompt"] == settings["prompt"])
        schedule = get_schedule(settings["h_div_w_template"], settings["pn"])
        with torch.inference_mode():
            bits = vae.encode(expected["input_image"], list(schedule.grids)).bits
        result = generate(transformer, TextCondition.from_features([text[f"{key}_kv_compact"]]),
                          h_div_w=settings["h_div_w_template"], pixels=settings["pn"], cfg=settings["cfg"],
                          tau=settings["tau"], top_k=settings["top_k"], top_p=settings["top_p"],
                          seed=settings["g_seed"], init_bits=bits, init_scales=settings["keep_scales"])
        inputs_exact = all(torch.equal(b, expected[f"input_bits_s{s}"]) for s, b in enumerate(bits))
        exact = sum(torch.equal(b, expected[f"bits_s{s}"]) for s, b in enumerate(result.bits))
        same = sum(int((b == expected[f"bits_s{s}"]).sum()) for s, b in enumerate(result.bits))
        total = sum(b.numel() for b in result.bits)
        lines.append(f"| {name} | {settings['keep_scales']} | {'yes' if inputs_exact else 'NO'} | "
                     f"{exact} / {schedule.num_scales} | {same} / {total} ({100 * same / total:.2f} %) |")
    return "\n".join(lines)


def keep_sweep_table(models: Models, specs, scenes: np.ndarray, bits, seed: int, timer: Timer) -> str:
    """Image-to-image with the colour-edit prompt for every K: prompt adherence against faithfulness."""
    colour_specs, _ = edits(specs, seed)
    num_scales = get_schedule(1.0, PIXELS).num_scales
    everywhere = np.ones(scenes.shape[:3], dtype=bool)
    lines = [f"Image-to-image on the demo model, {len(specs)} held-out scenes, prompt asks for another colour",
             "", "| keep K (of " f"{num_scales}) | ComfyUI-style denoise ~ 1 - K/{num_scales} | asked colour | "
             "original colour | shape | PSNR vs input | bits equal to the input's (all scales) |",
             "|---|---|---|---|---|---|---|"]
    for keep in range(num_scales + 1):
        images, out_bits = run(models, colour_specs, seed, timer, "img2img sweep", init_bits=bits, init_scales=keep)
        images = as_uint8(images)
        asked, original = accuracy(images, colour_specs), accuracy(images, specs)
        same = sum(int((o == b).sum()) for o, b in zip(out_bits, bits))
        total = sum(b.numel() for b in bits)
        lines.append(f"| {keep} | {1 - keep / num_scales:.2f} | {percent(asked['color'])} | "
                     f"{percent(original['color'])} | {percent(asked['shape'])} | "
                     f"{psnr(images, scenes, everywhere).mean():.2f} dB | {percent(same / total)} |")
    return "\n".join(lines)


def interleaved_timing_table(models: Models, specs, bits, seed: int, repeats: int = 3) -> str:
    """Plain against inpainting generation on one batch, alternating, so machine load hits both alike."""
    batch = specs[:BATCH]
    cond = models.text_encoder.encode([caption(spec) for spec in batch])
    masks = torch.stack([box_mask(object_box(spec, TOKEN)) for spec in batch])
    paths = {"plain": {}, "inpaint (mask = box + 1 token)": dict(init_bits=[b[:len(batch)] for b in bits], mask=masks)}
    samples = {name: [] for name in paths}
    for _ in range(repeats):
        for name, extra in paths.items():
            wall, cpu = time.perf_counter(), time.process_time()
            generate(models.transformer, cond, pixels=PIXELS, seed=seed, **extra)
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    lines = [f"generate() alone, {len(batch)} images per call, {repeats} alternating calls each (median)", "",
             "| path | wall s / image | CPU s / image |", "|---|---|---|"]
    medians = {name: np.median(np.array(values), axis=0) / len(batch) for name, values in samples.items()}
    lines += [f"| {name} | {wall:.3f} | {cpu:.3f} |" for name, (wall, cpu) in medians.items()]
    (plain_wall, plain_cpu), (inpaint_wall, inpaint_cpu) = medians.values()
    lines.append(f"| inpaint / plain | {inpaint_wall / plain_wall:.2f}x | {inpaint_cpu / plain_cpu:.2f}x |")
    return "\n".join(lines)


def timing_table(timer: Timer) -> str:
    lines = [f"Time per image (batches of {BATCH}, {torch.get_num_threads()} threads; CPU = this process's CPU time)",
             "", "| phase | wall s / image | CPU s / image |", "|---|---|---|"]
    lines += [f"| {phase} | {timer.per_image(phase):.3f} | {timer.per_image(phase, 'cpu'):.3f} |" for phase in timer.wall]
    for clock in ("wall", "cpu"):
        def cost(phase: str) -> float:
            return timer.per_image(phase, clock)
        plain = cost("plain another colour: generate") + cost("plain another colour: decode")
        inpaint = cost("encode") + cost("inpaint another colour: generate") + cost("inpaint another colour: decode")
        lines.append(f"| **inpaint (encode + generate + decode) / plain (generate + decode), {clock}** | "
                     f"{inpaint / plain:.2f}x | |")
        lines.append(f"| **inpaint generate / plain generate, {clock}** | "
                     f"{cost('inpaint another colour: generate') / cost('plain another colour: generate'):.2f}x | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=100, help="held-out scenes (at most 240)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sweep-scenes", type=int, default=SWEEP_SCENES, help="scenes of the keep-K sweep")
    parser.add_argument("--grey-pad", action="store_true",
                        help="also outpaint from a mid-grey pad, against pad_for_outpaint's edge replication")
    parser.add_argument("--mask-study", type=int, default=0, metavar="N",
                        help="also inpaint the first N scenes with other masks (margins, token-straddling edges)")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    models = Models(load_transformer(args.transformer, "cpu"), load_vae(args.vae, "cpu"),
                    load_text_encoder(args.text_encoder, "cpu"))
    specs = heldout_specs(args.scenes)
    rng = np.random.default_rng(args.seed)
    scenes = np.stack([render(spec, rng) for spec in specs])                       # [N, 256, 256, 3] uint8
    scenes_tensor = images_to_tensor(list(scenes)).contiguous()                    # [N, 3, 256, 256] in [-1, 1]
    # first calls at a batch size pay one-off costs (allocations, oneDNN primitives): one batch of each path, untimed
    warm_up, first = Timer(), specs[:BATCH]
    warm_bits = encode_all(models, scenes_tensor[:BATCH], warm_up, "encode")
    run(models, first, args.seed, warm_up, "plain")
    run(models, first, args.seed, warm_up, "inpaint", init_bits=warm_bits,
        masks=torch.stack([box_mask(object_box(spec, TOKEN)) for spec in first]))
    timer = Timer()
    bits = encode_all(models, scenes_tensor, timer, "encode")
    recon = torch.cat([timed(timer, "VAE reconstruction", len(specs[i:i + BATCH]),
                             lambda i=i: reconstruct(models, scenes_tensor[i:i + BATCH]))
                       for i in range(0, len(specs), BATCH)])                 # [N, 3, 256, 256]
    print(inpaint_tables(models, specs, scenes, scenes_tensor, recon, bits, args.seed, timer), end="\n\n", flush=True)
    print(outpaint_table(models, specs, scenes_tensor, scenes, recon, args.seed, timer, args.grey_pad),
          end="\n\n", flush=True)
    if args.mask_study:
        study = min(args.mask_study, len(specs))
        print(mask_study_table(models, specs[:study], scenes[:study], scenes_tensor[:study], recon[:study],
                               [b[:study] for b in bits], args.seed, timer), end="\n\n", flush=True)
    sweep = min(args.sweep_scenes, len(specs))
    print(keep_sweep_table(models, specs[:sweep], scenes[:sweep], [b[:sweep] for b in bits], args.seed, timer),
          end="\n\n", flush=True)
    print(fixture_parity_table(), end="\n\n")
    print(timing_table(timer), end="\n\n")
    print(interleaved_timing_table(models, specs, bits, args.seed), end="\n\n")
    print(f"total run time {time.perf_counter() - started:.0f} s on {torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
