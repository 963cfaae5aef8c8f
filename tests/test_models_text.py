"""The text side of the language-aligned families: raybench's caption embedding equals the
library's own tokenizer + encode_text on the same (random) weights; models without a text
tower say so; the colour baseline's colour words land in its image histograms' space."""

import numpy as np
import pytest

from raybench.catalog import load_model_catalog
from raybench.models import build_embedder, has_text_tower, tiny_spec
from raybench.models.base import embeds_text

CATALOG = load_model_catalog()
CAPTIONS = ["a woman in a red jacket and black trousers, carrying a backpack.",
            "A man wearing a white shirt.", "someone with long blond hair and blue jeans, walking fast with a dog"]
OPENCLIP = ["clip-vit-b16", "siglip2-b16-256", "pe-core-l14-336"]


@pytest.mark.parametrize("name", OPENCLIP)
def test_openclip_text_equals_open_clip_encode_text(name):
    import open_clip
    import torch

    spec = tiny_spec(CATALOG[name])
    embedder = build_embedder(spec, device="cpu", pretrained=False)
    assert has_text_tower(CATALOG[name]) and embeds_text(embedder)
    # open_clip's own model of the architecture, given the embedder's (random) weights
    model = open_clip.create_model(spec.arch, pretrained=None, force_image_size=embedder.preprocess.size,
                                   force_quick_gelu=spec.options.get("quick_gelu", False)).eval()
    missing = model.load_state_dict(embedder.text_modules.state_dict(), strict=False)
    assert not [k for k in missing.missing_keys if not k.startswith("visual.")]
    tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)
    with torch.no_grad():
        expected = model.encode_text(tokenizer(CAPTIONS)).numpy()
    got = embedder.embed_text(CAPTIONS)
    assert got.dtype == np.float32 and got.shape == (3, embedder.dim) == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # the captions differ, so a tokenizer that dropped them would not pass the check above
    assert np.abs(expected[0] - expected[1]).max() > 1e-3


def test_openclip_option_text_false_drops_the_text_tower():
    import dataclasses

    spec = tiny_spec(CATALOG["clip-vit-b16"])
    spec = dataclasses.replace(spec, options={**spec.options, "text": False})
    assert not has_text_tower(spec)
    assert not embeds_text(build_embedder(spec, device="cpu", pretrained=False))


@pytest.mark.parametrize("name", ["osnet-x1_0-market", "dinov2-b14", "clipreid-vit-b16-market", "color-hist"])
def test_models_without_a_text_tower_say_so(name):
    assert not has_text_tower(CATALOG[name])


def test_color_words_put_a_colour_in_its_body_part():
    from raybench.models.images import load_pixels  # noqa: F401 - same pixel path as the pipeline

    embedder = build_embedder(CATALOG["color-words"])
    assert embeds_text(embedder) and not embeds_text(build_embedder(CATALOG["color-hist"]))
    height, width = embedder.preprocess.size
    red_top = np.zeros((1, height, width, 3), np.uint8)
    red_top[:, : int(0.55 * height)] = (180, 40, 40)
    red_top[:, int(0.55 * height):] = (28, 28, 32)
    blue_top = red_top.copy()
    blue_top[:, : int(0.55 * height)] = (80, 135, 195)
    images = embedder.embed(np.concatenate([red_top, blue_top]))
    texts = embedder.embed_text(["a person in a red top and black trousers", "a person in a blue top and black trousers"])
    assert texts.shape == (2, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    sim = texts @ images.T
    assert sim[0, 0] > sim[0, 1] + 0.05 and sim[1, 1] > sim[1, 0] + 0.05


def _tiny_hf_clip(folder):
    """A random tiny CLIPModel saved like a hub repo, with a CLIP BPE tokenizer over single
    letters (written here: no download)."""
    import json
    import string

    import torch
    import transformers

    letters = list(string.ascii_lowercase) + [".", ",", "-"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in letters + [f"{c}</w>" for c in letters]:
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=24)
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 24, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1, "projection_dim": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16, "projection_dim": 16},
        projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _hf_text_pair(folder, model_class: str, captions, padding, **preprocess):
    """(raybench's text features, the library's get_text_features) of one local checkpoint, the
    library side tokenized as the family is (``padding``); and the tokens."""
    import torch
    import transformers

    from raybench.specs import parse_model

    spec = parse_model({"name": "hf-tiny", "loader": "hf", "arch": str(folder), "weights": str(folder),
                        "paradigm": "language-aligned", "options": {"text": True},
                        "preprocess": {"size": [32, 32], **preprocess}}, "test")
    embedder = build_embedder(spec, device="cpu")
    assert has_text_tower(spec) and embeds_text(embedder)
    model = getattr(transformers, model_class).from_pretrained(folder).eval()
    tokens = transformers.AutoTokenizer.from_pretrained(folder)(captions, padding=padding, truncation=True,
                                                                return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(**tokens)
    expected = (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()
    return embedder.embed_text(captions), expected, tokens


def test_hf_clip_text_equals_get_text_features(tmp_path):
    folder = _tiny_hf_clip(tmp_path)
    got, expected, tokens = _hf_text_pair(folder, "CLIPModel", CAPTIONS, padding=True)
    assert got.shape[1] == 16
    assert tokens["input_ids"].shape[1] == 24  # the long captions are cut at the context length
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected[0] - expected[1]).max() > 1e-3
    # the same checkpoint without the option embeds images only
    from raybench.specs import parse_model

    assert not embeds_text(build_embedder(parse_model({**{"name": "v", "loader": "hf", "arch": str(folder),
                                                          "weights": str(folder), "paradigm": "baseline",
                                                          "preprocess": {"size": [32, 32]}}}, "test"), device="cpu"))


def _tiny_hf_siglip(folder):
    """A random tiny SiglipModel saved like a hub repo, with a fast word-level tokenizer
    (tokenizer.json, built here: no download, no sentencepiece). SigLIP pads to max_length."""
    import string

    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<unk>", "</s>", *string.ascii_lowercase, "a", "person", "in", "red", "blue", "top",
             "and", "black", "trousers", "with", "bag", "white", "shoes", "carrying", "long", "hair"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                                     eos_token="</s>", model_max_length=16,
                                                     model_input_names=["input_ids"])  # as SigLIP's tokenizer
    torch.manual_seed(0)
    config = transformers.SiglipConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "pad_token_id": 0, "eos_token_id": 2},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16})
    transformers.SiglipModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_hf_siglip_text_equals_get_text_features_padded_to_max_length(tmp_path):
    folder = _tiny_hf_siglip(tmp_path)
    captions = ["a person in a red top and black trousers", "a person in blue carrying a bag"]
    got, expected, tokens = _hf_text_pair(folder, "SiglipModel", captions, padding="max_length",
                                          mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    assert tokens["input_ids"].shape[1] == 16  # SigLIP's training padding: every caption to the context length
    assert set(tokens) == {"input_ids"}  # no attention mask: SigLIP attends to its padding, as trained
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected[0] - expected[1]).max() > 1e-3
