"""Torch nets shaped like the ones users export, warmed so their BN statistics are not trivial.

Each is a small copy of a familiar architecture (not built around what bnfold folds):

* ``EfficientNetTiny``: MBConv blocks (1x1 expand, depthwise 3x3, squeeze-and-excitation,
  1x1 project, residual) with SiLU; exactly 15 BatchNormalization.
* ``PreActResNetTiny``: pre-activation blocks ``BN -> ReLU -> Conv``; the BN after a residual
  Add has no linear producer and a padded Conv behind a ReLU, so it cannot fold and must be
  kept with a reason.
* ``UNetTiny``: encoder/decoder with MaxPool, ConvTranspose upsampling + BN, skip concats.
* ``TemporalConvNet``: Conv1d with dilation and causal (left) padding, BN1d, residual 1x1.

``warm(net)`` trains it for a few steps on random data whose channels have offsets and
scales far from (0, 1), so running means/variances and γ/β are all non-trivial, then
leaves it in *train* mode: ``export_torch`` must switch to eval and back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(nn.functional.silu(self.reduce(scale))))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*conv_bn(cin, mid, 1), nn.SiLU()]
        layers += [*conv_bn(mid, mid, 3, stride, groups=mid), nn.SiLU()]
        layers += [SqueezeExcite(mid, max(1, cin // 4)), *conv_bn(mid, cout, 1)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class EfficientNetTiny(nn.Module):
    """stem (1 BN) + MBConv e1 (2) + four MBConv e4 (3 each) = 15 BatchNormalization."""

    batchnorms = 15

    def __init__(self, classes: int = 7) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 8, 3, 2), nn.SiLU())
        self.blocks = nn.Sequential(
            MBConv(8, 8, 1, 1),
            MBConv(8, 12, 4, 2),
            MBConv(12, 12, 4, 1),
            MBConv(12, 16, 4, 2),
            MBConv(16, 16, 4, 1),
        )
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + skip


class PreActResNetTiny(nn.Module):
    """conv stem, three pre-activation blocks, final BN -> ReLU -> pool -> Linear."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.layers = nn.Sequential(
            PreActBlock(8, 8, 1), PreActBlock(8, 16, 2), PreActBlock(16, 16, 1)
        )
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.layers(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(*conv_bn(cin, cout), nn.ReLU(), *conv_bn(cout, cout), nn.ReLU())


class UNetTiny(nn.Module):
    """Two-level U-Net: DoubleConv encoders, MaxPool, ConvTranspose(2,2)+BN up, skip concat."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.enc1 = DoubleConv(3, 8)
        self.enc2 = DoubleConv(8, 16)
        self.bottom = DoubleConv(16, 24)
        self.up2 = nn.Sequential(nn.ConvTranspose2d(24, 16, 2, 2), nn.BatchNorm2d(16), nn.ReLU())
        self.dec2 = DoubleConv(32, 16)
        self.up1 = nn.Sequential(nn.ConvTranspose2d(16, 8, 2, 2), nn.BatchNorm2d(8), nn.ReLU())
        self.dec1 = DoubleConv(16, 8)
        self.out = nn.Conv2d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        b = self.bottom(nn.functional.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.out(d1)


class TemporalBlock(nn.Module):
    """Two causal dilated Conv1d + BN1d + ReLU, residual (1x1 Conv1d + BN when widths differ)."""

    def __init__(self, cin: int, cout: int, dilation: int, k: int = 3) -> None:
        super().__init__()
        self.pad = (k - 1) * dilation
        self.conv1 = nn.Conv1d(cin, cout, k, dilation=dilation)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, k, dilation=dilation)
        self.bn2 = nn.BatchNorm1d(cout)
        self.down = (
            nn.Sequential(nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout))
            if cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(nn.functional.pad(x, (self.pad, 0)))))
        y = torch.relu(self.bn2(self.conv2(nn.functional.pad(y, (self.pad, 0)))))
        return torch.relu(y + self.down(x))


class TemporalConvNet(nn.Module):
    """Input (N, C, T): three temporal blocks with dilation 1, 2, 4, then a per-step head."""

    def __init__(self, channels: int = 6, classes: int = 4) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            TemporalBlock(channels, 12, 1), TemporalBlock(12, 12, 2), TemporalBlock(12, 16, 4)
        )
        self.head = nn.Conv1d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def warm(net: nn.Module, shape: tuple[int, ...], *, seed: int = 0, steps: int = 4) -> nn.Module:
    """Train ``net`` a few SGD steps on shifted, scaled random data; leave it in train mode.

    Inputs are ``scale_c * N(0, 1) + offset_c`` per channel with scales in [0.5, 3] and offsets
    in [-2, 2], and BN momentum is raised so the running statistics move far from (0, 1);
    the SGD steps move γ and β away from (1, 0).
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    channel_shape = (1, shape[1]) + (1,) * (len(shape) - 2)
    scale = 0.5 + 2.5 * torch.rand(channel_shape, generator=generator)
    offset = 4.0 * torch.rand(channel_shape, generator=generator) - 2.0
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.5
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    net.train()
    for _ in range(steps):
        x = scale * torch.randn(shape, generator=generator) + offset
        out = net(x)
        loss = (out - 1.0).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net


@dataclass(frozen=True)
class Net:
    name: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]

    def warmed(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return warm(self.build(), self.shape, seed=seed)

    def example(self, seed: int = 0) -> torch.Tensor:
        return torch.randn(self.shape, generator=torch.Generator().manual_seed(100 + seed))


NETS = (
    Net("efficientnet", EfficientNetTiny, (2, 3, 32, 32)),
    Net("preact_resnet", PreActResNetTiny, (2, 3, 16, 16)),
    Net("unet", UNetTiny, (1, 3, 16, 16)),
    Net("tcn", TemporalConvNet, (2, 6, 32)),
)
