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
