"""What casper_core takes from omnimatte_core: the removal contract, the mask dilation and the core input checks.

The dependency runs one way only — casper_core may import omnimatte_core, never the reverse — so these live on the
layer side and are imported here, in one place. Inside the ComfyUI pack both cores are subpackages of the pack (any
folder name), reached relatively; imported on its own (installed, the tests, the command line) casper_core finds
omnimatte_core as a top-level package.
"""
try:
    from ..omnimatte_core import checks, masks, removal
except ImportError:  # no parent package: casper_core is top-level, and so is omnimatte_core
    from omnimatte_core import checks, masks, removal

MASK_DILATION = masks.MASK_DILATION
Removal = removal.Removal
check_masks = checks.check_masks
check_video = checks.check_video
dilate_masks = masks.dilate_masks

__all__ = ["MASK_DILATION", "Removal", "check_masks", "check_video", "dilate_masks"]
