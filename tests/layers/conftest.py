"""Fixtures for the layer tests: small synthetic scenes with exact ground truth (shared per module)."""
import pytest

from omnimatte_core.layers import Layers
from omnimatte_core.synthetic import make_scene


@pytest.fixture(scope="module")
def scene():
    """3 objects (shadow, reflection, dust), 16 frames of 64x112; objects 0 and 1 swap depth mid-clip."""
    return make_scene(seed=0, num_objects=3, frames=16, height=64, width=112)


@pytest.fixture(scope="module")
def gt_layers(scene):
    """The scene's ground-truth layers as a Layers container."""
    return Layers(scene.layer_rgb, scene.layer_alpha, scene.background, scene.order,
                  names=["shadow_blob", "reflection_blob", "dust_blob"], masks=scene.masks)
