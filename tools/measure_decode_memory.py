"""Decode memory: the estimate (`vae.autoencoder.decode_memory`) against the peak RSS of real decodes.

    python tools/measure_decode_memory.py          # one fresh process per case, single-threaded

Each case decodes one image of random codes with a VAE of the demo, d32 (2B) or d56 (8B) architecture
(random weights: memory does not depend on their values) and reports how far the process's peak RSS rose
during the decode, next to the estimate.
"""
from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from infinity_core import VAE_PRESETS  # noqa: E402
from infinity_core.config import VAEConfig  # noqa: E402
from infinity_core.vae.autoencoder import BitwiseVAE, decode_memory  # noqa: E402

MiB = 2 ** 20
DEMO = VAEConfig(codebook_dim=16, base_channels=48, channel_mult=(1, 1, 1, 1, 1), num_res_blocks=0)
CONFIGS = {"demo": DEMO, **VAE_PRESETS}
CASES = (("demo", 16), ("demo", 32), ("demo", 64), ("d32", 8), ("d32", 16), ("d32", 32),
         ("d56_patchify", 16), ("d56_patchify", 32))


def measure(name: str, grid: int) -> int:
    """Peak RSS growth (bytes) of one decode, after a warm-up decode of a 2x2 grid."""
    torch.set_num_threads(1)
    vae = BitwiseVAE(CONFIGS[name], with_encoder=False).eval()
    with torch.inference_mode():
        vae.decode(torch.randn(1, vae.config.codebook_dim, 2, 2))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        vae.decode(torch.randn(1, vae.config.codebook_dim, grid, grid))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) * 1024   # ru_maxrss is in KiB on Linux


def main() -> int:
    if len(sys.argv) == 3:   # child process: one case
        print(measure(sys.argv[1], int(sys.argv[2])))
        return 0
    print(f"{'VAE':<13} {'px':>5} {'peak RSS MiB':>13} {'estimate MiB':>13} {'estimate / RSS':>15}")
    for name, grid in CASES:
        rss = int(subprocess.run([sys.executable, __file__, name, str(grid)], capture_output=True, text=True,
                                 check=True).stdout.split()[-1])
        estimate = decode_memory(CONFIGS[name], (grid, grid))
        pixels = grid * CONFIGS[name].downsample
        print(f"{name:<13} {pixels:>5} {rss / MiB:>13.0f} {estimate / MiB:>13.0f} {estimate / rss:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
