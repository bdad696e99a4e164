"""The memorization diagnostic: how well a model fits its own training set, and what it makes of noise.

OPeN's case (docs/method.md, "When the method helps") is about a network that **memorizes** the few
images of a minority class when they are oversampled again and again: it fits nearly every
training image of that class and generalizes badly on it. Whether a run is in that regime is a
measurement, not a guess: evaluate the model in eval mode on the **un-augmented** long-tailed
training set (the evaluation transform, as the test set sees it) and compare per-class training
accuracy with test accuracy. The difference per class is the generalization gap the paper is about.

The diagnostic also records the model's "prior" on pure noise (the reproduction's check): the
predicted-class histogram of a fixed batch of noise images drawn as OPeN draws them. A network
trained with OPeN learns to spread noise over the minority classes it was labelled with.

It runs on rank 0 alone: in a multi-process run the other ranks wait for it in their next
collective, so on a very large training set (ImageNet-LT) turn it off (``memorization: false``)
rather than risk the process group's timeout.

The diagnostic changes no training state: the model is evaluated in eval mode under ``no_grad``
(running statistics untouched) and restored to its mode, the noise comes from a generator of its
own seeded from the run's seed, and the data loader draws its base seed from a private generator,
not from torch's global one. A run trained with the diagnostic on or off ends with the same weights.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from purenoise.engine.evaluate import Normalizer, autocast_context, predict_logits
from purenoise.noise import PureNoise

__all__ = ["NUM_NOISE_IMAGES", "training_set_view", "noise_histogram", "memorization"]

NUM_NOISE_IMAGES = 1000  # the fixed noise batch of the "model prior" check


def training_set_view(train_set: Dataset, transform: Any) -> Dataset:
    """The training set as the test set is seen: a shallow copy whose ``transform`` is ``transform``.

    The trainer's train set carries no transform (augmentation is applied per batch); the copy
    shares the images and labels and leaves the original untouched.
    """
    if not hasattr(train_set, "transform"):
        raise TypeError(f"{type(train_set).__name__} has no 'transform' attribute to evaluate it with")
    view = copy.copy(train_set)
    view.transform = transform
    return view


@torch.no_grad()
def noise_histogram(model: nn.Module, noise: PureNoise, num_classes: int, image_size: Sequence[int], *,
                    device: torch.device, normalize: Normalizer, seed: int, n: int = NUM_NOISE_IMAGES,
                    batch_size: int = 500, amp: str = "none") -> list[int]:
    """How many of ``n`` pure-noise images the model assigns to each class (eval mode).

    The images are drawn with a CPU generator seeded with ``seed``, so the batch is the same on
    every device and for every run of the same seed.
    """
    gen = torch.Generator().manual_seed(seed)
    images = noise(n, tuple(image_size), generator=gen)
    counts = torch.zeros(num_classes, dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        for chunk in images.split(batch_size):
            with autocast_context(device, amp):
                logits = model(normalize(chunk.to(device)))
            counts += torch.bincount(logits.float().argmax(1).cpu(), minlength=num_classes)
    finally:
        model.train(was_training)
    return counts.tolist()


def memorization(model: nn.Module, train_set: Dataset, *, class_counts: Sequence[int], device: torch.device,
                 normalize: Normalizer, noise: PureNoise, image_size: Sequence[int], seed: int,
                 batch_size: int = 256, workers: int = 0, amp: str = "none") -> dict[str, Any]:
    """Per-class accuracy and loss on the un-augmented training set, and the noise histogram.

    Args:
        model: The model (any mode; evaluated in eval mode and restored).
        train_set: The training set with the evaluation transform (see :func:`training_set_view`).
        class_counts: Training images per class; its length is the number of classes.
        device: Where the model runs.
        normalize: The run's input normalization.
        noise: The run's pure-noise generator (pixel space), for the noise histogram.
        image_size: ``(H, W)`` of the model's inputs.
        seed: Seed of the noise batch (derive it from the run's seed).
        batch_size: Evaluation batch size.
        workers: DataLoader worker processes.
        amp: Autocast mode of the forward passes.

    Returns:
        ``train_per_class_acc`` and ``train_per_class_loss`` (one value per class, ``None`` for a
        class without training images), ``train_balanced_acc`` (mean over classes with images),
        ``train_top1`` and ``train_loss`` (over all images), ``noise_pred_hist`` (counts per class
        over ``NUM_NOISE_IMAGES`` noise images) and ``noise_pred_images``.
    """
    num_classes = len(class_counts)
    gen = torch.Generator().manual_seed(seed)  # the loader's base seed: not torch's global generator
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", generator=gen)
    logits, labels = predict_logits(model, loader, device, normalize, amp)
    labels = labels.long()
    losses = nn.functional.cross_entropy(logits, labels, reduction="none").double()
    correct = (logits.argmax(1) == labels).double()
    n = torch.bincount(labels, minlength=num_classes).double()
    acc_sum = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, correct)
    loss_sum = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, losses)
    per_acc = [float(a / c) if c > 0 else None for a, c in zip(acc_sum, n)]
    per_loss = [float(s / c) if c > 0 else None for s, c in zip(loss_sum, n)]
    present = [a for a in per_acc if a is not None]
    hist = noise_histogram(model, noise, num_classes, image_size, device=device, normalize=normalize,
                           seed=seed, amp=amp)
    return {
        "train_per_class_acc": per_acc,
        "train_per_class_loss": per_loss,
        "train_balanced_acc": sum(present) / len(present) if present else None,
        "train_top1": float(correct.mean()) if len(correct) else None,
        "train_loss": float(losses.mean()) if len(losses) else None,
        "noise_pred_hist": hist,
        "noise_pred_images": NUM_NOISE_IMAGES,
    }
