"""Print parameters and multiply-accumulates per image of VGG16 at every width multiplier.

    python benchmarks/vgg_widths.py [--in-channels 1] [--input-size 28] [--classes 10]

Defaults: Fashion-MNIST (1 channel, 28x28 zero-padded to 32x32, 10 classes).
"""

from __future__ import annotations

import argparse
from fractions import Fraction

from correctnet.workloads.models import VGG_WIDTHS, build_model, count_macs, count_parameters


def main() -> None:
    """Print the table (markdown)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--input-size", type=int, default=28)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    print("| width | vgg16 parameters | vgg16_bn parameters | analog weights | MACs/image |")
    print("|---|---|---|---|---|")
    for w in VGG_WIDTHS:
        row = []
        for name in ("vgg16", "vgg16_bn"):
            m = build_model(name, num_classes=args.classes, in_channels=args.in_channels,
                            input_size=args.input_size, width=w)
            row.append(count_parameters(m))
        weights = sum(mod.weight.numel() for mod in m.modules() if hasattr(mod, "weight")
                      and mod.weight is not None and mod.weight.dim() > 1)
        macs = count_macs(m, (args.in_channels, args.input_size, args.input_size))
        print(f"| {Fraction(w).limit_denominator(16)} | {row[0]:,} | {row[1]:,} | {weights:,} "
              f"| {macs:,} |")


if __name__ == "__main__":
    main()
