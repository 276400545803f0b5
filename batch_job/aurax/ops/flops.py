"""Model FLOPs of training MusicGen's decoder: the numerator of model-FLOPs utilisation (MFU), shared by
`aurax estimate` and bench/gpu_train_benchmark.py so that a measured MFU converts back to the same samples/s.

The count follows PaLM (Chowdhery et al. 2022, appendix B) and torchtitan's `get_num_flop_per_token`: for each
token a matmul weight multiplies, 2 FLOPs forward and 4 backward (activation and weight gradients); for each
position a token attends to, 12 x width per layer (scores and weighted values, forward and backward). A forward
recomputed by activation checkpointing is not counted (MFU, not hardware FLOPs utilisation).

Per audio token each decoder layer multiplies self-attention's q, k, v and output projections, cross-attention's
q and output projections and the two feed-forward matrices; then each codebook's head. The cross-attention keys
and values are projections of the prompt's text tokens, so they count once per text token, not per audio token.
Embedding lookups are free. The text-to-decoder projection (text tokens only) is left out: under 0.1%.
"""

from __future__ import annotations


def decoder_train_flops_per_sample(*, layers: int, width: int, ffn_dim: int, codebooks: int, codebook_size: int,
                                   audio_tokens: float, text_tokens: float = 0.0, lora: bool = False) -> float:
    """FLOPs of one forward and backward pass over one example of `audio_tokens` decoder positions (frames plus
    the delay pattern's codebooks - 1) conditioned on `text_tokens` prompt tokens. With `lora` the frozen weights
    get no weight gradient: 4 FLOPs per weight per token instead of 6 (the adapters themselves are negligible).
    tests/cli/test_cli_estimate.py checks it against `torch.utils.flop_counter.FlopCounterMode`."""
    per_weight = 4.0 if lora else 6.0
    audio_weights = layers * (6 * width * width + 2 * width * ffn_dim) + codebooks * width * codebook_size
    text_weights = layers * 2 * width * width
    attention = 12 * layers * width * (audio_tokens + text_tokens)
    return audio_tokens * (per_weight * audio_weights + attention) + text_tokens * per_weight * text_weights
