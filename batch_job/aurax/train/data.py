"""From precomputed EnCodec codes and prompts to MusicGen training batches; no audio is touched here.

Every random choice about an example (its crop, whether its prompt is dropped for classifier-free guidance)
is a pure function of (seed, epoch, position in the epoch), and the epoch order of (seed, epoch). A resumed
run therefore sees exactly the batches the uninterrupted run saw, on any number of ranks and with any
micro-batch, without saving any data-loader state beyond the position.

An optimizer step takes `batch_size` consecutive positions of the epoch's permutation; rank r of W takes the
contiguous share `rank_positions`, split into balanced micro-batches (`split_micro_batches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import MusicgenForConditionalGeneration, PreTrainedTokenizerBase

from ..dataset.shards import Clip

#: Label value the loss ignores (and `shift_tokens_right` turns into the pad token for the decoder input).
IGNORE = -100


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The permutation of the training clips for one epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def rank_positions(start: int, batch_size: int, world_size: int, rank: int) -> range:
    """This rank's share of the step that begins at epoch position `start`: contiguous, the shares of the ranks
    differing by at most one example and covering the step's `batch_size` positions exactly once."""
    return range(start + rank * batch_size // world_size, start + (rank + 1) * batch_size // world_size)


def split_micro_batches(positions: range, micro_batch_size: int) -> list[range]:
    """`positions` in as few micro-batches of at most `micro_batch_size` as possible, balanced (sizes differ by
    at most one), so that no pass runs at a tiny, inefficient size."""
    count = max(1, -(-len(positions) // micro_batch_size))
    bounds = [positions.start + i * len(positions) // count for i in range(count + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def micro_batch_seed(seed: int, epoch: int, first_position: int) -> int:
    """Seed of torch's (and Python's) generators for the micro-batch that starts at `first_position`: dropout
    inside the model draws from them, so its masks are a function of the data position, not of the process's
    history, and a resumed run (on any number of ranks) draws the same ones."""
    return int(np.random.default_rng([seed, epoch, first_position, 0xD20]).integers(0, 2**62))


def _example_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, position, 0xC11])


def crop_or_pad(codes: np.ndarray, frames: int, start: int) -> np.ndarray:
    """codes [K, n] -> int64 [K, frames] from `start`; frames past the clip's end are IGNORE."""
    out = np.full((codes.shape[0], frames), IGNORE, dtype=np.int64)
    piece = codes[:, start:start + frames]
    out[:, :piece.shape[1]] = piece
    return out


def delay_pattern_labels(codes: torch.Tensor) -> torch.Tensor:
    """codes [B, K, T] -> labels [B, T + K - 1, K] with MusicGen's delay pattern: codebook k is shifted right
    by k steps, the gaps being IGNORE (as `MusicgenForCausalLM.build_delay_pattern_mask` lays them out)."""
    batch, books, frames = codes.shape
    out = codes.new_full((batch, books, frames + books - 1), IGNORE)
    for k in range(books):
        out[:, k, k:k + frames] = codes[:, k]
    return out.transpose(1, 2).contiguous()


@dataclass
class Batch:
    labels: torch.Tensor  # int64 [B, seq, K]
    encoder_hidden: torch.Tensor  # float [B, L, D]: the frozen text encoder's output
    attention_mask: torch.Tensor  # int64 [B, L]; all zero for a dropped (unconditional) prompt
    tokens: int = 0
    """Labels the loss counts per codebook (the frames of real audio): MusicGen's loss is a per-codebook mean
    over them, so a micro-batch's share of its step's loss is tokens / the step's tokens."""

    def to(self, device: torch.device) -> Batch:
        """This batch on `device`. To a GPU through pinned memory: the copy is then asynchronous, where one from
        pageable memory would first wait for all the work queued on the stream (a host synchronisation)."""
        pin = device.type == "cuda"

        def move(tensor: torch.Tensor) -> torch.Tensor:
            return (tensor.pin_memory() if pin and not tensor.is_pinned() else tensor).to(device, non_blocking=True)

        return Batch(move(self.labels), move(self.encoder_hidden), move(self.attention_mask), self.tokens)

    def __len__(self) -> int:
        return self.labels.shape[0]


class TextConditioning:
    """The frozen text encoder's output for each distinct prompt, computed once at start-up."""

    def __init__(self, states: dict[str, torch.Tensor]) -> None:
        self.states = states

    @classmethod
    def encode(cls, model: MusicgenForConditionalGeneration, tokenizer: PreTrainedTokenizerBase,
               prompts: Sequence[str], device: torch.device, batch_size: int = 64) -> TextConditioning:
        unique = sorted(set(prompts))
        states: dict[str, torch.Tensor] = {}
        encoder = model.text_encoder
        with torch.no_grad():
            for begin in range(0, len(unique), batch_size):
                chunk = unique[begin:begin + batch_size]
                tokens = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True)
                hidden = encoder(input_ids=tokens["input_ids"].to(device),
                                 attention_mask=tokens["attention_mask"].to(device)).last_hidden_state
                for i, prompt in enumerate(chunk):
                    length = int(tokens["attention_mask"][i].sum())
                    states[prompt] = hidden[i, :length].float().cpu()
        return cls(states)

    def batch(self, prompts: Sequence[str], dropped: Sequence[bool]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded hidden states and mask; a dropped prompt is all zeros with an all-zero mask, which is exactly
        the unconditional half that `MusicgenForConditionalGeneration.generate` builds for guidance."""
        width = max(self.states[p].shape[0] for p in prompts)
        dim = next(iter(self.states.values())).shape[1]
        hidden = torch.zeros(len(prompts), width, dim)
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for i, (prompt, drop) in enumerate(zip(prompts, dropped, strict=True)):
            if drop:
                continue
            state = self.states[prompt]
            hidden[i, :state.shape[0]] = state
            mask[i, :state.shape[0]] = 1
        return hidden, mask


class ExampleSource:
    """Builds batches from clips: training batches by epoch position, validation batches by clip index."""

    def __init__(self, clips: Sequence[Clip], text: TextConditioning, segment_frames: int, seed: int,
                 condition_dropout: float) -> None:
        self.clips = clips
        self.text = text
        self.segment_frames = segment_frames
        self.seed = seed
        self.condition_dropout = condition_dropout

    def _draw(self, epoch: int, order: np.ndarray, position: int) -> tuple[Clip, int, bool]:
        """The clip at `position`, its crop start and whether its prompt is dropped."""
        clip = self.clips[int(order[position])]
        rng = _example_rng(self.seed, epoch, position)
        slack = clip.codes.shape[1] - self.segment_frames
        start = int(rng.integers(0, slack + 1)) if slack > 0 else 0
        return clip, start, bool(rng.random() < self.condition_dropout)

    def train_batch(self, epoch: int, order: np.ndarray, positions: Sequence[int]) -> Batch:
        codes, prompts, dropped = [], [], []
        for position in positions:
            clip, start, drop = self._draw(epoch, order, position)
            codes.append(crop_or_pad(clip.codes, self.segment_frames, start))
            dropped.append(drop)
            prompts.append(clip.prompt)
        return self._assemble(codes, prompts, dropped)

    def train_tokens(self, epoch: int, order: np.ndarray, positions: Sequence[int]) -> int:
        """What `train_batch(...).tokens` would be, without building the batch (for the whole step, all ranks)."""
        total = 0
        for position in positions:
            clip, start, _ = self._draw(epoch, order, position)
            total += max(0, min(self.segment_frames, clip.codes.shape[1] - start))
        return total

    def eval_batch(self, indices: Sequence[int]) -> Batch:
        """Validation: each clip's first segment, with its prompt."""
        clips = [self.clips[i] for i in indices]
        return self._assemble([crop_or_pad(c.codes, self.segment_frames, 0) for c in clips],
                              [c.prompt for c in clips], [False] * len(clips))

    def _assemble(self, codes: list[np.ndarray], prompts: list[str], dropped: list[bool]) -> Batch:
        stacked = np.stack(codes)
        labels = delay_pattern_labels(torch.from_numpy(stacked))
        hidden, mask = self.text.batch(prompts, dropped)
        return Batch(labels, hidden, mask, tokens=int((stacked[:, 0] != IGNORE).sum()))
