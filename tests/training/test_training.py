"""Fine-tuning on the tiny release: the loss, overfitting, checkpoints the pipeline loads, LoRA export, resuming."""
import json

import pytest
import torch
from safetensors.torch import load_file

from casper_core.loading import load_casper_pipeline, load_scheduler
from casper_core.training.checkpoints import CASPER_FILE
from casper_core.training.components import load_training_components
from casper_core.training.conditioning import TrimaskConditioning
from casper_core.training.dataset import TupleDataset, collate
from casper_core.training.lora import merged_state_dict
from casper_core.training.objective import diffusion_loss
from casper_core.training.trainer import train

from .conftest import tiny_config

# What 100 steps at lr 1e-3 on two tuples must achieve on the tiny model (measured: 2.4-2.6×).
OVERFIT_FACTOR = 2.0


def fixed_loss(transformer, components, batch, draws=8):
    """The loss averaged over fixed noise, timesteps and VAE samples (a repeatable measure of fit)."""
    conditioning = TrimaskConditioning(transformer, components.vae, "cpu")
    losses = []
    with torch.no_grad():
        for seed in range(draws):
            generator = torch.Generator().manual_seed(seed)
            latents, condition, rotary = conditioning(batch, generator, input_noise=False)
            losses.append(float(diffusion_loss(transformer, components.scheduler, latents, condition,
                                               components.prompt_embeds, rotary, generator)))
    return sum(losses) / len(losses)


def test_training_schedule_is_the_samplers(tiny_release):
    """The DDPM training schedule has the same noise levels as the DDIM sampler inference uses (v-prediction)."""
    components = load_training_components(tiny_release.base_dir)
    sampler = load_scheduler(tiny_release.base_dir / "scheduler")
    assert components.scheduler.config.prediction_type == "v_prediction"
    assert torch.allclose(components.scheduler.alphas_cumprod, sampler.alphas_cumprod)
    assert float(components.scheduler.alphas_cumprod[-1]) < 1e-6  # zero terminal SNR, as released


def test_condition_channels(tiny_release, tiny_set):
    components = load_training_components(tiny_release.base_dir)
    dataset = TupleDataset(tiny_set, tiny_config().data)
    batch = collate([dataset[(0, 1)]])
    batch["trimask"] = torch.zeros_like(batch["trimask"])  # keep everywhere
    conditioning = TrimaskConditioning(components.transformer, components.vae, "cpu")
    latents, condition, rotary = conditioning(batch, torch.Generator().manual_seed(0), input_noise=False)
    assert latents.shape == (1, 2, 16, 4, 4) and condition.shape == (1, 2, 17, 4, 4)
    scaling = components.vae.config.scaling_factor
    assert torch.allclose(condition[:, :, 0], torch.full_like(condition[:, :, 0], scaling))  # 1 − keep, scaled
    batch["trimask"] = torch.ones_like(batch["trimask"])  # remove everywhere
    assert float(conditioning(batch, torch.Generator().manual_seed(0), False)[1][:, :, 0].abs().max()) == 0
    assert rotary is not None


def test_tiny_model_overfits_a_tiny_set(tiny_release, tiny_set, tmp_path):
    components = load_training_components(tiny_release.base_dir)
    config = tiny_config(steps=100)
    dataset = TupleDataset(tiny_set, config.data)
    batch = collate([dataset[(i, 0)] for i in range(2)])
    before = fixed_loss(components.transformer, components, batch)
    run = train(config, tiny_set, tmp_path / "run", components=components, progress=False)
    components.transformer.eval()
    after = fixed_loss(components.transformer, components, batch)
    assert before / after >= OVERFIT_FACTOR, (before, after)
    assert len(run.losses) == 100
    logged = [json.loads(line) for line in (run.folder / "losses.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == list(range(1, 101))


def test_checkpoint_loads_through_the_pipeline_and_changes_its_output(tiny_release, tiny_set, tmp_path):
    run = train(tiny_config(steps=3, learning_rate=1e-2), tiny_set, tmp_path / "run", base_dir=tiny_release.base_dir,
                progress=False)
    assert run.weights.is_file() and (run.folder / "checkpoints" / "step_000003" / CASPER_FILE).is_file()
    trained = load_casper_pipeline(tiny_release.base_dir, run.weights, dtype="fp32", device="cpu")
    base = load_casper_pipeline(tiny_release.base_dir, None, dtype="fp32", device="cpu")
    assert trained.load_report.overridden_keys == trained.load_report.transformer_keys
    saved = load_file(str(run.weights))
    base_state = base.transformer.state_dict()
    assert any(not torch.equal(saved[k].float(), base_state[k].to(torch.bfloat16).float()) for k in saved)
    video = torch.rand(5, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    trimask = torch.zeros(5, 32, 32)
    trimask[:, 8:24, 8:24] = 1.0
    out_trained = trained(video, trimask, steps=2, window_frames=5).videos
    out_base = base(video, trimask, steps=2, window_frames=5).videos
    assert float((out_trained - out_base).abs().max()) > 1e-3


def test_lora_export_merges_into_plain_weights(tiny_release, tiny_set, tmp_path):
    components = load_training_components(tiny_release.base_dir)
    run = train(tiny_config(mode="lora", steps=3, learning_rate=1e-2), tiny_set, tmp_path / "run",
                components=components, progress=False)
    model = components.transformer.eval()
    adapter = load_file(str(run.folder / "lora" / "adapter_model.safetensors"))
    assert adapter and all(".lora_A." in k or ".lora_B." in k for k in adapter)
    assert any(k.startswith("transformer.patch_embed.proj.") for k in adapter)
    merged = merged_state_dict(model.state_dict(), alpha=4, rank=4)
    plain = load_training_components(tiny_release.base_dir).transformer
    assert set(merged) == set(plain.state_dict())
    plain.load_state_dict(merged)
    inputs = dict(hidden_states=torch.randn(1, 2, 33, 4, 4), encoder_hidden_states=components.prompt_embeds,
                  timestep=torch.tensor([500]), return_dict=False)
    with torch.no_grad():
        assert torch.allclose(model(**inputs)[0], plain.eval()(**inputs)[0], atol=1e-4)
    exported = load_file(str(run.weights))  # bf16 export of the same merge
    assert all(torch.allclose(exported[k].float(), merged[k], atol=2e-2, rtol=1e-2) for k in merged)


def test_resumed_run_continues_exactly(tiny_release, tiny_set, tmp_path):
    straight = train(tiny_config(steps=4, checkpoint_every=2), tiny_set, tmp_path / "straight",
                     base_dir=tiny_release.base_dir, progress=False)
    resumed = train(tiny_config(steps=4, checkpoint_every=2), tiny_set, tmp_path / "resumed",
                    base_dir=tiny_release.base_dir, progress=False,
                    resume=straight.folder / "checkpoints" / "step_000002")
    assert resumed.start_step == 2 and resumed.losses == pytest.approx(straight.losses[2:], abs=1e-6)
    first, second = load_file(str(straight.weights)), load_file(str(resumed.weights))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_runs_never_overwrite(tiny_release, tiny_set, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(FileExistsError, match="new folder"):
        train(tiny_config(), tiny_set, tmp_path / "run", base_dir=tiny_release.base_dir, progress=False)


def test_eight_bit_adamw_when_bitsandbytes_is_installed(tiny_release, tiny_set, tmp_path):
    pytest.importorskip("bitsandbytes")
    run = train(tiny_config(steps=2, optimizer="adamw8bit"), tiny_set, tmp_path / "run",
                base_dir=tiny_release.base_dir, progress=False)
    assert len(run.losses) == 2 and all(loss == loss for loss in run.losses)
