"""The zoo's architectures: small classifiers that return logits and stay fast on a CPU.

Attacks and benchmarks call these models thousands of times, so each one is deliberately modest. Every
builder returns an untrained ``nn.Module`` mapping inputs (N, C, H, W) to logits (N, num_classes); the
normalisation (if any) is *not* part of the module, it lives in :class:`bastion.model.TorchClassifier`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import nn

from bastion.errors import ModelContractError

__all__ = ["ZooSpec", "build", "spec", "spec_names"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# CIFAR-10 per-channel pixel statistics (inputs in [0, 1]), as listed in ../shared/data/README.md.
CIFAR10_MEAN = (0.4942, 0.4851, 0.4504)
CIFAR10_STD = (0.2467, 0.2429, 0.2616)


def digits_mlp() -> nn.Module:
    """Flatten → 64-128-10 MLP for the 8x8 scikit-learn digits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def digits_cnn() -> nn.Module:
    """Two 3x3 convolutions and one pooling for 8x8 digits, then a 128-unit head."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def mnist_cnn() -> nn.Module:
    """The Madry et al. (2018) MNIST layout (5x5 convs 32/64, two poolings) with a 256-unit head.

    The original head has 1024 units; 256 keeps a forward+backward of a batch quick on two cores.
    """
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def mnist_strided() -> nn.Module:
    """Strided 4x4 convolutions (32/64) and a 256-unit head, no pooling: the Wong & Kolter (2018) MNIST
    layout at twice its width.

    A quarter of mnist-cnn's multiply-adds (fast to adversarially train and to certify with 100,000
    noisy samples per input), and without max pooling interval bounds stay tight (IBP training).
    """
    return nn.Sequential(
        nn.Conv2d(1, 32, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    # No conv bias: the BatchNorm shift that follows makes it redundant.
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def cifar10_cnn() -> nn.Module:
    """A small VGG-style net: four 3x3 conv+BN+ReLU blocks (32, 64, 128, 256 channels), the first three
    followed by a 2x2 max-pool, then global average pooling and a linear layer. Expects normalised
    inputs (N, 3, 32, 32).

    One conv per resolution: on a CPU the full-resolution layers dominate the cost, and a wide last
    block at 4x4 buys capacity cheaply.
    """
    return nn.Sequential(
        *_conv_bn(3, 32),
        nn.MaxPool2d(2),
        *_conv_bn(32, 64),
        nn.MaxPool2d(2),
        *_conv_bn(64, 128),
        nn.MaxPool2d(2),
        *_conv_bn(128, 256),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(256, 10),
    )


@dataclass(frozen=True)
class ZooSpec:
    """What a zoo model expects: the dataset it is trained on, its input shape and classes.

    ``dataset`` is the :func:`bastion.data.load_dataset` kind (``digits``, ``mnist``, ``cifar10``);
    ``mean``/``std`` are the per-channel normalisation the training recipe applies (None: raw inputs).
    """

    name: str
    builder: Callable[[], nn.Module]
    dataset: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    description: str = ""


_DIGITS = tuple(str(i) for i in range(10))

_SPECS: dict[str, ZooSpec] = {
    s.name: s
    for s in (
        ZooSpec("digits-mlp", digits_mlp, "digits", (1, 8, 8), 10, _DIGITS, description="MLP 64-128-10"),
        ZooSpec(
            "digits-cnn",
            digits_cnn,
            "digits",
            (1, 8, 8),
            10,
            _DIGITS,
            description="CNN conv32-conv64-pool-fc128",
        ),
        ZooSpec(
            "mnist-cnn",
            mnist_cnn,
            "mnist",
            (1, 28, 28),
            10,
            _DIGITS,
            description="CNN conv5x5(32)-pool-conv5x5(64)-pool-fc256 (Madry et al. layout, smaller head)",
        ),
        ZooSpec(
            "mnist-strided",
            mnist_strided,
            "mnist",
            (1, 28, 28),
            10,
            _DIGITS,
            description="CNN conv4x4/2(32)-conv4x4/2(64)-fc256 (Wong & Kolter layout, doubled widths)",
        ),
        ZooSpec(
            "cifar10-cnn",
            cifar10_cnn,
            "cifar10",
            (3, 32, 32),
            10,
            CIFAR10_CLASSES,
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            description="VGG-style CNN, 4 conv+BN (32/64/128/256), global average pooling",
        ),
    )
}


def _hardened(base: str, suffix: str, how: str) -> ZooSpec:
    """A hardened variant: the base's architecture and data, weights from scripts/train_hardened_zoo.py."""
    b = _SPECS[base]
    return replace(b, name=f"{base}-{suffix}", description=f"{b.description}, {how}")


HARDENED = {
    s.name: s
    for s in (
        _hardened("digits-cnn", "fgsm", "fast FGSM-RS adversarial training at linf 0.2"),
        _hardened("digits-cnn", "pgd", "PGD-10 adversarial training at linf 0.2"),
        _hardened("digits-cnn", "trades", "TRADES (beta 6) at linf 0.2"),
        _hardened(
            "digits-cnn", "atta", "ATTA (single-step, perturbations carried across epochs) at linf 0.2"
        ),
        _hardened("mnist-cnn", "fgsm", "fast FGSM-RS adversarial training at linf 0.3"),
        _hardened("mnist-strided", "fgsm", "fast FGSM-RS adversarial training at linf 0.3"),
        _hardened("mnist-strided", "pgd", "PGD-10 adversarial training at linf 0.3"),
        _hardened(
            "mnist-strided", "atta", "ATTA (single-step, perturbations carried across epochs) at linf 0.3"
        ),
        _hardened("mnist-strided", "ibp", "IBP training at linf 0.2 (certified at 0.1)"),
        _hardened("cifar10-cnn", "noise-0.25", "Gaussian noise augmentation, sigma 0.25 (for smoothing)"),
        _hardened("mnist-strided", "noise-0.25", "Gaussian noise augmentation, sigma 0.25 (for smoothing)"),
    )
}
_SPECS.update(HARDENED)


def spec_names() -> list[str]:
    """Every registered architecture, in training order (small to large)."""
    return list(_SPECS)


def spec(name: str) -> ZooSpec:
    """The :class:`ZooSpec` of ``name``; an unknown name raises :class:`ModelContractError`."""
    try:
        return _SPECS[name]
    except KeyError:
        raise ModelContractError(
            f"unknown zoo model {name!r}; available: {', '.join(sorted(_SPECS))}"
        ) from None


def build(name: str) -> nn.Module:
    """A freshly initialised (untrained) module for ``name``; seed torch yourself for reproducible init."""
    return spec(name).builder()
