"""The real OSNet x0.25 weights in ../shared/fixtures/osnet, loaded as local-path models through
raybench's torchreid loader, give torchreid's own features on the real Market-1501 crops:
torchreid build_model + load_state_dict, eval mode, Resize(256, 128) + ToTensor + ImageNet
normalisation (torchreid's test transform)."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from conftest import MARKET_MINI, OSNET_DIR, needs_fixtures
from raybench.catalog import load_model_catalog
from raybench.models import build_embedder
from raybench.models.images import load_pixels

pytestmark = [needs_fixtures, pytest.mark.skipif(not OSNET_DIR.is_dir(), reason=f"{OSNET_DIR} is absent")]


@pytest.mark.parametrize("checkpoint", ["osnet_x0_25_market1501.pth", "osnet_x0_25_msmt17.pth"])
def test_fixture_osnet_gives_torchreids_own_features(checkpoint):
    import torch
    import torchreid

    path = OSNET_DIR / checkpoint
    spec = dataclasses.replace(load_model_catalog()["osnet-x0_25-market"], weights=str(path))
    embedder = build_embedder(spec, device="cpu")
    crops = sorted((MARKET_MINI / "query").glob("*.jpg"))[:16]
    ours = embedder.embed(np.stack([load_pixels(p, spec.preprocess) for p in crops]))

    state = torch.load(path, map_location="cpu", weights_only=True)  # the legacy pickle loads safely
    model = torchreid.models.build_model("osnet_x0_25", num_classes=state["classifier.weight"].shape[0],
                                         pretrained=False)
    model.load_state_dict(state)  # strict: every one of the 567 keys
    model.eval()
    _, transform = torchreid.data.transforms.build_transforms(256, 128)
    with torch.no_grad():
        expected = model(torch.stack([transform(Image.open(p).convert("RGB")) for p in crops])).numpy()
    assert ours.shape == expected.shape == (len(crops), 512)
    assert np.abs(ours - expected).max() < 1e-5
    assert embedder.num_params == spec.options["params"]
