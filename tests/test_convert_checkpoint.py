"""tools/convert_checkpoint.py: an official .pth becomes an equivalent .safetensors."""
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

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


def test_output_never_destroys_a_file(tmp_path):
    """The input as output (by name, through a link, or a .safetensors converted onto itself) and an existing
    output without --overwrite are refused before anything is written; the files stay byte-identical."""
    official = load_file(str(FIXTURES / "vae_tiny.safetensors"))
    torch.save({"vae": official}, tmp_path / "vae.pth")
    source_bytes = (tmp_path / "vae.pth").read_bytes()
    (tmp_path / "link.safetensors").symlink_to(tmp_path / "vae.safetensors")
    save_file(official, str(tmp_path / "vae.safetensors"))
    (tmp_path / "keep.safetensors").write_bytes(b"user data")
    assert main([str(tmp_path / "vae.pth"), str(tmp_path / "vae.pth")]) == 2                    # the input
    assert main([str(tmp_path / "vae.safetensors")]) == 2                                       # onto itself
    assert main([str(tmp_path / "vae.safetensors"), str(tmp_path / "link.safetensors"), "--overwrite"]) == 2
    assert main([str(tmp_path / "vae.pth"), str(tmp_path / "keep.safetensors")]) == 2           # exists
    assert main([str(tmp_path / "vae.pth"), str(tmp_path / "no_folder" / "x.safetensors")]) == 2
    assert (tmp_path / "vae.pth").read_bytes() == source_bytes
    assert (tmp_path / "keep.safetensors").read_bytes() == b"user data"
    assert load_file(str(tmp_path / "vae.safetensors")).keys() == official.keys()
    assert main([str(tmp_path / "vae.pth"), str(tmp_path / "keep.safetensors"), "--overwrite"]) == 0
    converted = load_file(str(tmp_path / "keep.safetensors"))
    assert all(torch.equal(converted[k], official[k]) for k in official)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.safetensors", "link.safetensors", "vae.pth",
                                                           "vae.safetensors"]   # no temporary file left


def test_interrupted_write_leaves_no_output(tmp_path, monkeypatch):
    import convert_checkpoint

    torch.save({"vae": load_file(str(FIXTURES / "vae_tiny.safetensors"))}, tmp_path / "vae.pth")

    def fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(convert_checkpoint, "save_file", fail)
    assert main([str(tmp_path / "vae.pth")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.pth"]


QUANTIZED_FORMATS = ["bf16", "fp8", "int8", "gguf-f16", "gguf-bf16", "gguf-q8_0", "gguf-q5_k", "gguf-q4_k"]


@pytest.mark.parametrize("fmt", QUANTIZED_FORMATS)
def test_every_format_loads_back_close_to_the_source(fmt, tmp_path, caplog, transformer):
    """Only block matmul weights change; each expands back to within its format's step of the source."""
    from infinity_core import load_transformer
    from infinity_core.weight_formats import open_source

    torch.save(load_file(str(FIXTURES / "infinity_tiny.safetensors")), tmp_path / "t.pth")
    with caplog.at_level("INFO"):
        assert main([str(tmp_path / "t.pth"), "--format", fmt, "--no-progress"]) == 0
    (written,) = [p for p in tmp_path.iterdir() if p.name != "t.pth"]
    assert "kept in their own precision" in caplog.text and "cfg_uncond (1)" in caplog.text
    assert "bit head" in caplog.text
    source, stored = load_file(str(FIXTURES / "infinity_tiny.safetensors")), open_source(written)
    assert stored.tensor("cfg_uncond").dtype == torch.float32
    torch.testing.assert_close(stored.tensor("head.weight"), source["head.weight"], atol=0, rtol=0)
    key = "block_chunks.1.module.0.ffn.fc2.weight"
    tolerance = {"bf16": 0.01, "gguf-f16": 0.001, "gguf-bf16": 0.01, "fp8": 0.07, "int8": 0.01,
                 "gguf-q8_0": 0.01, "gguf-q5_k": 0.05, "gguf-q4_k": 0.1}[fmt]
    amax = source[key].abs().max()
    assert (stored.tensor(key).float() - source[key]).abs().max() <= tolerance * amax
    model = load_transformer(written, "cpu", torch.float32)
    assert model.config == transformer.config


def test_quantized_outputs_carry_the_model_defaults(tmp_path):
    from infinity_core.weights import model_defaults, model_defaults_metadata

    state = load_file(str(FIXTURES / "infinity_tiny.safetensors"))
    save_file(state, str(tmp_path / "t.safetensors"), metadata=model_defaults_metadata(pixels="0.06M"))
    for fmt in ("int8", "gguf-q8_0"):
        assert main([str(tmp_path / "t.safetensors"), "--format", fmt, "--no-progress"]) == 0
    assert model_defaults(tmp_path / "t_int8.safetensors") == {"pixels": "0.06M"}
    assert model_defaults(tmp_path / "t_Q8_0.gguf") == {"pixels": "0.06M"}
    assert main([str(tmp_path / "t.safetensors"), "--format", "int8", "--no-progress"]) == 2   # exists
    assert main([str(FIXTURES / "vae_tiny.safetensors"), str(tmp_path / "v.gguf"), "--format", "gguf-q8_0"]) == 2
