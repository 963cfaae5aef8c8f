"""CLIP-ReID's modules (Li et al., AAAI 2023; Syliz517/CLIP-ReID, model/make_model_clipreid.py)
on an open_clip CLIP.

Attribute names follow the official ``build_transformer`` so that ``state_dict()`` IS the
official checkpoint format that ``raybench.models.clipreid`` loads: ``image_encoder.*`` (open_clip's
VisionTransformer uses OpenAI CLIP's parameter names one for one), ``text_encoder.{transformer,
positional_embedding, ln_final, text_projection}``, ``prompt_learner.{cls_ctx, token_prefix,
token_suffix}``, ``bottleneck[_proj].*`` and ``classifier[_proj].weight``.

- Prompt: "A photo of a X X X X person." tokenised by CLIP's BPE; each X is replaced by one
  learnt vector per identity (``cls_ctx`` [C, n_X, width]); the other tokens stay frozen
  (``token_prefix`` / ``token_suffix``, their token embeddings).
- Image features (``vit_features``): the CLS token after the second-to-last block (``x11``),
  after the last block and ``ln_post`` (``feat``, 768-d on ViT-B-16) and projected (``proj``,
  512-d): the three the official stage 2 applies the triplet loss to.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from raybench.errors import SpecError, WeightsUnavailableError
from raybench.models.openclip import model_config
from raybench.train.config import ModelCfg


def build_clip(model: ModelCfg, load_init: bool = True):
    """An open_clip CLIP at the training input size; ``model.open_clip_cfg`` is deep-merged
    onto ``model.arch``'s config (tests: a tiny CLIP), ``model.init`` is an open_clip tag or a
    checkpoint (only with the arch's own config)."""
    import open_clip

    base = model_config(model.arch)
    if base is None or "timm_model_name" in base.get("vision_cfg", {}):
        raise SpecError(f"CLIP-ReID needs a native open_clip ViT; {model.arch!r} is not one")
    if model.open_clip_cfg:
        if model.init and load_init:
            raise SpecError("model.open_clip_cfg changes the architecture, so model.init cannot load weights")
        cfg = _merge(base, model.open_clip_cfg)
        cfg["vision_cfg"]["image_size"] = list(model.preprocess.size)
        return open_clip.CLIP(**cfg, quick_gelu=model.quick_gelu)
    try:
        return open_clip.create_model(model.arch, pretrained=model.init if load_init else None,
                                      force_quick_gelu=model.quick_gelu, pretrained_text=False,
                                      force_image_size=model.preprocess.size)
    except (RuntimeError, OSError) as exc:
        raise WeightsUnavailableError(f"{model.arch} with weights {model.init!r}: {exc}") from None


def fetch_init(model: ModelCfg) -> ModelCfg:
    """``model.init`` checked on the driver before any worker builds the CLIP: an open_clip
    tag's weights fetched into open_clip's cache (or found there), a local checkpoint made
    absolute and present. Offline, or with a typo, that is one error now rather than every
    worker failing in turn while FailureConfig restarts them."""
    import open_clip

    if model.init is None:
        return model
    if model.open_clip_cfg:
        raise SpecError("model.open_clip_cfg changes the architecture, so model.init cannot load weights")
    tag = open_clip.get_pretrained_cfg(model.arch, model.init)
    if tag:
        try:
            open_clip.pretrained.download_pretrained(tag)
        except Exception as exc:  # noqa: BLE001 - hub, HTTP and file errors alike
            raise WeightsUnavailableError(
                f"{model.arch} weights {model.init!r} could not be fetched ({type(exc).__name__}: {exc}); "
                "put them in open_clip's cache (the Hugging Face hub cache) or set model.init to a local "
                "checkpoint") from None
        return model
    path = Path(model.init).expanduser().resolve()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"model.init {model.init!r}: neither an open_clip tag of {model.arch} "
            f"({', '.join(open_clip.list_pretrained_tags_by_model(model.arch)) or 'none'}) nor a file")
    return dataclasses.replace(model, init=str(path))


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, Mapping) else value
    return out


def vit_features(visual, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x11 CLS, ln_post CLS, projected CLS) of an open_clip VisionTransformer, as CLIP-ReID's."""
    x = visual.conv1(x)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x)
    x11 = x[:, 0]
    feat = visual.ln_post(blocks[-1](x)[:, 0])
    return x11, feat, feat @ visual.proj


class TextEncoder(nn.Module):
    """CLIP's text transformer fed token embeddings (the prompt) instead of token ids."""

    def __init__(self, clip):
        super().__init__()
        self.transformer = clip.transformer
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)

    def forward(self, prompts: torch.Tensor, eot: int) -> torch.Tensor:
        """prompts [B, L, width] -> [B, embed_dim], read at the end-of-text position ``eot``."""
        x = prompts + self.positional_embedding.to(prompts.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)[:, eot]
        proj = self.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj


class PromptLearner(nn.Module):
    """Per-identity learnt tokens in place of the prompt's X's."""

    def __init__(self, num_classes: int, prompt: str, token_embedding: nn.Embedding, context_length: int):
        import open_clip

        super().__init__()
        tokens = open_clip.tokenize([prompt], context_length=context_length)[0]
        x_id = int(open_clip.tokenize(["X"], context_length=context_length)[0][1])
        where = (tokens == x_id).nonzero().flatten().tolist()
        if not where or where != list(range(where[0], where[-1] + 1)):
            raise SpecError(f"clipreid.prompt {prompt!r} needs one run of consecutive 'X' words "
                            f"(the per-identity tokens)")
        with torch.no_grad():
            embedded = token_embedding(tokens.unsqueeze(0).to(token_embedding.weight.device))
        width = embedded.shape[-1]
        self.cls_ctx = nn.Parameter(torch.empty(num_classes, len(where), width).normal_(std=0.02))
        self.register_buffer("token_prefix", embedded[:, :where[0]].clone())
        self.register_buffer("token_suffix", embedded[:, where[-1] + 1:].clone())
        self.eot = int(tokens.argmax())  # CLIP reads the text feature at the end-of-text token

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """labels [B] -> prompt embeddings [B, L, width]."""
        n = labels.shape[0]
        return torch.cat([self.token_prefix.expand(n, -1, -1), self.cls_ctx[labels],
                          self.token_suffix.expand(n, -1, -1)], dim=1)


class PromptModel(nn.Module):
    """Stage 1: both encoders frozen, only ``prompt_learner.cls_ctx`` learns."""

    def __init__(self, clip, num_classes: int, prompt: str):
        super().__init__()
        self.text_encoder = TextEncoder(clip)
        self.prompt_learner = PromptLearner(num_classes, prompt, clip.token_embedding, clip.context_length)
        self.text_encoder.requires_grad_(False)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(self.prompt_learner(labels), self.prompt_learner.eot)


class ClipReID(PromptModel):
    """Stage 2: the image encoder with BN necks and ID classifiers, trained against the
    stage-1 text features; prompts frozen, the text encoder frozen unless ``train_text``."""

    def __init__(self, clip, num_classes: int, prompt: str, train_text: bool = False):
        super().__init__(clip, num_classes, prompt)
        self.image_encoder = clip.visual
        width, proj_dim = clip.visual.proj.shape
        self.classifier = nn.Linear(width, num_classes, bias=False)
        self.classifier_proj = nn.Linear(proj_dim, num_classes, bias=False)
        for layer in (self.classifier, self.classifier_proj):
            nn.init.normal_(layer.weight, std=0.001)
        self.bottleneck, self.bottleneck_proj = nn.BatchNorm1d(width), nn.BatchNorm1d(proj_dim)
        for bn in (self.bottleneck, self.bottleneck_proj):
            bn.bias.requires_grad_(False)  # BNNeck: no shift (Luo et al. 2019)
        self.prompt_learner.requires_grad_(False)
        self.text_encoder.requires_grad_(train_text)
        self.train_text = train_text
        self.register_buffer("text_bank", torch.zeros(num_classes, proj_dim), persistent=False)

    @torch.no_grad()
    def refresh_text_bank(self, chunk: int = 256) -> None:
        """Every identity's text feature (no gradient), the targets of the image-to-text loss."""
        classes = torch.arange(self.text_bank.shape[0], device=self.text_bank.device)
        for part in classes.split(chunk):
            self.text_bank[part] = super().forward(part).to(self.text_bank.dtype)

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        """-> ([id logits, id logits of proj], [x11, feat, proj], image-to-text logits [B, C]).

        With ``train_text`` the batch's identities are re-encoded with gradient and replace
        their rows of the bank, so the text encoder learns through the image-to-text loss."""
        x11, feat, proj = vit_features(self.image_encoder, images)
        logits = [self.classifier(self.bottleneck(feat)), self.classifier_proj(self.bottleneck_proj(proj))]
        bank = self.text_bank
        if self.train_text:
            ids = labels.unique()
            bank = bank.index_copy(0, ids, super().forward(ids).to(bank.dtype))
        return logits, [x11, feat, proj], proj @ bank.t()
