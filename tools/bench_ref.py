#!/usr/bin/env python3
"""Reference timing of kr's training steps in Python PyTorch eager.

--model resnet20: the teacher's step (SGD, cross-entropy); --mode eval its eval-mode
forward under no_grad; --mode distill a student step toward a teacher's softmax (the
teacher in eval mode under no_grad), as kr distill's step. --model unet: the DDPM's
step (Adam, epsilon-prediction MSE at random timesteps and labels). --model gan: the
class-conditional GAN's step as kr's (docs/ARCHITECTURE.md "gan"), written as a PyTorch
user would: nearest upsample + conv3x3, torch.nn.utils.spectral_norm, hinge loss,
--d-steps discriminator steps on real and fresh fakes in one forward, a generator step,
the EMA update. --ranks N runs N
processes under DistributedDataParallel (gloo), each pinned to its own cores, as a
PyTorch user with N cores would run it.
Written for kr's benchmark (not a copy of any other code): the networks follow
shared/docs/ARCHITECTURES.md like kr's C++ ones. Prints one JSON line.
"""
import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import warnings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--layout", choices=["nchw", "channels_last"], default="nchw")
    parser.add_argument("--iterations", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--model", choices=["resnet20", "unet", "gan"], default="resnet20")
    parser.add_argument("--g-width", type=int, default=16, help="gan: generator width")
    parser.add_argument("--d-width", type=int, default=16, help="gan: discriminator width")
    parser.add_argument("--d-steps", type=int, default=2, help="gan: discriminator steps per generator step")
    parser.add_argument("--mode", choices=["train", "eval", "distill"], default="train",
                        help="eval: resnet20's eval-mode forward under torch.no_grad(); distill: a student step on a teacher's soft targets")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="resnet20 eval and distill: bf16 runs the no-grad forward (the teacher's, in distill) "
                             "under torch.autocast('cpu', torch.bfloat16), as a PyTorch user would ask for it")
    parser.add_argument("--ranks", type=int, default=1, help="processes under DistributedDataParallel (gloo)")
    parser.add_argument("--width", type=int, default=0, help="resnet20: 16, unet: 32 by default")
    parser.add_argument("--allocator", choices=["glibc", "tcmalloc"], default="glibc",
                        help="malloc of the process: tcmalloc (kr's, Note [Allocator]) is preloaded by re-executing")
    args = parser.parse_args()
    if args.width == 0:
        args.width = {"resnet20": 16, "unet": 32, "gan": args.g_width}[args.model]
    if args.allocator == "tcmalloc" and "tcmalloc" not in os.environ.get("LD_PRELOAD", ""):
        library = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
        if not os.path.exists(library):
            raise SystemExit("bench_ref: --allocator tcmalloc needs %s (libtcmalloc-minimal4)" % library)
        os.environ["LD_PRELOAD"] = library
        os.execv(sys.executable, [sys.executable] + sys.argv)
    if args.ranks > 1 and "KR_BENCH_RANK" not in os.environ:
        # The launcher: one process per rank, as torchrun would start them.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        children = []
        for rank in range(args.ranks):
            env = dict(os.environ, KR_BENCH_RANK=str(rank), RANK=str(rank), WORLD_SIZE=str(args.ranks),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            children.append(subprocess.Popen([sys.executable] + sys.argv, env=env))
        codes = [child.wait() for child in children]
        if any(codes):
            raise SystemExit("bench_ref: a rank failed (exit codes %s)" % codes)
        return
    rank = int(os.environ.get("KR_BENCH_RANK", "0"))
    if args.ranks > 1 and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        mine = cores[rank * args.threads:(rank + 1) * args.threads]
        if len(mine) == args.threads:
            os.sched_setaffinity(0, mine)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import math

    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.set_num_threads(args.threads)
    # A 1-channel stem weight is both NCHW and channels-last: DDP's stride warning about it is noise.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    if args.ranks > 1:
        import torch.distributed as dist
        dist.init_process_group("gloo")

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

    def group_norm(channels):
        return nn.GroupNorm(8, channels)

    class Residual(nn.Module):
        def __init__(self, cin, cout, embedding):
            super().__init__()
            self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.project = nn.Linear(embedding, cout)
            self.norm2, self.conv2 = group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

        def forward(self, x, embedding):
            h = self.conv1(F.silu(self.norm1(x))) + self.project(embedding)[:, :, None, None]
            h = self.conv2(F.silu(self.norm2(h)))
            return h + (self.skip(x) if self.skip is not None else x)

    class Attention(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.norm, self.qkv, self.out = group_norm(channels), nn.Conv2d(channels, 3 * channels, 1), nn.Conv2d(channels, channels, 1)

        def forward(self, x):
            b, c, h, w = x.shape
            q, k, v = self.qkv(self.norm(x)).view(b, 3, c, h * w).unbind(1)
            weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) / math.sqrt(c), -1)
            return x + self.out(torch.bmm(v, weights.transpose(1, 2)).view(b, c, h, w))

    class UNet(nn.Module):
        def __init__(self, c, channels=1, classes=10):
            super().__init__()
            e, widths = 4 * c, [c, 2 * c, 2 * c]
            self.c = c
            self.time1, self.time2 = nn.Linear(c, e), nn.Linear(e, e)
            self.class_embed = nn.Embedding(classes + 1, e)
            self.conv_in = nn.Conv2d(channels, c, 3, padding=1)
            self.encoder, self.downs, current = nn.ModuleList(), nn.ModuleList(), c
            for level, width in enumerate(widths):
                self.encoder.append(Residual(current, width, e))
                current = width
                if level + 1 < len(widths):
                    self.downs.append(nn.Conv2d(current, current, 3, stride=2, padding=1))
            self.mid1, self.attention, self.mid2 = Residual(current, current, e), Attention(current), Residual(current, current, e)
            self.decoder, self.ups = nn.ModuleList(), nn.ModuleList()
            for level in reversed(range(len(widths))):
                self.decoder.append(Residual(current + widths[level], widths[level], e))
                current = widths[level]
                if level > 0:
                    self.ups.append(nn.Conv2d(current, current, 3, padding=1))
            self.norm_out, self.conv_out = group_norm(c), nn.Conv2d(c, channels, 3, padding=1)

        def forward(self, x, t, labels):
            half = self.c // 2
            frequencies = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / half))
            angles = t.float()[:, None] * frequencies[None]
            embedding = self.time2(F.silu(self.time1(torch.cat([angles.sin(), angles.cos()], 1)))) + self.class_embed(labels)
            h, skips = self.conv_in(x), []
            for level, block in enumerate(self.encoder):
                h = block(h, embedding)
                skips.append(h)
                if level < len(self.downs):
                    h = self.downs[level](h)
            h = self.mid2(self.attention(self.mid1(h, embedding)), embedding)
            for i, block in enumerate(self.decoder):
                h = block(torch.cat([h, skips[len(skips) - 1 - i]], 1), embedding)
                if i < len(self.ups):
                    h = self.ups[i](F.interpolate(h, scale_factor=2, mode="nearest"))
            return self.conv_out(F.silu(self.norm_out(h)))


    class ConditionalNorm(nn.Module):
        def __init__(self, channels, condition):
            super().__init__()
            self.norm = nn.GroupNorm(8, channels, affine=False)
            self.affine = nn.Linear(condition, 2 * channels)
            nn.init.zeros_(self.affine.weight)
            nn.init.zeros_(self.affine.bias)

        def forward(self, x, condition):
            gamma, beta = self.affine(condition)[:, :, None, None].chunk(2, 1)
            return self.norm(x) * (1 + gamma) + beta

    class Generator(nn.Module):
        def __init__(self, g, latent=64, classes=10, channels=1, side=28):
            super().__init__()
            self.g, self.quarter, condition = g, side // 4, latent + 64
            self.embed = nn.Embedding(classes, 64)
            self.linear = nn.Linear(condition, 4 * g * self.quarter * self.quarter)
            self.norm1, self.norm2, self.norm3 = (ConditionalNorm(4 * g, condition), ConditionalNorm(2 * g, condition),
                                                  ConditionalNorm(g, condition))
            self.conv1, self.conv2 = nn.Conv2d(4 * g, 2 * g, 3, padding=1), nn.Conv2d(2 * g, g, 3, padding=1)
            self.out = nn.Conv2d(g, channels, 3, padding=1)

        def forward(self, z, labels):
            condition = torch.cat([z, self.embed(labels)], 1)
            h = self.linear(condition).view(-1, 4 * self.g, self.quarter, self.quarter)
            h = self.conv1(F.interpolate(torch.relu(self.norm1(h, condition)), scale_factor=2, mode="nearest"))
            h = self.conv2(F.interpolate(torch.relu(self.norm2(h, condition)), scale_factor=2, mode="nearest"))
            return torch.tanh(self.out(torch.relu(self.norm3(h, condition))))

    class Discriminator(nn.Module):
        def __init__(self, d, classes=10, channels=1):
            super().__init__()
            sn = nn.utils.spectral_norm
            self.convs = nn.ModuleList([sn(nn.Conv2d(channels, d, 3, 1, 1)), sn(nn.Conv2d(d, 2 * d, 3, 2, 1)),
                                        sn(nn.Conv2d(2 * d, 2 * d, 3, 1, 1)), sn(nn.Conv2d(2 * d, 4 * d, 3, 2, 1)),
                                        sn(nn.Conv2d(4 * d, 4 * d, 3, 1, 1))])
            self.head = sn(nn.Linear(4 * d, 1))
            self.embed = nn.Embedding(classes, 4 * d)

        def forward(self, x, labels):
            for conv in self.convs:
                x = F.leaky_relu(conv(x), 0.2)
            h = x.sum((2, 3))
            return self.head(h).squeeze(1) + (self.embed(labels) * h).sum(1)

    images = torch.randn(args.batch, 1, 28, 28)
    labels = torch.randint(0, 10, (args.batch,))
    if args.model == "gan":
        model = Generator(args.g_width)
        discriminator = Discriminator(args.d_width)
    else:
        model = ResNet20(w=args.width) if args.model == "resnet20" else UNet(args.width)
    if args.layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if args.precision == "bf16" and (args.model != "resnet20" or args.mode == "train"):
        parser.error("--precision bf16 times resnet20's eval and distill rows only")

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")

    trained = model
    if args.ranks > 1 and args.mode != "eval":
        trained = nn.parallel.DistributedDataParallel(model)  # 25 MiB buckets, as kr's default
    if args.model == "gan":
        optimizer = None  # the GAN's step below has its own two
    elif args.model == "resnet20" and args.mode == "distill":
        torch.manual_seed(2)
        teacher = ResNet20(w=args.width)
        if args.layout == "channels_last":
            teacher = teacher.to(memory_format=torch.channels_last)
        teacher.eval()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def loss():
            with torch.no_grad(), autocast():
                targets = torch.softmax(teacher(images).float(), 1)
            return -(targets * torch.log_softmax(trained(images), 1)).sum(1).mean()
    elif args.model == "resnet20":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def loss():
            return loss_fn(trained(images), labels)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
        alphas_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)

        def loss():
            t = torch.randint(0, 1000, (args.batch,))
            noise = torch.randn_like(images)
            bar = alphas_bar[t].view(-1, 1, 1, 1)
            noisy = bar.sqrt() * images + (1 - bar).sqrt() * noise
            return F.mse_loss(trained(noisy, t, torch.randint(0, 11, (args.batch,))), noise)

    def step():
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()

    if args.model == "gan":
        if args.layout == "channels_last":
            discriminator = discriminator.to(memory_format=torch.channels_last)
        critic = discriminator
        if args.ranks > 1:
            critic = nn.parallel.DistributedDataParallel(discriminator)
        ema = Generator(args.g_width)
        ema.load_state_dict(model.state_dict())
        for p in ema.parameters():
            p.requires_grad_(False)
        g_optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
        d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        real = images.clamp(-1, 1)
        both = torch.cat([labels, labels])

        def step():  # noqa: F811 (the GAN's step replaces the classifier's)
            for _ in range(args.d_steps):
                with torch.no_grad():
                    fake = model(torch.randn(args.batch, 64), labels)
                scores = critic(torch.cat([real, fake]), both)
                d_loss = torch.relu(1 - scores[:args.batch]).mean() + torch.relu(1 + scores[args.batch:]).mean()
                d_optimizer.zero_grad()
                d_loss.backward()
                d_optimizer.step()
            g_optimizer.zero_grad()
            with critic.no_sync() if args.ranks > 1 else contextlib.nullcontext():
                g_loss = -critic(trained(torch.randn(args.batch, 64), labels), labels).mean()
                g_loss.backward()
            g_optimizer.step()
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 0.001)

    if args.mode == "eval":
        if args.model != "resnet20":
            parser.error("--mode eval times resnet20 only")
        model.eval()

        def step():  # noqa: F811 (the inference row replaces the training step)
            with torch.no_grad(), autocast():
                model(images)

    def barrier():
        if args.ranks > 1:
            torch.distributed.barrier()

    for _ in range(args.warmup):
        step()
    barrier()
    start = time.perf_counter()
    for _ in range(args.iterations):
        step()
    barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        row = {"impl": "pytorch", "model": args.model, "mode": args.mode, "width": args.width,
               "precision": args.precision,
               "parameters": sum(p.numel() for p in model.parameters())}
        if args.model == "gan":
            row.update({"d_width": args.d_width, "d_steps": args.d_steps,
                        "discriminator_parameters": sum(p.numel() for p in discriminator.parameters())})
        print(json.dumps(dict(row, **{"ranks": args.ranks,
                          "threads_per_rank": args.threads, "batch_per_rank": args.batch, "layout": args.layout,
                          "allocator": args.allocator, "ddp": args.ranks > 1 and args.mode != "eval",
                          "images_per_second": args.ranks * args.batch * args.iterations / seconds,
                          "torch": torch.__version__})), flush=True)


if __name__ == "__main__":
    main()
