"""Prompt tokenizer and encoder: byte-level, needs no download.

A prompt is whitespace-normalised, UTF-8 encoded and laid out as [BOS, bytes…, EOS, PAD…],
always padded to `TextConfig.max_tokens` so contexts from separate calls concatenate. The empty
prompt is the null condition: [BOS, PAD…] with only BOS attended, so its context is a fixed
function of the weights (the learned BOS embedding through the encoder) and every cross-attention
has at least one key. Classifier-free guidance uses it as the unconditional prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .layers import EncoderLayer, init_standard
from .ops import rope
from .presets import TextConfig

PAD, BOS, EOS = 256, 257, 258  # ids above the 256 byte values


def normalize_prompt(prompt: str) -> str:
    return " ".join(prompt.split())


def tokenize(prompts: Sequence[str], max_tokens: int) -> tuple[Tensor, Tensor]:
    """prompts -> ids (B, max_tokens) long and mask (B, max_tokens) bool (True = a real token).

    Prompts longer than max_tokens - 2 bytes are truncated (possibly mid-character).
    """
    if isinstance(prompts, str):
        raise TypeError("tokenize takes a list of prompts, not one string")
    ids = torch.full((len(prompts), max_tokens), PAD, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        data = list(normalize_prompt(prompt).encode("utf-8")[: max_tokens - 2])
        row = [BOS] + (data + [EOS] if data else [])
        ids[i, : len(row)] = torch.tensor(row)
    return ids, ids != PAD


@dataclass(frozen=True)
class TextContext:
    """Encoded prompts: tokens (B, L, C) with padding zeroed, mask (B, L) bool (True = attend)."""

    tokens: Tensor
    mask: Tensor

    @property
    def batch(self) -> int:
        return self.tokens.shape[0]

    @staticmethod
    def cat(ctxs: Sequence[TextContext]) -> TextContext:
        return TextContext(torch.cat([c.tokens for c in ctxs]), torch.cat([c.mask for c in ctxs]))

    def expand(self, batch: int) -> TextContext:
        """Broadcast a batch-1 context to `batch` rows (no-op when already that size)."""
        if self.batch == batch:
            return self
        if self.batch != 1:
            raise ValueError(f"text context has batch {self.batch}, need 1 or {batch}")
        return TextContext(self.tokens.expand(batch, -1, -1), self.mask.expand(batch, -1))

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> TextContext:
        return TextContext(self.tokens.to(device=device, dtype=dtype), self.mask.to(device=device))


class TextEncoder(nn.Module):
    """Byte embeddings, a few transformer layers with 1D RoPE over the byte index, final norm."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # _weight skips nn.Embedding's own normal_ init (init_weights sets it): on the meta
        # device that init alone imports torch._dynamo, over a second of every model load
        self.embed = nn.Embedding(
            cfg.vocab_size, cfg.width, _weight=torch.empty(cfg.vocab_size, cfg.width)
        )
        self.layers = nn.ModuleList(EncoderLayer(cfg.width, cfg.heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=1e-6)
        self.init_weights()

    @property
    def width(self) -> int:
        return self.cfg.width

    def init_weights(self) -> None:
        if not init_standard(self):
            return
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, ids: Tensor, mask: Tensor) -> TextContext:
        """ids (B, L) long, mask (B, L) bool -> TextContext (tokens (B, L, C), mask)."""
        x = self.embed(ids)  # (B, L, C)
        positions = torch.arange(ids.shape[1], dtype=torch.float32, device=ids.device)
        pe = rope(positions, self.cfg.width // self.cfg.heads)  # (L, d / 2, 2)
        for layer in self.layers:
            x = layer(x, pe, mask)
        x = self.norm(x) * mask[..., None]  # padding is zero, so a context is canonical
        return TextContext(x, mask)

    def encode(
        self, prompts: Sequence[str], *, device: torch.device | str | None = None
    ) -> TextContext:
        """Prompts -> TextContext on `device` (default: the encoder's device)."""
        if device is None:
            device = self.embed.weight.device
        ids, mask = tokenize(prompts, self.cfg.max_tokens)
        return self(ids.to(device), mask.to(device))
