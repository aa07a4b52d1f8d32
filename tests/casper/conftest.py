"""Fixtures for the Casper tests: a tiny random release written to disk in the release's folder format and loaded
through the real loading code (float32, CPU)."""
import pytest

from casper_core import testing
from casper_core.loading import load_casper_pipeline


@pytest.fixture(scope="session")
def tiny_pipe(tmp_path_factory):
    """`CasperPipeline` with the release's layouts and tiny random weights (fp32, CPU, VAE tiling on as by default)."""
    release = testing.write_tiny_release(tmp_path_factory.mktemp("tiny_casper_release"), seed=0)
    return load_casper_pipeline(release.base_dir, release.casper_weights, dtype="fp32", device="cpu")


@pytest.fixture(scope="session")
def tiny_components(tiny_pipe):
    """The tiny pipeline's five components by name."""
    names = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    return {name: getattr(tiny_pipe, name) for name in names}


@pytest.fixture(scope="session")
def tiny_wan_release(tmp_path_factory):
    """A tiny Wan2.1-Fun-InP release (original file layout) with a full Casper state dict and a Casper LoRA."""
    from casper_core.wan_testing import write_tiny_wan_release

    return write_tiny_wan_release(tmp_path_factory.mktemp("tiny_wan_release"), seed=0)


@pytest.fixture(scope="session")
def tiny_wan_pipe(tiny_wan_release):
    """`WanCasperPipeline` with the full Casper weights (fp32, CPU), loaded through the real loading code."""
    from casper_core.wan_loading import load_wan_casper_pipeline

    return load_wan_casper_pipeline(tiny_wan_release.base_dir, tiny_wan_release.casper_weights, dtype="fp32",
                                    device="cpu")
