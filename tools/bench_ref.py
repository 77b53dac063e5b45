#!/usr/bin/env python3
"""Reference timing of the same resnet20 training step in Python PyTorch eager.

Written for kr's benchmark (not a copy of any other code): the network follows
shared/docs/ARCHITECTURES.md like kr's C++ one. Prints one JSON line.
"""
import argparse
import json
import os
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--layout", choices=["nchw", "channels_last"], default="nchw")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--width", type=int, default=16)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + self.shortcut(x))

    class ResNet20(nn.Module):
        def __init__(self, channels=1, classes=10, w=16):
            super().__init__()
            self.stem = nn.Conv2d(channels, w, 3, 1, 1, bias=False)
            self.stem_bn = nn.BatchNorm2d(w)
            layers, cin = [], w
            for stage in range(3):
                cout = w << stage
                for block in range(3):
                    layers.append(Block(cin, cout, 2 if stage > 0 and block == 0 else 1))
                    cin = cout
            self.stages = nn.Sequential(*layers)
            self.head = nn.Linear(4 * w, classes)

        def forward(self, x):
            y = torch.relu(self.stem_bn(self.stem(x)))
            return self.head(self.stages(y).mean((2, 3)))

    model = ResNet20(w=args.width)
    images = torch.randn(args.batch, 1, 28, 28)
    labels = torch.randint(0, 10, (args.batch,))
    if args.layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        loss_fn(model(images), labels).backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    print(json.dumps({"impl": "pytorch", "model": "resnet20", "ranks": 1, "threads_per_rank": args.threads,
                      "batch_per_rank": args.batch, "layout": args.layout,
                      "images_per_second": args.batch * args.steps / seconds,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
