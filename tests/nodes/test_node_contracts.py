"""Every node's declared contract: what ComfyUI reads from the class before anything runs."""
import inspect
import sys

import pytest

CUSTOM_TYPES = {"CASPER_MODEL", "TRIMASK_JOBS", "OMNIMATTE_LAYERS"}
CORE_TYPES = {"IMAGE", "MASK", "INT", "FLOAT", "STRING", "BOOLEAN"}


def all_nodes(pack):
    return sorted(pack.NODE_CLASS_MAPPINGS.items())


def test_mappings_cover_the_same_nodes_with_prefixed_names(pack):
    assert len(pack.NODE_CLASS_MAPPINGS) == 15
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in all_nodes(pack):
        assert name.startswith("GenOmnimatte"), name
        assert cls.__name__ == name  # the type name is the class name: renaming one shows up in review


def test_node_type_names_never_change(pack):
    # Saved workflows refer to these ids; removing or renaming one breaks users' files.
    shipped = {"GenOmnimatteDemoScene", "GenOmnimatteCombineObjectMasks", "GenOmnimatteMasksFromLabelMap",
               "GenOmnimatteLoadCasperModel", "GenOmnimatteBuildTrimasks", "GenOmnimatteCasperRemove",
               "GenOmnimatteCleanPlate", "GenOmnimatteFitLayers", "GenOmnimatteUpscaleLayers",
               "GenOmnimatteOrderLayersByDepth", "GenOmnimatteCompositeLayers", "GenOmnimatteEditLayers",
               "GenOmnimatteLayersToImage", "GenOmnimattePreviewLayers", "GenOmnimatteSaveLayers"}
    assert shipped <= set(pack.NODE_CLASS_MAPPINGS)


@pytest.mark.parametrize("section", ["required", "optional"])
def test_every_input_has_a_tooltip_and_a_known_type(pack, section):
    for name, cls in all_nodes(pack):
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"}, name
        for input_name, declaration in spec.get(section, {}).items():
            kind, options = declaration[0], declaration[1] if len(declaration) > 1 else {}
            assert options.get("tooltip"), f"{name}.{input_name} has no tooltip"
            if isinstance(kind, list):
                assert kind and options.get("default", kind[0]) in kind, f"{name}.{input_name}: default not listed"
            else:
                assert kind in CORE_TYPES | CUSTOM_TYPES, f"{name}.{input_name}: type {kind}"
                if kind in ("INT", "FLOAT"):
                    assert options["min"] <= options["default"] <= options["max"], f"{name}.{input_name}"


def test_returns_functions_categories_descriptions(pack):
    for name, cls in all_nodes(pack):
        assert isinstance(cls.RETURN_TYPES, tuple)
        assert set(cls.RETURN_TYPES) <= CORE_TYPES | CUSTOM_TYPES, name
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES), name
        if hasattr(cls, "OUTPUT_TOOLTIPS"):
            assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES), name
        function = getattr(cls, cls.FUNCTION)
        assert callable(function), name
        # ComfyUI calls the function with every declared input as a keyword: each must be accepted
        parameters = inspect.signature(function).parameters
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for input_name in spec.get(section, {}):
                assert input_name in parameters or any(p.kind == p.VAR_KEYWORD for p in parameters.values()), \
                    f"{name}.{cls.FUNCTION} does not take {input_name}"
        for input_name in spec.get("required", {}):
            if input_name in parameters:
                assert parameters[input_name].default is inspect.Parameter.empty, f"{name}.{input_name}"
        assert cls.CATEGORY.startswith("Generative Omnimatte/"), name
        assert len(cls.DESCRIPTION) > 40, name


def test_only_save_layers_is_an_output_node(pack):
    outputs = [name for name, cls in all_nodes(pack) if getattr(cls, "OUTPUT_NODE", False)]
    assert outputs == ["GenOmnimatteSaveLayers"]


def test_custom_types_only_where_core_types_cannot_carry_the_data(pack):
    used = {t for _, cls in all_nodes(pack) for t in cls.RETURN_TYPES}
    assert used & CUSTOM_TYPES == CUSTOM_TYPES
    # Every node that produces layers also has a way out to core types
    assert "IMAGE" in pack.NODE_CLASS_MAPPINGS["GenOmnimatteLayersToImage"].RETURN_TYPES
    assert "MASK" in pack.NODE_CLASS_MAPPINGS["GenOmnimatteLayersToImage"].RETURN_TYPES


IMPORT_WITHOUT_DIFFUSERS = r"""
import importlib.abc, importlib.util, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("diffusers", "transformers"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Block())
spec = importlib.util.spec_from_file_location("any_folder_name", sys.argv[1] + "/__init__.py",
                                              submodule_search_locations=[sys.argv[1]])
pack = importlib.util.module_from_spec(spec); sys.modules[spec.name] = pack; spec.loader.exec_module(pack)
assert len(pack.NODE_CLASS_MAPPINGS) == 15
assert "diffusers" not in sys.modules and "transformers" not in sys.modules
assert "nodes" not in sys.modules  # never shadows ComfyUI's top-level nodes module
from any_folder_name.nodes.comfy_integration import MissingDependency, require
try:
    require("diffusers", node="Load Casper Model")
except MissingDependency as error:
    print("MESSAGE:", error)
"""


def test_pack_imports_without_diffusers_and_names_what_to_install(tmp_path):
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", IMPORT_WITHOUT_DIFFUSERS, str(root)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install diffusers" in result.stdout and "Load Casper Model" in result.stdout


def test_validate_inputs_never_switches_off_comfyuis_own_checks(pack):
    # ComfyUI skips its own type/range/choice checks for every input a VALIDATE_INPUTS accepts; with **kwargs that
    # would be all of them.
    for name, cls in all_nodes(pack):
        if hasattr(cls, "VALIDATE_INPUTS"):
            signature = inspect.signature(cls.VALIDATE_INPUTS)
            assert not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()), name
            declared = {n for section in ("required", "optional") for n in cls.INPUT_TYPES().get(section, {})}
            assert set(signature.parameters) <= declared, name


def test_validate_inputs_reports_cheap_problems(pack):
    save = pack.NODE_CLASS_MAPPINGS["GenOmnimatteSaveLayers"]
    ok = {"filename_prefix": "omnimatte", "png": True, "alpha_video": "webm", "previews": True}
    assert save.VALIDATE_INPUTS(**ok) is True
    assert "filename_prefix" in save.VALIDATE_INPUTS(**{**ok, "filename_prefix": "../escape"})
    assert "alpha_video" in save.VALIDATE_INPUTS(**{**ok, "alpha_video": "gif"})
    assert "at least one" in save.VALIDATE_INPUTS(filename_prefix="x", png=False, alpha_video="none", previews=False)
    labels = pack.NODE_CLASS_MAPPINGS["GenOmnimatteMasksFromLabelMap"]
    assert labels.VALIDATE_INPUTS(values="auto") is True and labels.VALIDATE_INPUTS(values="1, 2") is True
    assert "values" in labels.VALIDATE_INPUTS(values="red")
    assert "values" in labels.VALIDATE_INPUTS(values="0,300")
    remove = pack.NODE_CLASS_MAPPINGS["GenOmnimatteCasperRemove"]
    assert remove.VALIDATE_INPUTS(window_frames=85, overlap_frames=16) is True
    # an overlap ≥ the window is refused by the pipeline, and only when the clip needs several windows
    assert remove.VALIDATE_INPUTS(window_frames=13, overlap_frames=16) is True
    assert "overlap_frames" in remove.VALIDATE_INPUTS(window_frames=21, overlap_frames=26)
    assert "4k+1" in remove.VALIDATE_INPUTS(window_frames=84, overlap_frames=16)


def test_model_choices_pass_validation_so_missing_files_are_reported_as_text(pack):
    # A failed validation is shown only as a red outline when another output of the workflow is valid (ComfyUI runs
    # that part and sends no message): model files are checked when the node runs, whose error text ComfyUI shows.
    load = pack.NODE_CLASS_MAPPINGS["GenOmnimatteLoadCasperModel"]
    from importlib import import_module
    casper_nodes = import_module("generative_omnimatte_pack.nodes.casper_nodes")
    assert load.VALIDATE_INPUTS(base_model=casper_nodes.NO_BASE_MODEL,
                                casper_weights=casper_nodes.NO_CASPER_WEIGHTS) is True
    assert load.VALIDATE_INPUTS(base_model="CogVideoX_Fun/not_here", casper_weights="not_here.safetensors") is True


def test_readme_describes_the_label_map_tolerance_default(pack):
    from pathlib import Path
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    spec = pack.NODE_CLASS_MAPPINGS["GenOmnimatteMasksFromLabelMap"].INPUT_TYPES()["required"]["tolerance"]
    assert spec[1]["default"] == -1
    assert "`tolerance` -1, the default, is automatic" in readme
    assert "~12 for lossy" not in readme  # the advice from before the automatic default
