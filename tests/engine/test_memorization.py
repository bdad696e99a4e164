"""The memorization diagnostic: per-class accuracy on the un-augmented training set, noise prior."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from purenoise.cli import main
from purenoise.engine.evaluate import Normalizer
from purenoise.engine.memorization import NUM_NOISE_IMAGES, memorization, noise_histogram, training_set_view
from purenoise.noise import PureNoise

from .conftest import COUNTS
from tests.helpers.checkpoints import assert_same_weights as _assert_same_weights
from tests.helpers.checkpoints import weights as _weights


class _Tiny(Dataset):
    """Four 8x8 images per class for three classes; ``transform`` scales them."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(12, 1, 8, 8, generator=g)
        self.y = [i // 4 for i in range(12)]
        self.transform = None

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i):
        x = self.x[i]
        return (x if self.transform is None else self.transform(x)), self.y[i]


class _Lookup(nn.Module):
    """Predicts a fixed class per image (by its first pixel), with a known loss."""

    def __init__(self, table: dict[float, int]) -> None:
        super().__init__()
        self.table = table

    def forward(self, x):
        out = torch.zeros(x.shape[0], 3)
        for i, v in enumerate(x[:, 0, 0, 0].tolist()):
            out[i, self.table.get(round(v, 5), 0)] = 5.0
        return out


def test_per_class_accuracy_and_loss_are_exact():
    data = _Tiny()
    # Class 0 all right, class 1 half right, class 2 all wrong (predicted as 0).
    table = {round(float(data.x[i, 0, 0, 0]), 5): data.y[i] for i in range(12) if i < 4 or i in (4, 5)}
    model = _Lookup(table)
    norm = Normalizer([0.0], [1.0], torch.device("cpu"))
    out = memorization(model, data, class_counts=[4, 4, 4], device=torch.device("cpu"), normalize=norm,
                       noise=PureNoise([0.5], [0.2]), image_size=(8, 8), seed=1, batch_size=5)
    assert out["train_per_class_acc"] == [1.0, 0.5, 0.0]
    assert out["train_balanced_acc"] == pytest.approx(0.5)
    assert out["train_top1"] == pytest.approx(6 / 12)
    right = nn.functional.cross_entropy(torch.tensor([[5.0, 0, 0]]), torch.tensor([0])).item()
    wrong = nn.functional.cross_entropy(torch.tensor([[5.0, 0, 0]]), torch.tensor([2])).item()
    assert out["train_per_class_loss"] == pytest.approx([right, (right + wrong) / 2, wrong])
    assert sum(out["noise_pred_hist"]) == NUM_NOISE_IMAGES == out["noise_pred_images"]


def test_a_class_without_training_images_has_no_value():
    data = _Tiny()
    model = _Lookup({})
    norm = Normalizer([0.0], [1.0], torch.device("cpu"))
    out = memorization(model, data, class_counts=[4, 4, 4, 0], device=torch.device("cpu"), normalize=norm,
                       noise=PureNoise([0.5], [0.2]), image_size=(8, 8), seed=1)
    assert out["train_per_class_acc"] == [1.0, 0.0, 0.0, None]
    assert out["train_balanced_acc"] == pytest.approx(1 / 3)
    assert len(out["noise_pred_hist"]) == 4


def test_view_applies_the_evaluation_transform_and_leaves_the_set_alone():
    data = _Tiny()
    view = training_set_view(data, lambda x: x * 0)
    assert data.transform is None
    assert torch.equal(view[3][0], torch.zeros(1, 8, 8)) and view[3][1] == data[3][1]
    with pytest.raises(TypeError, match="transform"):
        training_set_view([1, 2], None)


def test_noise_histogram_repeats_and_restores_the_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.BatchNorm1d(3)).train()
    norm = Normalizer([0.5], [0.2], torch.device("cpu"))
    before = model[2].running_mean.clone()
    kw = dict(device=torch.device("cpu"), normalize=norm, seed=7)
    a = noise_histogram(model, PureNoise([0.5], [0.2]), 3, (8, 8), **kw)
    b = noise_histogram(model, PureNoise([0.5], [0.2]), 3, (8, 8), **kw)
    assert a == b and sum(a) == NUM_NOISE_IMAGES
    assert model.training and torch.equal(model[2].running_mean, before)


def test_a_small_net_that_fits_its_set_shows_full_training_accuracy(write_config, tmp_path):
    """The fixture's classes are separable: trained long enough, every class is fitted, and the
    diagnostic is in eval.json at the end and at the defer epoch."""
    run = tmp_path / "fit"
    cfg = write_config(method="drs", epochs=12, defer_epoch=6, lr=0.05, milestones=[10], augment="test")
    assert main(["train", "-c", str(cfg), "-o", str(run)]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["train_per_class_acc"] == [1.0] * len(COUNTS)
    assert ev["train_balanced_acc"] == 1.0 and ev["train_top1"] == 1.0
    assert all(loss < 0.5 for loss in ev["train_per_class_loss"])
    assert sum(ev["noise_pred_hist"]) == NUM_NOISE_IMAGES
    at_defer = ev["train_at_defer"]
    assert at_defer["epoch"] == 6 and len(at_defer["train_per_class_acc"]) == len(COUNTS)


def test_the_diagnostic_changes_no_training_number(write_config, tmp_path):
    """OPeN with the diagnostic on (at the defer epoch and the end) and off: same weights, same test."""
    runs = {}
    for on in (True, False):
        run = tmp_path / f"on_{on}"
        cfg = write_config(method="open", epochs=3, defer_epoch=1, memorization=on)
        assert main(["train", "-c", str(cfg), "-o", str(run)]) == 0
        runs[on] = run
    _assert_same_weights(_weights(runs[True] / "checkpoints/last.pt"), _weights(runs[False] / "checkpoints/last.pt"))
    on, off = (json.loads((runs[k] / "eval.json").read_text()) for k in (True, False))
    assert on["per_class_acc"] == off["per_class_acc"] and on["nll"] == off["nll"]
    assert "train_per_class_acc" in on and "train_at_defer" in on
    assert "train_per_class_acc" not in off and "train_at_defer" not in off


def test_resume_keeps_the_defer_diagnostic(write_config, tmp_path):
    cfg = write_config(method="open", epochs=3, defer_epoch=1)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "-c", str(cfg), "-o", str(straight)]) == 0
    assert main(["train", "-c", str(cfg), "-o", str(resumed), "--set", "epochs=3", "--resume",
                 str(straight / "checkpoints" / "last.pt")]) == 0  # nothing left: evaluates again
    a, b = (json.loads((r / "eval.json").read_text()) for r in (straight, resumed))
    assert a["train_at_defer"] == b["train_at_defer"] and a["train_per_class_acc"] == b["train_per_class_acc"]


def test_resume_after_the_defer_epoch_keeps_the_defer_diagnostic(write_config, tmp_path, monkeypatch):
    """A run resumed from a checkpoint taken between the defer epoch and the end reports the
    diagnostic measured at the defer epoch, which it did not pass again."""
    import shutil

    from purenoise.engine.trainer import Trainer

    cfg = write_config(method="open", epochs=4, defer_epoch=1)
    real = Trainer._save

    def save(self, name, epoch, *args, **kwargs):
        path = real(self, name, epoch, *args, **kwargs)
        if name == "last.pt" and epoch == 3:
            shutil.copy(path, tmp_path / "after_epoch_3.pt")
        return path

    monkeypatch.setattr(Trainer, "_save", save)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "-c", str(cfg), "-o", str(straight)]) == 0
    monkeypatch.undo()
    assert main(["train", "-c", str(cfg), "-o", str(resumed), "--resume", str(tmp_path / "after_epoch_3.pt")]) == 0
    a, b = (json.loads((r / "eval.json").read_text()) for r in (straight, resumed))
    assert b["train_at_defer"]["epoch"] == 1 and a["train_at_defer"] == b["train_at_defer"]
    assert a["per_class_acc"] == b["per_class_acc"] and a["train_per_class_acc"] == b["train_per_class_acc"]
