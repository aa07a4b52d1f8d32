"""Shared test fixtures.

The node layer is imported the way ComfyUI imports it: the repository root is loaded as one package
(under a name of our choosing), so `nodes/` is only ever reached relatively and never shadows
ComfyUI's top-level `nodes` module.
"""
import importlib.util
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "generative_omnimatte_pack"


def load_pack():
    """Import the repository root as the package `generative_omnimatte_pack` (as ComfyUI would)."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack():
    return load_pack()
