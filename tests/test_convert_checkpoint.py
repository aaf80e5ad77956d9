"""tools/convert_checkpoint.py: an official .pth becomes an equivalent .safetensors."""
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from convert_checkpoint import main  # noqa: E402

from conftest import FIXTURES  # noqa: E402


def test_vae_pth_converts_to_the_same_tensors(tmp_path, caplog):
    official = load_file(str(FIXTURES / "vae_tiny.safetensors"))
    torch.save({"vae": official}, tmp_path / "vae.pth")
    with caplog.at_level("INFO"):
        assert main([str(tmp_path / "vae.pth")]) == 0
    converted = load_file(str(tmp_path / "vae.safetensors"))
    assert set(converted) == set(official) and all(torch.equal(converted[k], official[k]) for k in official)
    assert "codebook_dim=32" in caplog.text


def test_transformer_is_described_and_bad_files_refused(tmp_path, caplog):
    torch.save(load_file(str(FIXTURES / "infinity_tiny.safetensors")), tmp_path / "t.pth")
    with caplog.at_level("INFO"):
        assert main([str(tmp_path / "t.pth"), str(tmp_path / "t.safetensors")]) == 0
    assert "depth=4" in caplog.text and (tmp_path / "t.safetensors").exists()
    assert main([str(tmp_path / "missing.pth")]) == 2
