"""Randomly initialised models of real sizes, for timing (weights do not change the cost)."""

from __future__ import annotations

from typing import Any


def clip_image_encoder(patch_size: int = 32) -> Any:
    """A ViT-B/``patch_size`` CLIP image tower (768 wide, 12 layers, 224 px, 512-d projection) as a
    torch module ``pixel_values -> L2-normalised embeddings``, as ``watchword export clip`` exports it."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=patch_size,
        projection_dim=512,
    )
    vision = CLIPVisionModelWithProjection(config).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vision = vision

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            embeds = self.vision(pixel_values=pixel_values).image_embeds
            return embeds * (embeds * embeds).sum(dim=-1, keepdim=True).clamp_min(1e-24).rsqrt()

    return Encoder().eval()
