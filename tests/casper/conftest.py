"""Fixtures for the Casper tests: a tiny random pipeline built in memory (release layouts, tiny widths)."""
import pytest
import torch

from casper_core import CasperPipeline, testing


def build_tiny_components(tmp_path, *, add_noise_in_inpaint_model=True):
    """Transformer, VAE, T5, tokenizer and scheduler with the release's layouts and tiny random weights (fp32, eval)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel, DDIMScheduler
    from transformers import T5Config, T5EncoderModel

    tokenizer = testing.write_tokenizer(tmp_path / "tokenizer")
    t5_config = testing.tiny_t5_config(vocab_size=(len(tokenizer) + 7) // 8 * 8)
    t5_config = {key: value for key, value in t5_config.items() if key != "architectures"}
    text_encoder = testing.randomize_(T5EncoderModel(T5Config(**t5_config)), 1).eval()
    transformer_config = testing.tiny_transformer_config(text_embed_dim=t5_config["d_model"])
    transformer_config = {k: v for k, v in transformer_config.items() if not k.startswith("_")}
    transformer_config.pop("add_noise_in_inpaint_model")
    transformer = testing.randomize_(CogVideoXTransformer3DModel.from_config(transformer_config), 2).eval()
    # The release flag the diffusers class does not take; the loader keeps it in the config the same way.
    transformer.register_to_config(add_noise_in_inpaint_model=add_noise_in_inpaint_model)
    vae_config = {k: v for k, v in testing.tiny_vae_config().items() if not k.startswith("_")}
    vae = testing.randomize_(AutoencoderKLCogVideoX.from_config(vae_config), 3).eval()
    scheduler_config = {k: v for k, v in testing.RELEASE_SCHEDULER_CONFIG.items() if k != "snr_shift_scale"}
    scheduler = DDIMScheduler.from_config(scheduler_config)
    return dict(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


@pytest.fixture(scope="session")
def tiny_components(tmp_path_factory):
    return build_tiny_components(tmp_path_factory.mktemp("tiny_casper"))


@pytest.fixture(scope="session")
def tiny_pipe(tiny_components):
    return CasperPipeline(**tiny_components)
