"""--precision auto|fp32|bf16 (issue 23, item 2): what auto picks on which hardware, and the bf16 path
of training, reading and generation running with finite results close to fp32's on a tiny model.
The device is a parameter: on a machine with CUDA the same tests run there too."""
import copy
import json

import pytest
import torch

from charrnn import generate, precision
from charrnn.config import TrainConfig
from charrnn.evaluate import main as evaluate_main
from charrnn.generate import Settings, complete
from charrnn.score import score
from charrnn.training import build_optimizer, train, train_step
from conftest import TINY_TEXT, tiny_config

NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA here")
DEVICES = ["cpu", pytest.param("cuda", marks=NO_CUDA)]


# CPU capabilities -> what auto picks for (train, read, generate)
CAPABILITIES = [({"amx_bf16": True, "avx512_bf16": True}, ("fp32", "bf16", "fp32")),
                ({"avx512_bf16": True}, ("fp32", "bf16", "fp32")), ({"avx2": True}, ("fp32", "fp32", "fp32")),
                ({}, ("fp32", "fp32", "fp32"))]


@pytest.mark.parametrize("caps, chosen", CAPABILITIES)
def test_auto_reads_in_bf16_on_cpus_that_do_it_in_hardware(monkeypatch, caps, chosen):
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: caps)
    assert tuple(precision.resolve("auto", "cpu", work) for work in precision.WORKS) == chosen
    for work in precision.WORKS:  # asked for: always as asked
        assert [precision.resolve(name, "cpu", work) for name in ("fp32", "bf16")] == ["fp32", "bf16"]
    said = precision.describe("auto", "cpu")
    assert said.startswith("precision ") and "(auto; cpu with" in said
    assert ("read bf16" in said) == (chosen[1] == "bf16")


@pytest.mark.parametrize("supported, chosen", [(True, ("fp32", "bf16", "bf16")),
                                               (False, ("fp32", "fp32", "fp32"))])
def test_auto_on_cuda_asks_torch_whether_the_gpu_does_bf16(monkeypatch, supported, chosen):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **kw: supported)
    assert tuple(precision.resolve("auto", "cuda", work) for work in precision.WORKS) == chosen


def test_an_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, not 'fp16'"):
        precision.resolve("fp16", "cpu", "read")


def in_precision(model, name: str, device: str):
    model = copy.deepcopy(model).to(device)
    assert precision.use(model, name) == name
    return model


@pytest.mark.parametrize("device", DEVICES)
def test_a_bf16_training_step_gives_a_finite_loss_close_to_fp32(tiny_model, device):
    ids = torch.tensor([tiny_model.vocab.encode(TINY_TEXT[:129])], device=device)  # (1, 129)
    losses = {}
    for name in ("fp32", "bf16"):
        torch.manual_seed(0)  # the same dropout masks
        model = in_precision(tiny_model, name, device).train()
        optimizer = build_optimizer(TrainConfig(), model)
        _, loss = train_step(model, model, optimizer, ids[:, :-1], ids[:, 1:], None, 1.0)
        losses[name] = loss.item()
        assert all(torch.isfinite(p).all() for p in model.parameters())
    assert losses["bf16"] == pytest.approx(losses["fp32"], abs=0.02) and losses["fp32"] < 4


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_reads_a_text_within_a_hundredth_of_a_nat_of_fp32(tiny_model, device):
    ids = torch.tensor(tiny_model.vocab.encode(TINY_TEXT * 2))
    fp32, bf16 = (score(in_precision(tiny_model, name, device), ids) for name in ("fp32", "bf16"))
    assert torch.isfinite(bf16.logprobs).all()
    assert bf16.nats_per_char == pytest.approx(fp32.nats_per_char, abs=0.01)
    assert bf16.logprobs.tolist() != fp32.logprobs.tolist()  # bf16 really ran


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_generation_runs_and_keeps_its_state_in_fp32(tiny_model, device):
    settings = Settings(length=80, temperature=0.8, sampling_seed=3)
    fp32, bf16 = (complete(in_precision(tiny_model, name, device), "En un lugar", settings)
                  for name in ("fp32", "bf16"))
    assert len(bf16.greedy) == len(bf16.sampled) == 80
    assert bf16.greedy[:10] == fp32.greedy[:10]  # close logits: the likeliest chars agree at first
    assert all(0 <= p <= 1 for _, p in bf16.candidates)
    model = in_precision(tiny_model, "bf16", device)
    logits, layers = generate.prefill(model, torch.tensor([model.vocab.encode("En un lugar")], device=device))
    logits, layers = generate.make_step(model)(logits.argmax(-1), layers)
    assert logits.dtype == torch.float32 and {t.dtype for layer in layers for t in layer} == {torch.float32}


def test_a_bf16_run_says_so_and_trains(tmp_path):
    logs = []
    result = train(tiny_config(tmp_path, cell="lstm", precision="bf16", epochs=1.0), log=logs.append)
    assert any("precision bf16 (asked for" in line for line in logs)
    assert result.val_loss < 3.0 and result.model.precision == "bf16"


def test_the_evaluate_cli_says_which_precision_it_chose(tiny_model_dir, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    assert evaluate_main(["--weights", str(tiny_model_dir), "--data", str(text), "--precision", "bf16"]) == 0
    out, err = capsys.readouterr()
    assert "note: precision bf16 (asked for" in err and json.loads(out)["chars"] > 100


def test_a_run_with_an_unknown_precision_stops_before_any_work():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, not 'fp16'"):
        TrainConfig(precision="fp16").validate()
