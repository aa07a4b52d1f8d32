"""The file formats of the real releases Casper loads: the configs of the CogVideoX-Fun-V1.5-5b-InP base model's
components and the names its files go by.

Product constants (the release as published), kept apart from the test support that writes tiny copies of it
(`casper_core.testing`) and used by it and by the full-size benchmark (`bench/bench_casper.py`).
"""
from __future__ import annotations

BASE_MODEL_ID = "alibaba-pai/CogVideoX-Fun-V1.5-5b-InP"
"""The base model on Hugging Face: a diffusers folder with transformer/, vae/, text_encoder/, tokenizer/, scheduler/."""
BASE_MODEL_NAME = "CogVideoX-Fun-V1.5-5b-InP"
"""The base model's folder name."""
CASPER_WEIGHTS_NAME = "casper_cogvideox_fun_v1.5.safetensors"
"""The Casper transformer's file name (a state dict with the transformer's keys)."""

# The release's scheduler file (CogVideoX1.5-5B / CogVideoX-Fun-V1.5-5b-InP `scheduler/scheduler_config.json`).
RELEASE_SCHEDULER_CONFIG = {
    "_class_name": "CogVideoXDDIMScheduler",
    "_diffusers_version": "0.31.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "snr_shift_scale": 1.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}

# The real CogVideoX-Fun-V1.5-5b-InP transformer config (key set of CogVideoX 1.5 + add_noise_in_inpaint_model).
RELEASE_TRANSFORMER_CONFIG = {
    "_class_name": "CogVideoXTransformer3DModel",
    "_diffusers_version": "0.31.0",
    "activation_fn": "gelu-approximate",
    "add_noise_in_inpaint_model": True,
    "attention_bias": True,
    "attention_head_dim": 64,
    "dropout": 0.0,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 33,
    "max_text_seq_length": 226,
    "norm_elementwise_affine": True,
    "norm_eps": 1e-05,
    "num_attention_heads": 48,
    "num_layers": 42,
    "out_channels": 16,
    "patch_bias": False,
    "patch_size": 2,
    "patch_size_t": 2,
    "sample_frames": 81,
    "sample_height": 300,
    "sample_width": 300,
    "spatial_interpolation_scale": 1.875,
    "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096,
    "time_embed_dim": 512,
    "timestep_activation_fn": "silu",
    "use_learned_positional_embeddings": False,
    "use_rotary_positional_embeddings": True,
}

# The CogVideoX 1.5 VAE config (diffusers' AutoencoderKLCogVideoX defaults + the release's scaling).
RELEASE_VAE_CONFIG = {
    "_class_name": "AutoencoderKLCogVideoX",
    "_diffusers_version": "0.31.0",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 256, 512],
    "down_block_types": ["CogVideoXDownBlock3D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "invert_scale_latents": True,
    "latent_channels": 16,
    "latents_mean": None,
    "latents_std": None,
    "layers_per_block": 3,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_height": 768,
    "sample_width": 1360,
    "scaling_factor": 0.7,
    "shift_factor": None,
    "temporal_compression_ratio": 4,
    "up_block_types": ["CogVideoXUpBlock3D"] * 4,
    "use_post_quant_conv": False,
    "use_quant_conv": False,
}

# T5 v1.1 XXL encoder (the text encoder of CogVideoX).
RELEASE_T5_CONFIG = {
    "architectures": ["T5EncoderModel"],
    "model_type": "t5",
    "d_ff": 10240,
    "d_kv": 64,
    "d_model": 4096,
    "decoder_start_token_id": 0,
    "dense_act_fn": "gelu_new",
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "is_gated_act": True,
    "layer_norm_epsilon": 1e-06,
    "num_decoder_layers": 24,
    "num_heads": 64,
    "num_layers": 24,
    "output_past": True,
    "pad_token_id": 0,
    "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 32128,
}
