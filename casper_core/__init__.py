"""casper_core — trimasks and the Casper object-and-effect removal pipeline (PyTorch + diffusers, no ComfyUI)."""
from .pipeline import CasperPipeline, CasperResult
from .removal import remove_objects
from .trimask import TrimaskJobs, build_trimask_jobs
from .loading import LoadReport, load_casper_pipeline
from .memory import MEMORY_MODES

__all__ = ["CasperPipeline", "CasperResult", "TrimaskJobs", "build_trimask_jobs", "remove_objects"]
__all__ += ["LoadReport", "MEMORY_MODES", "load_casper_pipeline"]
