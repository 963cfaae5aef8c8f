"""The pixel stage: decode + resize with PIL exactly as the libraries' own eval transforms do."""

import io

import numpy as np
import pytest
from PIL import Image

from raybench.errors import ImageError
from raybench.models.images import load_pixels, load_pixels_bytes
from raybench.specs import Preprocess

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
def tensor_of(pixels, mean, std):
    """What raybench's embedders feed the model: ToTensor + Normalize of the uint8 pixels."""
    import torch

    x = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_squash_is_torchvision_resize(crops, interpolation):
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    pre = Preprocess(size=(256, 128), interpolation=interpolation, resize_mode="squash")
    resize = transforms.Resize((256, 128), interpolation=InterpolationMode(interpolation))
    for path in crops:
        expected = np.asarray(resize(Image.open(path).convert("RGB")))
        assert np.array_equal(load_pixels(path, pre), expected)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_shortest_crop_is_open_clip_eval_transform(crops, interpolation):
    from open_clip import image_transform

    pre = Preprocess(size=(224, 224), mean=CLIP_MEAN, std=CLIP_STD, interpolation=interpolation,
                     resize_mode="shortest_crop")
    transform = image_transform(224, is_train=False, mean=CLIP_MEAN, std=CLIP_STD, resize_mode="shortest",
                                interpolation=interpolation)
    for path in crops:
        expected = transform(Image.open(path))
        assert float((tensor_of(load_pixels(path, pre), CLIP_MEAN, CLIP_STD) - expected).abs().max()) < 1e-6


def test_shortest_crop_is_timm_eval_transform(crops):
    from timm.data import create_transform

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pre = Preprocess(size=(98, 98), mean=mean, std=std, interpolation="bicubic", resize_mode="shortest_crop")
    transform = create_transform(input_size=(3, 98, 98), crop_pct=1.0, interpolation="bicubic", mean=mean, std=std)
    for path in crops:
        expected = transform(Image.open(path).convert("RGB"))
        assert float((tensor_of(load_pixels(path, pre), mean, std) - expected).abs().max()) < 1e-6


@pytest.mark.parametrize("mode, timm_mode", [("shortest_crop", "center"), ("squash", "squash")])
def test_crop_pct_is_timm_eval_transform(crops, mode, timm_mode):
    """crop_pct < 1: resize to floor(size / crop_pct), then torchvision's centre crop, as timm."""
    from timm.data import create_transform

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pre = Preprocess(size=(98, 98), mean=mean, std=std, interpolation="bicubic", resize_mode=mode, crop_pct=0.9)
    transform = create_transform(input_size=(3, 98, 98), crop_pct=0.9, crop_mode=timm_mode, interpolation="bicubic",
                                 mean=mean, std=std)
    for path in crops:
        expected = transform(Image.open(path).convert("RGB"))
        assert float((tensor_of(load_pixels(path, pre), mean, std) - expected).abs().max()) < 1e-6


def test_crop_pct_and_offset_are_validated_and_keyed():
    from raybench.errors import SpecError
    from raybench.specs import parse_preprocess

    pre = parse_preprocess({"size": 224, "resize_mode": "shortest_crop", "crop_pct": 0.875, "crop_offset": "floor"}, "m")
    assert (pre.crop_pct, pre.crop_offset) == (0.875, "floor")
    assert pre.pixel_key == "224x224-bilinear-shortest_crop-pct0.875-floor"
    assert Preprocess(size=(224, 224)).pixel_key == "224x224-bilinear-squash"  # defaults keep old keys
    for bad, match in [({"crop_pct": 0}, "crop_pct"), ({"crop_pct": 1.5}, "crop_pct"),
                       ({"crop_pct": 0.9, "resize_mode": "pad"}, "pad never crops"),
                       ({"crop_offset": "ceil"}, "allowed: round, floor")]:
        with pytest.raises(SpecError, match=match):
            parse_preprocess({"size": 224, **bad}, "m")


def test_shortest_crop_non_square_covers_and_centres():
    image = Image.fromarray(np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3))
    out = load_pixels_bytes(_png(image), Preprocess(size=(80, 40), resize_mode="shortest_crop"))
    assert out.shape == (80, 40, 3)  # 40x40 scaled to 80x80, centre 40 columns kept


def test_pad_letterboxes_with_the_mean_colour():
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    mean = (0.5, 0.25, 0.0)
    out = load_pixels_bytes(_png(red), Preprocess(size=(128, 64), mean=mean, resize_mode="pad"))
    assert out.shape == (128, 64, 3)
    fill = [round(m * 255) for m in mean]
    assert (out[:32] == fill).all() and (out[-32:] == fill).all()  # bands above and below
    assert (out[32:96] == [255, 0, 0]).all()  # the whole image, aspect kept


def test_output_is_uint8_rgb_from_any_mode():
    for mode in ("L", "RGBA", "P", "CMYK"):
        out = load_pixels_bytes(_png(Image.new(mode, (30, 60)), "PNG" if mode != "CMYK" else "JPEG"),
                                Preprocess(size=(64, 32)))
        assert out.dtype == np.uint8 and out.shape == (64, 32, 3)


def test_bytes_and_path_agree(crops):
    pre = Preprocess(size=(64, 32), interpolation="bicubic")
    assert np.array_equal(load_pixels(crops[0], pre), load_pixels_bytes(crops[0].read_bytes(), pre))


def test_unreadable_images_raise_image_error_naming_the_file(tmp_path):
    pre = Preprocess(size=(64, 32))
    with pytest.raises(ImageError, match="missing.jpg: file not found"):
        load_pixels(tmp_path / "missing.jpg", pre)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        load_pixels(broken, pre)
    with pytest.raises(ImageError, match="shard-3/x.jpg"):
        load_pixels_bytes(b"garbage", pre, "shard-3/x.jpg")


def test_a_zero_byte_image_is_named_as_empty(tmp_path):
    """PIL's "cannot identify image file" hides why; a truncated copy often leaves 0 bytes."""
    pre = Preprocess(size=(64, 32))
    empty = tmp_path / "0002_c1s1_000451_03.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError) as caught:
        load_pixels(empty, pre)
    assert str(caught.value) == f"cannot read image {empty}: empty file (0 bytes)"
    with pytest.raises(ImageError) as caught:
        load_pixels_bytes(b"", pre, "shard-3/x.jpg")
    assert str(caught.value) == "cannot read image shard-3/x.jpg: empty file (0 bytes)"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ImageError) as caught:
        load_pixels(broken, pre)
    assert "empty" not in str(caught.value)


def _png(image, fmt="PNG"):
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()
