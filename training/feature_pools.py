"""The transformer's training data: the frozen VAE's encoder features of fixed sets of training images.

Each trained (aspect, pixel budget) has a pool of one-object scenes and a pool of two-object scenes, encoded
once before training. They are kept apart so that each training phase draws its own share of two-object
scenes: the first phase learns shape on one object alone (pairs in its batches cost it shape), a later one
adds pairs.

Shapes: N images, d bits, H x W latent grid, B a batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from infinity_core.vae.autoencoder import BitwiseVAE

from .shapes import Canvas, ShapesDataset
from .vae_trainer import foreground_weights, images_to_tensor


@dataclass(frozen=True)
class PoolSize:
    """How many training images of one (aspect, pixel budget) are encoded: one-object and two-object scenes."""

    single: int
    pair: int


@dataclass(frozen=True)
class FeaturePool:
    """Encoder features of a fixed set of training images, with their captions."""

    raw_features: torch.Tensor    # [N, d, H, W] float32
    pixel_weights: torch.Tensor   # [N, 1, H, W] float32: mean loss weight of each latent cell's pixels
    captions: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.captions)

    def take(self, indices: list[int]) -> FeaturePool:
        return FeaturePool(self.raw_features[indices], self.pixel_weights[indices],
                           tuple(self.captions[i] for i in indices))

    @staticmethod
    def concat(first: FeaturePool, second: FeaturePool) -> FeaturePool:
        return FeaturePool(torch.cat([first.raw_features, second.raw_features]),
                           torch.cat([first.pixel_weights, second.pixel_weights]), first.captions + second.captions)


@dataclass(frozen=True)
class SizePools:
    """The one-object and two-object pools of one (aspect, pixel budget)."""

    single: FeaturePool
    pair: FeaturePool

    def __len__(self) -> int:
        return len(self.single) + len(self.pair)

    def draw(self, batch_size: int, two_object_share: float, generator: torch.Generator) -> FeaturePool:
        """A batch of `batch_size` images: each a two-object scene with probability `two_object_share`."""
        num_pairs = 0
        if two_object_share > 0:
            num_pairs = int((torch.rand(batch_size, generator=generator) < two_object_share).sum())
        singles = torch.randint(0, len(self.single), (batch_size - num_pairs,), generator=generator).tolist()
        if not num_pairs:
            return self.single.take(singles)
        pairs = torch.randint(0, len(self.pair), (num_pairs,), generator=generator).tolist()
        return FeaturePool.concat(self.single.take(singles), self.pair.take(pairs))


def encode_pool(vae: BitwiseVAE, dataset: ShapesDataset, indices: range, object_weight: float,
                batch_size: int = 16) -> FeaturePool:
    """Encode the images `indices` of `dataset`; pixels of objects weigh `object_weight`, background 1."""
    features, pixel_weights, captions = [], [], []
    with torch.inference_mode():
        for first in range(indices.start, indices.stop, batch_size):
            items = [dataset[i] for i in range(first, min(first + batch_size, indices.stop))]
            images = images_to_tensor([image for image, _ in items])                     # [b, 3, H, W]
            features.append(vae.encoder(images).float().contiguous())                     # [b, d, h, w]
            pixel_weights.append(F.avg_pool2d(foreground_weights(images, object_weight),
                                              vae.config.downsample))                     # [b, 1, h, w]
            captions.extend(caption for _, caption in items)
    if not captions:
        empty = torch.zeros(0)
        return FeaturePool(empty, empty, ())
    return FeaturePool(torch.cat(features), torch.cat(pixel_weights).contiguous(), tuple(captions))


def encode_size_pools(vae: BitwiseVAE, seed: int, size: PoolSize, offset: int, object_weight: float,
                      canvas: Canvas) -> SizePools:
    """Encode `size.single` one-object and `size.pair` two-object training scenes drawn on `canvas`, from
    dataset items `offset` on (one-object scenes first, then two-object ones, from separate item ranges)."""
    singles = ShapesDataset(seed, length=offset + size.single, two_object_probability=0.0, canvas=canvas)
    pairs = ShapesDataset(seed, length=offset + size.single + size.pair, two_object_probability=1.0,
                          canvas=canvas)
    return SizePools(encode_pool(vae, singles, range(offset, offset + size.single), object_weight),
                     encode_pool(vae, pairs, range(offset + size.single, offset + size.single + size.pair),
                                 object_weight))
