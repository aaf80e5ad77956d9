"""Weight files: official formats, key layouts, config inference, and readable refusals."""
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from infinity_core import InfinityError, check_pair, generate, load_transformer, load_vae
from infinity_core.config import (TRANSFORMER_PRESETS, VAE_PRESETS, transformer_config_from_state_dict,
                                  vae_config_from_state_dict)
from infinity_core.text import TextCondition
from infinity_core.vae.autoencoder import BitwiseVAE
from infinity_core.transformer.model import InfinityTransformer
from infinity_core.weights import (internal_to_official_transformer, internal_to_official_vae,
                                   official_to_internal_transformer, official_to_internal_vae, read_state_dict,
                                   model_defaults, model_defaults_metadata, require_finite)

from conftest import FIXTURES

TRANSFORMER = FIXTURES / "infinity_tiny.safetensors"
VAE = FIXTURES / "vae_tiny.safetensors"


def _fox(fixture_tensors):
    return TextCondition.from_features([fixture_tensors("text_encoder.safetensors")["p1_kv_compact"]])


def _bits(model, cond):
    return generate(model, cond, pixels="0.06M", cfg=3.0, tau=1.0, top_k=900, top_p=0.97, seed=5).bits


def test_config_inferred_from_fixture_matches_manifest(manifest):
    kwargs = manifest["models"]["infinity"]["model_kwargs"]
    state_dict, chunks = official_to_internal_transformer(load_file(str(TRANSFORMER)))
    config = transformer_config_from_state_dict(state_dict, block_chunks=chunks)
    assert (config.depth, config.width, config.num_heads, config.block_chunks) == (
        kwargs["depth"], kwargs["embed_dim"], kwargs["num_heads"], kwargs["block_chunks"])
    assert config.text_channels == manifest["models"]["infinity"]["flags"]["text_channels"]
    assert config.num_bit_logits == manifest["models"]["infinity"]["V"]
    assert config.ffn_hidden == round(kwargs["embed_dim"] * kwargs["mlp_ratio"] / 256) * 256
    vae_info = manifest["models"]["vae"]
    vae_config = vae_config_from_state_dict(official_to_internal_vae(load_file(str(VAE))))
    assert vae_config.codebook_dim == vae_info["codebook_dim"]
    assert vae_config.channel_mult == tuple(vae_info["decoder_ch_mult"])
    assert (vae_config.base_channels, vae_config.num_res_blocks) == (vae_info["base_ch"], vae_info["num_res_blocks"])
    assert vae_config.downsample == vae_info["patch_size"]


@pytest.mark.parametrize("name", sorted(TRANSFORMER_PRESETS))
def test_transformer_presets_round_trip_through_official_keys(name):
    """A preset's official-layout key set infers back to the preset (depth, width, heads, bits, chunks...)."""
    preset = TRANSFORMER_PRESETS[name]
    with torch.device("meta"):
        model = InfinityTransformer(preset)
    official = internal_to_official_transformer(model.state_dict(), preset.block_chunks)
    assert any(k.startswith("block_chunks.7.module.") for k in official)
    state_dict, chunks = official_to_internal_transformer(official)
    assert transformer_config_from_state_dict(state_dict, block_chunks=chunks) == preset
    assert preset.spatial_patchify == (name == "8b")


@pytest.mark.parametrize("name", sorted(VAE_PRESETS))
def test_vae_presets_round_trip_through_official_keys(name):
    preset = VAE_PRESETS[name]
    with torch.device("meta"):
        model = BitwiseVAE(preset)
    official = internal_to_official_vae(model.state_dict(), preset.codebook_dim)
    assert "encoder.conv_in.conv.weight" in official and "decoder.norm_out.norm.weight" in official
    assert vae_config_from_state_dict(official_to_internal_vae(official)) == preset


def test_official_key_layout_round_trips_exactly():
    official = load_file(str(TRANSFORMER))
    internal, chunks = official_to_internal_transformer(official)
    back = internal_to_official_transformer(internal, chunks)
    assert set(back) == set(official)
    assert all(torch.equal(back[k], official[k]) for k in official)
    vae_official = load_file(str(VAE))
    vae_back = internal_to_official_vae(official_to_internal_vae(vae_official), 32)
    assert set(vae_back) == set(vae_official)
    assert all(torch.equal(vae_back[k], vae_official[k]) for k in vae_official)


def test_official_pth_files_load_like_safetensors(tmp_path, fixture_tensors):
    """A bare-state-dict transformer .pth and a {'vae': ...} VAE .pth, as upstream ships them."""
    torch.save(load_file(str(TRANSFORMER)), tmp_path / "infinity_2b_reg.pth")
    torch.save({"vae": load_file(str(VAE))}, tmp_path / "infinity_vae_d32reg.pth")
    cond = _fox(fixture_tensors)
    reference = load_transformer(TRANSFORMER, "cpu", torch.float32)
    from_pth = load_transformer(tmp_path / "infinity_2b_reg.pth", "cpu", torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(_bits(reference, cond), _bits(from_pth, cond)))
    codes = torch.randn(1, 32, 4, 4)
    with torch.inference_mode():
        expected = load_vae(VAE, "cpu", torch.float32).decode(codes)
        got = load_vae(tmp_path / "infinity_vae_d32reg.pth", "cpu", torch.float32).decode(codes)
    assert torch.equal(expected, got)


def test_sharded_safetensors_with_index(tmp_path, fixture_tensors):
    state_dict = load_file(str(TRANSFORMER))
    keys = sorted(state_dict)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, shard_keys in shards.items():
        save_file({k: state_dict[k] for k in shard_keys}, str(tmp_path / name))
    weight_map = {k: name for name, shard_keys in shards.items() for k in shard_keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    cond = _fox(fixture_tensors)
    sharded = load_transformer(tmp_path, "cpu", torch.float32)
    reference = load_transformer(TRANSFORMER, "cpu", torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(_bits(reference, cond), _bits(sharded, cond)))


def test_low_precision_keeps_sensitive_parameters_in_fp32():
    model = load_transformer(TRANSFORMER, "cpu", torch.bfloat16)
    assert model.blocks[0].ffn.fc1.weight.dtype == torch.bfloat16
    assert model.blocks[0].sa.mat_qkv.weight.dtype == torch.bfloat16
    for name in ("head.weight", "word_embed.weight", "lvl_embed.weight", "blocks.0.ada_gss",
                 "blocks.0.ca_norm.weight", "blocks.0.sa.scale_mul_1H11", "text_norm.weight", "cfg_uncond"):
        assert model.get_parameter(name).dtype == torch.float32, name


# --- refusals ---------------------------------------------------------------------------------------

def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InfinityError, match="does not exist"):
        load_transformer(tmp_path / "nope.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(InfinityError, match=r"empty \(0 bytes\)"):
        load_transformer(tmp_path / "empty.safetensors")


def test_truncated_files(tmp_path):
    data = TRANSFORMER.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InfinityError, match="cut.safetensors"):
        load_transformer(tmp_path / "cut.safetensors", "cpu")
    torch.save(load_file(str(TRANSFORMER)), tmp_path / "full.pth")
    pth = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(pth[: len(pth) // 2])
    with pytest.raises(InfinityError, match="cut.pth"):
        load_transformer(tmp_path / "cut.pth", "cpu")


class _Payload:
    """Stands for arbitrary pickled objects: weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_pickle_with_code_is_refused(tmp_path, capsys):
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"weight": _Payload()}, handle)
    with pytest.raises(InfinityError, match="could run code"):
        load_transformer(tmp_path / "evil.pth", "cpu")
    assert "pickle code ran" not in capsys.readouterr().out


def test_wrong_model_files_are_named(tmp_path):
    with pytest.raises(InfinityError, match=r"t5_tiny\.safetensors.* not an Infinity transformer"):
        load_transformer(FIXTURES / "t5_tiny.safetensors", "cpu")
    with pytest.raises(InfinityError, match=r"vae_tiny\.safetensors"):
        load_transformer(VAE, "cpu")
    with pytest.raises(InfinityError, match=r"infinity_tiny\.safetensors"):
        load_vae(TRANSFORMER, "cpu")
    (tmp_path / "weights.ckpt2").write_bytes(b"xx")
    with pytest.raises(InfinityError, match=r"unsupported extension '\.ckpt2'"):
        load_transformer(tmp_path / "weights.ckpt2")


def test_vae_bits_must_match_the_head():
    transformer = load_transformer(TRANSFORMER, "cpu").config
    with pytest.raises(InfinityError, match=r"my_vae\.pth.*14-bit.*my_2b\.pth.*32 bits"):
        check_pair(transformer, VAE_PRESETS["d56_patchify"], "my_2b.pth", "my_vae.pth")
    check_pair(TRANSFORMER_PRESETS["8b"], VAE_PRESETS["d56_patchify"])   # 4 x 14 = 56: accepted
    check_pair(transformer, load_vae(VAE, "cpu").config)


def test_read_state_dict_unwraps_official_vae(tmp_path):
    torch.save({"vae": {"a": torch.ones(2)}, "epoch": 3}, tmp_path / "vae.pth")
    assert set(read_state_dict(tmp_path / "vae.pth")) == {"a"}


def test_finite_weights_whose_sum_overflows_are_accepted():
    """The finite check's fast path is a sum; a sum that overflows on finite values must not refuse them."""
    huge = torch.full((4,), 3e38)
    assert not torch.isfinite(huge.sum())
    require_finite(huge, huge, "w", "test file")
    with pytest.raises(InfinityError, match="'w' holds NaN"):
        require_finite(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, float("nan")]), "w", "test file")


# --- sampling defaults in the file's metadata --------------------------------------------------------

DEMO_TRANSFORMER = Path(__file__).resolve().parents[1] / "models" / "infinity" / "infinity_demo_shapes.safetensors"


def test_model_defaults_come_from_the_file_not_its_name(tmp_path):
    assert model_defaults(DEMO_TRANSFORMER) == {"pixels": "0.06M"}
    renamed = tmp_path / "my_model.safetensors"
    shutil.copyfile(DEMO_TRANSFORMER, renamed)
    assert model_defaults(renamed) == {"pixels": "0.06M"}
    assert model_defaults(TRANSFORMER) == {}                 # no metadata: SamplingConfig's defaults apply
    torch.save(load_file(str(TRANSFORMER)), tmp_path / "official.pth")
    assert model_defaults(tmp_path / "official.pth") == {}


def test_model_defaults_round_trip_and_refuse_bad_values(tmp_path):
    tensors = load_file(str(TRANSFORMER))
    save_file(tensors, str(tmp_path / "a.safetensors"), metadata=model_defaults_metadata(pixels="0.25M"))
    assert model_defaults(tmp_path / "a.safetensors") == {"pixels": "0.25M"}
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"infinity.pixels": "4M"})
    with pytest.raises(InfinityError, match=r"bad\.safetensors.*'4M' is not a pixel budget"):
        model_defaults(tmp_path / "bad.safetensors")
    with pytest.raises(InfinityError, match="no default for \\['cfg'\\]"):
        model_defaults_metadata(cfg="3")
    (tmp_path / "shards").mkdir()
    index = {"metadata": model_defaults_metadata(pixels="0.60M"), "weight_map": {}}
    (tmp_path / "shards" / "model.safetensors.index.json").write_text(json.dumps(index))
    assert model_defaults(tmp_path / "shards") == {"pixels": "0.60M"}

