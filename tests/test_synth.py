from dataclasses import replace

import numpy as np
import pytest
from conftest import config

from eiad.errors import ConfigError
from eiad.sources.demo.defects import DEFECT_KINDS, DEFECTS
from eiad.sources.demo.products import PRODUCTS
from eiad.sources.demo.render import RenderConfig, make_part, random_pose, render

CONFIG = config(RenderConfig, "sources.demo.fetch.render")


def _render(product, defect, seed):
    rng = np.random.default_rng(seed)
    part = make_part(product, defect, CONFIG, rng)
    return part, render(part, random_pose(rng), CONFIG, rng)


def test_at_least_three_products_and_five_defects():
    assert len(PRODUCTS) >= 3 and len(DEFECTS) >= 5


def test_same_seed_same_pixels_and_other_seed_other_pixels():
    _, first = _render("washer", "scratch", 7)
    _, again = _render("washer", "scratch", 7)
    _, other = _render("washer", "scratch", 8)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.mask, again.mask)
    assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize("product", PRODUCTS)
def test_normal_images_vary(product):
    images = [_render(product, None, seed)[1] for seed in range(4)]
    assert all(not c.mask.any() for c in images)
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.abs(images[a].image.astype(int) - images[b].image.astype(int)).mean() > 3


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("defect", DEFECTS)
def test_defect_mask_size_and_contrast(product, defect):
    low, high = CONFIG.defect_area
    for seed in range(3):
        rng = np.random.default_rng(seed)
        part = make_part(product, defect, CONFIG, rng)
        pose = random_pose(rng)
        damaged = render(part, pose, CONFIG, np.random.default_rng(1))
        clean = render(replace(part, defect=None), pose, CONFIG, np.random.default_rng(1))
        mask = damaged.mask
        assert mask.any() and not clean.mask.any()
        part_pixels = (np.abs(clean.image.astype(int) - _background(pose)).max(axis=2) > 20).sum()
        assert 0.5 * low <= mask.sum() / part_pixels <= 1.5 * high, (product, defect, seed)
        inside = damaged.image.astype(float).mean(axis=2)[mask].mean()
        reference = clean.image.astype(float).mean(axis=2)[mask].mean()
        if DEFECT_KINDS[defect].look == "dark":
            assert reference - inside > 0.6 * CONFIG.dark_contrast[0] * pose.gain, (product, defect, seed)
        elif DEFECT_KINDS[defect].look == "bright":
            assert inside - reference > 25, (product, defect, seed)
        else:  # a missing part shows the background where the part was
            assert abs(inside - _background(pose).mean()) < 15, (product, defect, seed)


def _background(pose):
    return np.full((CONFIG.image_size, CONFIG.image_size, 3), pose.background)


def test_defect_area_follows_params():
    small = config(RenderConfig, "sources.demo.fetch.render", defect_area=(0.02, 0.03))
    large = config(RenderConfig, "sources.demo.fetch.render", defect_area=(0.12, 0.15))
    rng = np.random.default_rng(0)
    sizes = {}
    for name, render_config in (("small", small), ("large", large)):
        areas = []
        for _ in range(5):
            part = make_part("plate", "hole", render_config, rng)
            capture = render(part, random_pose(rng), render_config, rng)
            areas.append(capture.mask.sum())
        sizes[name] = np.mean(areas)
    assert sizes["large"] > 3 * sizes["small"]


def test_bad_render_config_is_rejected():
    with pytest.raises(ConfigError):
        config(RenderConfig, "sources.demo.fetch.render", defect_area=(0.2, 0.1))
    with pytest.raises(ConfigError):
        config(RenderConfig, "sources.demo.fetch.render", image_size=8)
