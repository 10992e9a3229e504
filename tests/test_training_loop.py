"""The one training loop (xtalspec.training.loop.run) with a toy family: resuming from its
checkpoint gives the weights and history of an uninterrupted run, a checkpoint of another run is
ignored, and the family's end-of-epoch hook stops training early."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xtalspec.training.loop import Family, LoopConfig, initialise, run

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class Toy(Family):
    """Least squares on a fixed data set; stops after ``stop_at`` epochs when given."""

    def __init__(self, seed: int, stop_at: int | None = None):
        super().__init__(seed)
        rng = np.random.default_rng(0)
        self.x = torch.as_tensor(rng.standard_normal((23, 4)), dtype=torch.float32)
        self.y = torch.as_tensor(rng.standard_normal(23), dtype=torch.float32)
        self.stop_at = stop_at

    def batch(self, device, rows):
        return self.x[rows].to(device), self.y[rows].to(device)

    def loss(self, outputs, y, size):
        loss = (outputs.squeeze(1) - y).pow(2).mean()
        return loss, {"loss": float(loss.detach()) * size}

    def end_epoch(self, model, epoch, means, seen, seconds, device):
        self.history.append({"epoch": epoch, **means, "seen": seen})
        return self.stop_at is not None and epoch >= self.stop_at


def toy_model(seed: int = 3) -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 1))
    initialise(model, seed)
    return model


CFG = LoopConfig(epochs=4, batch_size=5, lr=1e-2, device="cpu", lr_decay=0.1)


def test_resume_gives_the_uninterrupted_run(tmp_path):
    straight = toy_model()
    h_straight = run(straight, Toy(7), 23, CFG, tmp_path / "straight", fingerprint="f")
    run(toy_model(), Toy(7), 23, LoopConfig(**{**CFG.__dict__, "epochs": 2}), tmp_path / "resumed", fingerprint="f")
    resumed = toy_model()  # fresh weights and RNG: everything comes from the checkpoint
    h_resumed = run(resumed, Toy(7), 23, CFG, tmp_path / "resumed", fingerprint="f")
    assert h_resumed == h_straight and [h["epoch"] for h in h_straight] == [1, 2, 3, 4]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key])


def test_checkpoint_of_another_run_is_ignored(tmp_path):
    run(toy_model(), Toy(7), 23, CFG, tmp_path, fingerprint="a")
    history = run(toy_model(), Toy(7), 23, LoopConfig(**{**CFG.__dict__, "epochs": 1}), tmp_path, fingerprint="b")
    assert [h["epoch"] for h in history] == [1]


def test_end_of_epoch_hook_stops_early():
    history = run(toy_model(), Toy(7, stop_at=2), 23, CFG)
    assert [h["epoch"] for h in history] == [1, 2] and history[0]["seen"] == 23


@pytest.mark.parametrize("package", ["models", "prediction"])
def test_models_and_prediction_do_not_import_training(package):
    """Checkpoints are read beside the models (xtalspec.models.checkpoints), not through training/."""
    import ast
    from pathlib import Path

    import xtalspec

    for path in (Path(xtalspec.__file__).parent / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n.startswith(("..training", "xtalspec.training")) for n in names), (path.name, names)
