import random

import torch

from seamharden.train import checkpoint


def _model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    return model


def test_save_load_roundtrip_keeps_only_newest_and_restores_rng(tmp_path):
    model = _model()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    random.seed(3)
    torch.manual_seed(3)
    data_state = {"adv": {"epoch": 0, "index": 4}}
    state = checkpoint.TrainState(2, opt.state_dict(), {"x": 1}, data_state, checkpoint.rng_state())
    checkpoint.save(tmp_path, model, state)
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    checkpoint.save(tmp_path, model, checkpoint.TrainState(4, opt.state_dict(), {}, {}, checkpoint.rng_state()))
    expected = (torch.rand(3), random.random())
    assert [p.name for p in tmp_path.iterdir()] == ["step-4"]
    assert checkpoint.latest(tmp_path).name == "step-4"

    fresh = _model()
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    loaded = checkpoint.load(tmp_path / "step-4", fresh)
    assert loaded.step == 4
    checkpoint.set_rng_state(loaded.rng)
    again = (torch.rand(3), random.random())
    assert torch.equal(again[0], expected[0]) and again[1] == expected[1]
    for name, p in fresh.named_parameters():
        if p.requires_grad:
            assert torch.equal(p.detach(), trained[name])
        else:
            assert torch.all(p == 0)  # frozen weights are not in the checkpoint


def test_half_written_checkpoint_is_ignored(tmp_path):
    (tmp_path / ".tmp-step-9").mkdir()
    (tmp_path / "step-7").mkdir()  # no state.pt: never completed
    assert checkpoint.latest(tmp_path) is None
    assert checkpoint.latest(tmp_path / "missing") is None
