"""Loading MusicGen: the real `facebook/musicgen-small` from the Hugging Face hub (or a local copy), or a
tiny randomly initialised one with the same architecture for tests and `aurax local`.

Everything here imports torch and transformers: call it from job code only, never from Lambda code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import (
    EncodecConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    PreTrainedTokenizerBase,
    T5Config,
)

from aurax_contracts import TINY_MODEL_ID
from aurax_contracts.config import ModelConfig, default_revision

log = logging.getLogger(__name__)

#: Tiny model sizes: seconds per epoch on a laptop CPU, same code paths as musicgen-small.
TINY_CODEBOOK_SIZE = 64
TINY_TEXT_VOCAB = 260  # 256 bytes + pad, eos, unk, spare


@dataclass(frozen=True)
class CodecInfo:
    """What the dataset and training need to know about the model's EnCodec."""

    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int


Attention = Literal["sdpa", "eager"]


def resolve_attention(requested: str) -> Attention:
    """The decoder's and text encoder's attention kernel for a `model.attention` value. `auto` is SDPA: the fastest
    kernel transformers offers here (3-5x eager on an H200, shared/notes/gpu-measurements.md), and finite on fully
    dropped prompts (all-masked cross-attention rows) in fp32, bf16 and fp16 (tests/model/test_attention.py)."""
    return "eager" if requested == "eager" else "sdpa"


def tiny_musicgen_config() -> MusicgenConfig:
    text = T5Config(vocab_size=TINY_TEXT_VOCAB, d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    # 4 codebooks of 64 entries at 50 frames/s is 4 x 6 bit x 50 = 1.2 kbit/s.
    codec = EncodecConfig(sampling_rate=32000, audio_channels=1, num_filters=4, codebook_size=TINY_CODEBOOK_SIZE,
                          codebook_dim=16, hidden_size=16, upsampling_ratios=[8, 5, 4, 4], num_residual_layers=1,
                          num_lstm_layers=1, target_bandwidths=[1.2], use_causal_conv=False,
                          norm_type="weight_norm", normalize=False)
    decoder = MusicgenDecoderConfig(vocab_size=TINY_CODEBOOK_SIZE, hidden_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, ffn_dim=128, num_codebooks=4,
                                    pad_token_id=TINY_CODEBOOK_SIZE, bos_token_id=TINY_CODEBOOK_SIZE,
                                    decoder_start_token_id=TINY_CODEBOOK_SIZE, max_position_embeddings=4096)
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=codec.to_dict(), decoder=decoder.to_dict())


def _with_decoder_start(model: MusicgenForConditionalGeneration) -> MusicgenForConditionalGeneration:
    # The labels path reads config.decoder.decoder_start_token_id; a config assembled from parts may lack it.
    decoder = model.config.decoder
    if getattr(decoder, "decoder_start_token_id", None) is None:
        decoder.decoder_start_token_id = decoder.pad_token_id
    return model


def load_musicgen(model_id: str, attention: str = "auto", seed: int = 0, *, revision: str | None = None,
                  decoder_dropout: float | None = None) -> MusicgenForConditionalGeneration:
    """The pretrained model (or the tiny random one for `TINY_MODEL_ID`), in eval mode, on the CPU, with fp32
    weights. `attention` (`auto`/`sdpa`/`eager`) applies to the decoder and the text encoder; EnCodec always runs
    eager (it has no SDPA implementation, so asking the whole model for SDPA fails). `revision` pins the hub
    commit (None: the pinned one for musicgen-small, `default_revision`, so that every job loads the
    weights the image bakes); `decoder_dropout` overrides the checkpoint config's decoder dropout (None keeps it)."""
    revision = revision if revision is not None else default_revision(model_id)
    if model_id == TINY_MODEL_ID:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the tiny "pretrained" weights are a pure function of the seed
        config = tiny_musicgen_config()
        if decoder_dropout is not None:
            config.decoder.dropout = decoder_dropout
        model = MusicgenForConditionalGeneration(config)
        _spread_tiny_codebooks(model, seed)
        torch.random.set_rng_state(generator_state)
    else:
        log.info("loading %s (revision %s) from the Hugging Face hub (or its local cache)", model_id,
                 revision or "default")
        config = MusicgenConfig.from_pretrained(model_id, revision=revision)
        if decoder_dropout is not None:
            config.decoder.dropout = decoder_dropout  # read by the decoder's modules when they are built
        # fp32 master weights whatever dtype the checkpoint is stored in: mixed precision is autocast's job, and
        # fp16 weights would break the loss scaler.
        model = MusicgenForConditionalGeneration.from_pretrained(model_id, config=config, revision=revision,
                                                                 dtype=torch.float32)
    set_attention(model, resolve_attention(attention))
    return _with_decoder_start(model).eval()


def load_configured_musicgen(config: ModelConfig) -> MusicgenForConditionalGeneration:
    """`load_musicgen` with everything a run's `model` section says: id, pinned revision, attention, dropout."""
    return load_musicgen(config.model_id, attention=config.attention, revision=config.resolved_revision(),
                         decoder_dropout=config.decoder_dropout)


def set_attention(model: MusicgenForConditionalGeneration, attention: Attention) -> None:
    """Per sub-model, with calls that exist across the supported transformers range (5.17 and later)."""
    model.decoder.set_attn_implementation(attention)
    model.text_encoder.set_attn_implementation(attention)


def attention_of(model: MusicgenForConditionalGeneration) -> str:
    return str(model.config.decoder._attn_implementation)


def enable_activation_checkpointing(module: torch.nn.Module) -> None:
    """Non-reentrant activation checkpointing of a transformers model's layers. transformers 5.2x calls it
    `activation_checkpointing_enable` (and deprecates the old name); 5.17 has only `gradient_checkpointing_enable`."""
    kwargs = {"use_reentrant": False}
    if hasattr(module, "activation_checkpointing_enable"):
        module.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def disable_activation_checkpointing(module: torch.nn.Module) -> None:
    if hasattr(module, "activation_checkpointing_disable"):
        module.activation_checkpointing_disable()
    else:
        module.gradient_checkpointing_disable()


def _spread_tiny_codebooks(model: MusicgenForConditionalGeneration, seed: int) -> None:
    """transformers initialises EnCodec codebooks to zeros, so a model built from a config encodes every sound
    to code 0 and a test could not tell clips apart. Give the tiny codec seeded entries on the scale of its
    encoder's output (as EnCodec's k-means initialisation would), so different audio gives different codes."""
    generator = torch.Generator().manual_seed(seed)
    codec = model.audio_encoder
    with torch.no_grad():
        frames = codec.encoder(torch.randn(1, 1, codec.config.sampling_rate, generator=generator))[0].T
        scale = frames.std(dim=0)
        for depth, layer in enumerate(codec.quantizer.layers):
            entries = frames.mean(dim=0) * (depth == 0) + \
                torch.randn(layer.codebook.embed.shape, generator=generator) * scale / 2 ** depth
            layer.codebook.embed.copy_(entries)
            layer.codebook.embed_avg.copy_(entries)


def load_tokenizer(model_id: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    """The T5 tokenizer of the model; the tiny model uses a byte-level tokenizer built offline."""
    if model_id == TINY_MODEL_ID:
        return byte_tokenizer()
    from transformers import AutoTokenizer

    revision = revision if revision is not None else default_revision(model_id)
    return AutoTokenizer.from_pretrained(model_id, revision=revision)


def byte_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level tokenizer (ids 3-258; 0 pad, 1 eos, 2 unk), built offline: the tiny model's, and what the GPU
    benchmark saves beside a real-size random model, where T5's own cannot be downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # ByteLevel maps each byte to one printable character; give each of those characters its byte's id.
    table = _bytes_to_unicode()
    core = Tokenizer(models.WordLevel(vocab={**{"<pad>": 0, "</s>": 1, "<unk>": 2},
                                             **{table[b]: 3 + b for b in range(256)}}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                                                  pre_tokenizers.Split("", behavior="isolated")])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=256)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what the ByteLevel pre-tokenizer emits)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def codec_info(model: MusicgenForConditionalGeneration) -> CodecInfo:
    codec = model.config.audio_encoder
    return CodecInfo(sample_rate=int(codec.sampling_rate), frame_rate=float(codec.frame_rate),
                     num_codebooks=int(model.config.decoder.num_codebooks), codebook_size=int(codec.codebook_size))


def encode_audio(model: MusicgenForConditionalGeneration, waveform: torch.Tensor) -> torch.Tensor:
    """Mono waveform (batch, samples) at the codec's rate -> codes (batch, num_codebooks, frames), int64."""
    with torch.inference_mode():
        out = model.audio_encoder.encode(waveform.unsqueeze(1))
    codes = out.audio_codes  # (chunks=1, batch, codebooks, frames)
    return codes[0, :, : model.config.decoder.num_codebooks]
