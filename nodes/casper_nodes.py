"""Casper nodes: load the model, build trimask jobs, remove objects with their effects.

Heavy libraries (diffusers, transformers) are imported only when Load Casper Model runs; Build Trimasks needs only
torch, so it works in a ComfyUI without diffusers.
"""
from __future__ import annotations

from ..casper_core import defaults
from ..casper_core.attention import ATTENTION_BACKENDS
from ..casper_core.memory import MEMORY_MODES
from ..casper_core.removal import removal_from_result
from ..casper_core.shared import MASK_DILATION
from . import comfy_integration as comfy
from .tensors import image_to_video, object_masks as to_object_masks, stack_to_image, video_to_image

CATEGORY = "Generative Omnimatte/Casper"
# The only choice of an empty dropdown. Picking it runs into a text error at run time (see VALIDATE_INPUTS).
NO_BASE_MODEL = "(none found: put CogVideoX-Fun-V1.5-5b-InP into models/CogVideoX_Fun)"
NO_CASPER_WEIGHTS = "(none found: put the Casper .safetensors into models/casper)"


class GenOmnimatteLoadCasperModel:
    DESCRIPTION = ("Load Casper (CogVideoX-Fun-V1.5-5b-InP fine-tuned to remove objects together with their shadows, "
                   "reflections and dust) from ComfyUI's models folder. Nothing is downloaded: put the base model "
                   "alibaba-pai/CogVideoX-Fun-V1.5-5b-InP (the whole diffusers folder) into "
                   "models/CogVideoX_Fun/CogVideoX-Fun-V1.5-5b-InP/ and the Casper transformer .safetensors (from "
                   "github.com/gen-omnimatte/gen-omnimatte-public) into models/casper/.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CASPER_MODEL",)
    RETURN_NAMES = ("casper_model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        comfy.register_model_folders()
        bases = comfy.list_base_models() or [NO_BASE_MODEL]
        weights = comfy.list_casper_weights() or [NO_CASPER_WEIGHTS]
        return {"required": {
            "base_model": (bases, {"tooltip": "The CogVideoX-Fun-V1.5-5b-InP diffusers folder (Hugging Face "
                                              "alibaba-pai/CogVideoX-Fun-V1.5-5b-InP: transformer/, vae/, "
                                              "text_encoder/, tokenizer/, scheduler/) under models/CogVideoX_Fun/, "
                                              "models/CogVideo/ or models/diffusers/."}),
            "casper_weights": (weights, {"tooltip": "The Casper transformer (.safetensors state dict, or a diffusers "
                                                    "transformer folder) under models/casper/, e.g. "
                                                    "casper_cogvideox_fun_v1.5.safetensors (github "
                                                    "gen-omnimatte/gen-omnimatte-public, 'Casper model weights')."}),
            "dtype": (list(defaults.DTYPES), {"default": defaults.DTYPES[0], "tooltip": "Weight precision. bf16 halves memory; fp16 "
                                                                        "is not offered (CogVideoX 1.5 overflows)."}),
            "memory_mode": (list(MEMORY_MODES), {"default": "model_cpu_offload",
                                                    "tooltip": "Where weights live: gpu (fastest, ~24 GB), "
                                                               "model_cpu_offload (16-24 GB GPUs), fp8 modes, "
                                                               "group/sequential offload (smallest GPUs, slowest)."}),
            "attention_backend": (list(ATTENTION_BACKENDS), {"default": "auto",
                                                             "tooltip": "Attention kernel: auto picks cuDNN on Hopper, "
                                                                        "else PyTorch's choice; sage = SageAttention "
                                                                        "(pip install sageattention; CUDA; 8-bit, "
                                                                        "slightly different results; on an H200 no "
                                                                        "faster than auto)."}),
            "vae_tiling": ("BOOLEAN", {"default": True, "tooltip": "Encode/decode the VAE in tiles (lower peak memory, "
                                                                   "same result up to tile seams)."}),
        }, "optional": {
            "allow_partial_weights": ("BOOLEAN", {
                "default": False,
                "tooltip": "Off: Casper weights that replace fewer than 90 % of the transformer's tensors are refused "
                           "(such a file, e.g. a LoRA or a checkpoint with other key names, would leave the base "
                           "model running). On: load a partial file on purpose; the base model fills in the rest."}),
            "compile": ("BOOLEAN", {
                "default": False,
                "tooltip": "torch.compile each transformer block (CUDA + Triton): faster steps; the first run of each "
                           "new size compiles for several seconds (cached afterwards). Not with sequential_offload or "
                           "the fp8 storage modes."}),
            "fp8_compute": ("BOOLEAN", {
                "default": False,
                "tooltip": "Matrix products of the transformer blocks in fp8 (GPUs of compute capability 8.9+: RTX 40, "
                           "H100, newer): faster with compile, half the weight memory, slightly different results."}),
        }}

    @classmethod
    # Listing an input here replaces ComfyUI's own check of it (no **kwargs: that would switch off every check).
    def VALIDATE_INPUTS(cls, base_model, casper_weights):
        # Accept every choice here, the 'nothing installed' entries and names saved in a workflow but missing here:
        # a failed validation shows only a red outline on the node when another output of the workflow is valid
        # (ComfyUI then runs that part), so missing files are reported by load() as a run-time error, whose text
        # ComfyUI shows in full.
        return True

    def load(self, base_model, casper_weights, dtype, memory_mode, attention_backend, vae_tiling,
             allow_partial_weights=False, compile=False, fp8_compute=False):  # noqa: A002  (the widget's name)
        # 1. Cheap checks first: folders and file layout, before any weight is read
        _check_model_choices(base_model, casper_weights)
        base_dir = comfy.resolve_base_model(base_model)
        weights = comfy.resolve_casper_weights(casper_weights)
        comfy.require("diffusers", node="Load Casper Model")
        comfy.require("transformers", node="Load Casper Model")
        from ..casper_core import loading, wan_loading
        if wan_loading.is_wan_base_model(base_dir):  # a Wan2.1-Fun-InP release folder: Casper on Wan
            if compile or fp8_compute:  # CogVideoX-Fun options: refused rather than silently ignored
                raise ValueError(f"compile and fp8_compute are options of the CogVideoX-Fun base model; {base_model} "
                                 "is a Wan2.1-Fun model: switch them off")
            comfy.free_memory()
            return (wan_loading.load_wan_casper_pipeline(
                base_dir, weights, dtype=dtype, memory_mode=memory_mode, device=comfy.torch_device(),
                attention_backend=attention_backend, vae_tiling=vae_tiling, allow_partial=bool(allow_partial_weights)),)
        try:
            loading.check_base_dir(base_dir)
            loading.check_casper_weights(weights)
        except FileNotFoundError as error:
            raise FileNotFoundError(comfy.missing_models_message(str(error))) from error
        # 2. Load (the loader refuses weights made for another architecture, naming the mismatch, and weights that
        #    replace too little of the transformer unless allow_partial_weights)
        comfy.free_memory()
        pipeline = loading.load_casper_pipeline(base_dir, weights, dtype=dtype, memory_mode=memory_mode,
                                                device=comfy.torch_device(), attention_backend=attention_backend,
                                                vae_tiling=vae_tiling, allow_partial=bool(allow_partial_weights),
                                                compile=bool(compile), fp8_compute=bool(fp8_compute))
        return (pipeline,)


def _check_model_choices(base_model, casper_weights) -> None:
    """Raise naming both model files when a dropdown holds its 'nothing installed' entry or is empty."""
    problems = []
    if base_model in (NO_BASE_MODEL, "", None):
        where = ", ".join(str(root) for name in comfy.BASE_MODEL_FOLDER_NAMES for root in comfy.folder_roots(name))
        problems.append(f"No base model found (searched {where}).")
    if casper_weights in (NO_CASPER_WEIGHTS, "", None):
        where = ", ".join(str(root) for root in comfy.folder_roots(comfy.CASPER_FOLDER_NAME))
        problems.append(f"No Casper weights found (searched {where}).")
    if problems:
        raise FileNotFoundError(comfy.missing_models_message(" ".join(problems)))


class GenOmnimatteBuildTrimasks:
    DESCRIPTION = ("Turn object masks into Casper's trimask jobs: one clean-background job (remove every object) and "
                   "one solo job per object (keep it, remove the others). Also returns every trimask as a picture "
                   "(white remove, grey neutral, black keep).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("TRIMASK_JOBS", "IMAGE", "STRING")
    RETURN_NAMES = ("trimask_jobs", "trimask_preview", "job_names")
    OUTPUT_TOOLTIPS = ("The jobs for Casper Remove.", "Every trimask, job after job (jobs × frames).",
                       "The job names, comma separated.")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "video": ("IMAGE", {"tooltip": "The input video (frames as an IMAGE batch)."}),
            "object_masks": ("MASK", {"tooltip": "Object masks, 1 = object: one object's MASK [frames,H,W], or several "
                                                 "objects one after another (Combine Object Masks, Masks from Label "
                                                 "Map)."}),
            "dilate": ("INT", {"default": MASK_DILATION, "min": 0, "max": 101, "step": 1,
                               "tooltip": "Grow the masks by this many pixels (square footprint) so edges and "
                                          "motion blur are covered. The paper uses 11."}),
            "jobs": (["background + solos", "background only"], {
                "default": "background + solos",
                "tooltip": "'background only' just removes the objects (with their effects); 'background + solos' "
                           "also makes one video per object, needed to fit layers."}),
        }, "optional": {
            "occluders": ("STRING", {
                "default": "",
                "tooltip": "Occluded foreground (paper, supplement Sec. A): who is in front of whom, so an object's "
                           "solo also removes what hides it and Casper completes it. '1,0' = front-to-back order of "
                           "the objects (0-based, nearest first); '0:1,2; 3:1' = per object the objects in front of "
                           "it. Give an occluder (a pole) its own mask. Empty = as released."}),
        }}

    def build(self, video, object_masks, dilate, jobs, occluders=""):
        from ..casper_core.trimask import build_trimask_jobs, parse_occluders
        frames, height, width = video.shape[:3]
        masks = to_object_masks(object_masks, frames, (height, width), "object_masks")[:, :, 0]
        trimask_jobs = build_trimask_jobs(video[..., :3].float(), masks, dilate=int(dilate),
                                          occluders=parse_occluders(occluders))
        if jobs == "background only":
            trimask_jobs = trimask_jobs.select(["background"])
        preview = trimask_jobs.trimasks.flatten(0, 1).unsqueeze(-1).expand(-1, -1, -1, 3).contiguous().cpu()
        return (trimask_jobs, preview, ", ".join(trimask_jobs.names))


class GenOmnimatteCasperRemove:
    DESCRIPTION = ("Run Casper on every trimask job: the clean background (every object removed with its shadow, "
                   "reflection, dust) and, per object, a video with only that object. Any frame count and size: "
                   "Casper runs at the working width × height (the video and trimasks are resized to it) and the "
                   "results come back at the input's size and length. While it runs, the node shows a rough "
                   "preview of the middle frame at every sampling step, and its progress bar also covers the VAE "
                   "decode.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("clean_background", "solo_videos")
    OUTPUT_TOOLTIPS = ("The video with every object removed.",
                       "One video per object (objects one after another, frames × objects); with one object, the "
                       "input video itself.")
    FUNCTION = "remove"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "casper_model": ("CASPER_MODEL", {"tooltip": "From Load Casper Model."}),
            "video": ("IMAGE", {"tooltip": "The input video (the same one the trimasks were built from)."}),
            "trimask_jobs": ("TRIMASK_JOBS", {"tooltip": "From Build Trimasks."}),
            "prompt": ("STRING", {"default": defaults.PROMPT, "multiline": False,
                                  "tooltip": "What the result should show; the paper uses 'empty scene'."}),
            "steps": ("INT", {"default": defaults.STEPS, "min": 1, "max": 500,
                              "tooltip": "DDIM denoising steps (paper: 50)."}),
            "seed": ("INT", {"default": defaults.SEED, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                             "tooltip": "Noise seed; same inputs and seed give the same result (paper: 0)."}),
            "window_frames": ("INT", {"default": defaults.WINDOW_FRAMES, "min": 5, "max": 197, "step": 4,
                                      "tooltip": "Frames per temporal window (4k+1). Longer videos are processed in "
                                                 "overlapping windows and blended."}),
            "overlap_frames": ("INT", {"default": defaults.OVERLAP_FRAMES, "min": 0, "max": 96, "step": 4,
                                       "tooltip": "Frames shared by neighbouring windows. Must be shorter than the "
                                                  "window only when the clip needs more than one window."}),
            "width": ("INT", {"default": defaults.WORK_SIZE[1], "min": 0, "max": 4096, "step": 16,
                              "tooltip": "Working width (multiple of 16); the video is resized to it and the "
                                         "results back to the input size. 672×384 is what Casper was trained at; "
                                         "0 = the input width (rounded to 16)."}),
            "height": ("INT", {"default": defaults.WORK_SIZE[0], "min": 0, "max": 4096, "step": 16,
                               "tooltip": "Working height (multiple of 16); 0 = the input height (rounded to 16)."}),
        }, "optional": {
            "negative_prompt": ("STRING", {"default": "", "multiline": False,
                                           "tooltip": "Used only when guidance_scale > 1."}),
            "guidance_scale": ("FLOAT", {"default": 1.0, "min": 1.0, "max": 20.0, "step": 0.5,
                                         "tooltip": "Classifier-free guidance; 1 = none (the paper's setting)."}),
            "batch_size": ("INT", {"default": 0, "min": 0, "max": 64,
                                   "tooltip": "Jobs denoised together; 0 = all at once (fastest). 1 needs the least "
                                              "GPU memory; the result is the same either way."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, window_frames, overlap_frames):
        # Listing these here replaces ComfyUI's own range checks of them, so they are all done here.
        if not isinstance(window_frames, int) or not 5 <= window_frames <= 197 or (window_frames - 1) % 4:
            return f"window_frames must be 4k+1 frames between 5 and 197 (85 as released), got {window_frames!r}"
        if not isinstance(overlap_frames, int) or not 0 <= overlap_frames <= 96 or overlap_frames % 4:
            return f"overlap_frames must be a multiple of 4 between 0 and 96 (16 as released), got {overlap_frames!r}"
        # overlap_frames ≥ window_frames is fine for a clip that fits one window; the pipeline refuses it only when
        # the clip needs several windows (the clip length is not known here).
        return True

    def remove(self, casper_model, video, trimask_jobs, prompt, steps, seed, window_frames, overlap_frames,
               width, height, negative_prompt="", guidance_scale=1.0, batch_size=0):
        frames, in_height, in_width = video.shape[:3]
        if tuple(trimask_jobs.trimasks.shape[1:]) != (frames, in_height, in_width):
            raise ValueError(f"trimask_jobs are {tuple(trimask_jobs.trimasks.shape[1:])} (frames, H, W) but the video "
                             f"is {(frames, in_height, in_width)}; build the trimasks from this video")
        # The working size: the video and trimasks are resized to it, the results back to the input's size.
        work_height = int(height) or max(16, round(in_height / 16) * 16)
        work_width = int(width) or max(16, round(in_width / 16) * 16)
        if work_height % 16 or work_width % 16:
            raise ValueError(f"width × height {work_width}×{work_height} must be multiples of 16 (0 = the input's)")
        # One bar over sampling and the VAE decode, with a latent preview of the clean video at every step.
        progress = comfy.Progress(steps * len(trimask_jobs))
        result = casper_model(video[..., :3].float(), trimask_jobs, prompt=prompt, negative_prompt=negative_prompt,
                              guidance_scale=guidance_scale, steps=steps, seed=seed, window_frames=window_frames,
                              overlap_frames=overlap_frames, batch_size=int(batch_size) or None,
                              live_progress=progress, height=work_height, width=work_width)
        comfy.free_memory()
        removal = removal_from_result(result, image_to_video(video, "video"))  # one object: the input is its solo
        return (video_to_image(removal.background), stack_to_image(removal.solos))
