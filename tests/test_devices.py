"""params `device` and `precision`: resolution, clear errors before compute, and every domain's networks and
batches on the resolved device (checked on PyTorch's "meta" device here: a CPU tensor mixed in, or a step
that reads a value back to the host, fails there as it would slow or fail on CUDA)."""

from __future__ import annotations

import copy

import pytest
import torch

from pgraft import devices, domains
from pgraft.config import ConfigError, SamplerParams, parse_params
from pgraft.devices import autocast_dtype, device_of, resolve_device

from pipeline_helpers import write_params

META = torch.device("meta")


def test_device_resolution(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"device='cuda'.*no CUDA device.*device: auto or cpu"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"sd2\.model\.device='cuda'"):
        resolve_device("cuda", "sd2.model.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)  # one GPU per launched process
    for precision in ("auto", "fp32", "bf16"):  # a CPU always computes in fp32
        assert autocast_dtype("cpu", precision) is None
    assert autocast_dtype("cuda", "bf16") == torch.bfloat16 and autocast_dtype("cuda", "fp32") is None


def test_params_keys(real_params):
    params = parse_params(real_params)
    assert (params.device, params.precision) == ("cpu", "auto")  # the embedded default: results unchanged
    for key, value in (("device", "gpu"), ("precision", "fp16")):
        with pytest.raises(ConfigError, match=rf"(?s){key} \(given '{value}'\).*"):
            parse_params({**real_params, key: value})
    domain = domains.build("gaussian", parse_params({**real_params, "device": "auto", "precision": "bf16"}))
    assert (domain.device_setting, domain.precision) == ("auto", "bf16")


def test_cuda_without_cuda_fails_before_compute(small_params, tmp_path, monkeypatch, capsys):
    from pgraft.stages import pretrain

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", {**small_params, "device": "cuda"})
    code = pretrain.main(["--domain", "gaussian", "--out", "base", "--metrics", "pretrain.json"])
    assert code == 2
    assert "params device='cuda': no CUDA device is available" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing computed, nothing written


def _domain(name: str, small_params: dict, **top):
    """A registered domain built from the shrunk params (sd2: the tiny random model, on the top-level device)."""
    raw = {**copy.deepcopy(small_params), **top}
    if domains.REGISTRY.get(name).kind == "diffusion" and name not in raw["domains"]:
        raw["domains"] = [*raw["domains"], name]
    raw["sd2"]["model"]["device"] = None
    return domains.build(name, parse_params(raw))


def _on(device, tensors):
    return all(t.device.type == device.type for t in tensors)


@pytest.mark.parametrize("name", domains.REGISTRY.names())
def test_networks_and_batches_stay_on_the_resolved_device(name, small_params, monkeypatch):
    monkeypatch.setattr(devices, "resolve_device", lambda setting, key="device": META)
    check_on_device(_domain(name, small_params), META)


@pytest.mark.gpu
@pytest.mark.parametrize("name", domains.REGISTRY.names())
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_networks_and_batches_stay_on_the_gpu(name, precision, small_params):
    domain = _domain(name, small_params, device="cuda", precision=precision)
    check_on_device(domain, torch.device("cuda"))


def check_on_device(domain, device: torch.device) -> None:
    """Each domain's network, a sampling rollout, a training batch and its gradients, DDPO trajectories (prompt-
    conditioned domains) and the Euler sampler (flow domains) live on the domain's device from start to end."""
    from pgraft.finetune import DenoisingObjective
    from pgraft.finetune.ddpo import sample_trajectories
    from pgraft.finetune.flow_objective import FlowMatchingObjective
    from pgraft.samplers.flow import euler_sample
    from pgraft.samplers.rollout import rollout

    assert torch.device(domain.device).type == device.type
    base = domain.place(domain.build_model()).eval()
    model = copy.deepcopy(base).requires_grad_(True)  # what finetune trains (sd2: a LoRA on the same UNet)
    assert _on(device, [*model.parameters(), *model.buffers()]) and device_of(model).type == device.type
    g = torch.Generator().manual_seed(0)
    n = 4
    data = domain.sample_data(n, g) if domain.name != "sd2" else (torch.randn((n, *domain.shape)), None)
    x0, prompts = data if domain.conditional else (data, None)
    tokens = None
    if domain.conditional:
        prompts = prompts or domain.prompts("train")[:n]
        tokens = torch.as_tensor(domain.tokens(list(prompts)))
    x_T = torch.randn((n, *domain.shape), generator=g)
    if domain.kind == "diffusion":
        schedule = domain.schedule(SamplerParams(name="ddim", num_steps=3, eta=1.0))
        x, kept = rollout(lambda i: model if i < 1 else base, schedule, x_T.to(device), g, keep=[1],
                          cond=None if tokens is None else tokens.to(device))
        assert _on(device, [x, kept[1]])
        objective = DenoisingObjective(x0, schedule.alphas_cumprod, cond=tokens)
        if domain.conditional:
            traj = sample_trajectories(model, schedule, x_T, tokens, 1.0, g)
            assert _on(device, [traj.states, traj.log_probs, traj.cond])
    else:
        assert euler_sample(model, x_T.to(device), 2).device.type == device.type
        objective = FlowMatchingObjective(x0)
    x_t, t, target, *cond = (b.to(device_of(model)) for b in objective.batch(n, g))  # as finetune.loop.train
    out = model(x_t, t, *cond)
    assert out.dtype == torch.float32  # under bf16 autocast too
    torch.mean((out - target) ** 2).backward()
    assert _on(device, [p.grad for p in model.parameters()])


@pytest.mark.gpu
def test_pipeline_runs_on_the_gpu(small_params, tmp_path, monkeypatch):
    """The shrunk pipeline (Gaussian, digits text-to-image with DDPO and a UNet in bf16, INC on digits) on CUDA:
    every stage succeeds and the metrics are finite."""
    import json
    import math

    from pipeline_helpers import run_all

    p = copy.deepcopy(small_params)
    p.update(domains=["gaussian", "digits_t2i", "digits_flow"], seeds=[0], device="cuda", precision="bf16")
    p["digits_t2i"]["model"].update(architecture="unet", block_out_channels=[16, 32])
    write_params(tmp_path / "params.yaml", p)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / ".pgraft"))
    run_all(p, tmp_path)
    for d in ("gaussian", "digits_t2i"):
        out = json.loads((tmp_path / f"results/metrics/{d}/seed0/k4/evaluate.json").read_text())
        assert math.isfinite(out["b10"]["reward_mean"]), d
    assert math.isfinite(json.loads((tmp_path / "results/metrics/digits_flow/seed0/inc.json").read_text())
                         ["inc_n2"]["fid"])
