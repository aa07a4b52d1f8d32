"""Generative Omnimatte — ComfyUI custom node pack.

ComfyUI imports this file as the package of the folder the pack lives in (`custom_nodes/<any name>/`).
Everything is imported relatively from here; nothing touches `sys.path`, and heavy libraries
(diffusers, transformers) load only when a node that needs them first runs.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = None
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
