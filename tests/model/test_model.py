"""Model loading: the from_pretrained path (a local copy stands in for the hub) and the tiny test model."""

from __future__ import annotations

from pathlib import Path

import torch

from aurax.model import codec_info, encode_audio, load_musicgen, load_tokenizer
from aurax_contracts import TINY_MODEL_ID


def test_pretrained_path_loads_fp32_master_weights_from_an_fp16_copy(tmp_path: Path) -> None:
    load_musicgen(TINY_MODEL_ID).half().save_pretrained(tmp_path)
    model = load_musicgen(str(tmp_path))  # the same from_pretrained call facebook/musicgen-small goes through
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.config.decoder.decoder_start_token_id == model.config.decoder.pad_token_id
    assert not model.training


def test_tiny_model_is_a_pure_function_of_its_seed() -> None:
    first, second = load_musicgen(TINY_MODEL_ID), load_musicgen(TINY_MODEL_ID)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(next(load_musicgen(TINY_MODEL_ID, seed=1).decoder.parameters()),
                           next(first.decoder.parameters()))


def test_tiny_codec_tells_different_sounds_apart() -> None:
    model = load_musicgen(TINY_MODEL_ID)
    info = codec_info(model)
    t = torch.arange(info.sample_rate) / info.sample_rate
    generator = torch.Generator().manual_seed(0)
    low, noise = torch.sin(2 * torch.pi * 80 * t), torch.randn(info.sample_rate, generator=generator)
    codes = encode_audio(model, torch.stack([low, noise]))
    assert codes.shape == (2, info.num_codebooks, int(info.frame_rate))
    assert codes.unique().numel() > 4  # not every frame mapped to one code
    assert not torch.equal(codes[0], codes[1])


def test_tiny_tokenizer_works_offline() -> None:
    tokens = load_tokenizer(TINY_MODEL_ID)(["amapiano log drum", "x"], padding=True, return_tensors="pt")
    assert tokens.input_ids.shape[0] == 2 and tokens.attention_mask[1].sum() == 1
