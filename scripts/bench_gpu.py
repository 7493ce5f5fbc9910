#!/usr/bin/env python3
"""PyTorch reference for scripts/gpu_check.sh: steps/s of PyTorch eager and of
PyTorch DDP (one process) on one device, with the models, batch, optimizer and
precision of build/bench's overhead suite:

  - mlp: 784-512-256 with one 10-way head (models/multi_head_model.cpp);
  - resnet18: the small-image stem (3x3 conv, no max-pool), BasicBlocks of
    64/128/256/512 x --width channels, global average pool, one 10-way head
    (models/conv_nets.cpp);
  - SGD, lr 0.01, momentum 0.9; batches drawn from Fashion-MNIST held on the
    device; bf16 = autocast for the forward pass and the loss, as the trainer's
    train.precision=bf16.

    python3 scripts/bench_gpu.py --device cuda --precision fp32,bf16 --models mlp,resnet18 --json out.json

DDP runs in this one process over NCCL (gloo with --device cpu), as a one-GPU
torchrun job would: what PyTorch's own data-parallel wrapper costs on one rank.
scripts/bench_ddp.py is the multi-rank CPU reference; its IDX reader and MLP
are reused here.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ddp import find, mlp, read_idx  # noqa: E402  (the CPU reference's reader and MLP)


class BasicBlock(nn.Module):
    """models/conv_nets.cpp's BasicBlock: two 3x3 convolutions with BatchNorm,
    a 1x1 convolution + BatchNorm shortcut when the shape changes."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


def scaled(channels, width):
    return max(1, round(channels * width))


def resnet18(width, in_channels=1, classes=10):
    """models/conv_nets.cpp's make_resnet18 with the small stem (28 px inputs)."""
    channels = scaled(64, width)
    layers = [nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
    for stage, stage_channels in enumerate((64, 128, 256, 512)):
        out = scaled(stage_channels, width)
        layers += [BasicBlock(channels, out, 1 if stage == 0 else 2), BasicBlock(out, out, 1)]
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]
    return nn.Sequential(*layers)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_second(model, images, labels, batch, steps, repeats, precision, device):
    """Median steps/s over `repeats` timed runs of `steps` steps, after one warm-up run."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator(device=device).manual_seed(1)
    model.train()
    rates = []
    for repeat in range(repeats + 1):  # the first run warms up: allocator, cuDNN plans, autocast caches
        order = torch.randperm(images.shape[0], generator=generator, device=device)
        synchronize(device)
        start = time.perf_counter()
        for step in range(steps):
            positions = order[step * batch:(step + 1) * batch]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(images[positions]), labels[positions])
            loss.backward()
            optimizer.step()
        synchronize(device)
        if repeat > 0:
            rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def load_images(root, device, samples):
    images = read_idx(find(root, "train-images-idx3-ubyte"))[:samples].astype(np.float32) / 255.0
    labels = read_idx(find(root, "train-labels-idx1-ubyte"))[:samples].astype(np.int64)
    return (torch.from_numpy(images).unsqueeze(1).contiguous().to(device),
            torch.from_numpy(labels).to(device))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--models", default="mlp,resnet18", help="comma-separated: mlp, resnet18")
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=float, default=1.0, help="resnet18 channel multiplier")
    parser.add_argument("--mlp-steps", type=int, default=300)
    parser.add_argument("--conv-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (cpu)")
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--no-ddp", action="store_true", help="eager only")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    models = [m for m in args.models.split(",") if m]
    precisions = [p for p in args.precision.split(",") if p]
    for name in models:
        if name not in ("mlp", "resnet18"):
            parser.error(f"--models: '{name}' is not one of mlp, resnet18")
    for precision in precisions:
        if precision not in ("fp32", "bf16"):
            parser.error(f"--precision: '{precision}' is not one of fp32, bf16")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"bench_gpu.py: error: --device cuda but torch {torch.__version__} sees no CUDA device")
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    torch.set_num_threads(args.threads)
    steps_needed = max(args.mlp_steps if "mlp" in models else 0, args.conv_steps if "resnet18" in models else 0)
    images, labels = load_images(args.data, device, steps_needed * args.batch)
    if images.shape[0] < steps_needed * args.batch:
        raise SystemExit(f"bench_gpu.py: error: {args.data} has {images.shape[0]} images, "
                         f"{steps_needed} steps of batch {args.batch} need {steps_needed * args.batch}")

    ddp_backend = "nccl" if device.type == "cuda" else "gloo"
    store = tempfile.NamedTemporaryFile(prefix="bench_gpu-store-", delete=False)
    store.close()
    os.unlink(store.name)  # the file store creates it
    if not args.no_ddp:
        dist.init_process_group(ddp_backend, init_method=f"file://{store.name}", rank=0, world_size=1)
    results = []
    try:
        for name in models:
            steps = args.mlp_steps if name == "mlp" else args.conv_steps
            for precision in precisions:
                torch.manual_seed(1)
                model = (mlp() if name == "mlp" else resnet18(args.width)).to(device)
                eager = steps_per_second(model, images, labels, args.batch, steps, args.repeats, precision, device)
                entry = {"model": name, "precision": precision, "batch": args.batch,
                         "width": args.width if name != "mlp" else None, "steps": steps,
                         "eager_steps_per_second": eager}
                if not args.no_ddp:
                    torch.manual_seed(1)
                    module = (mlp() if name == "mlp" else resnet18(args.width)).to(device)
                    ddp = nn.parallel.DistributedDataParallel(module, device_ids=[0] if device.type == "cuda" else None)
                    entry["ddp_steps_per_second"] = steps_per_second(ddp, images, labels, args.batch, steps,
                                                                     args.repeats, precision, device)
                    entry["ddp_backend"] = ddp_backend
                results.append(entry)
                ddp_text = f", DDP {entry['ddp_steps_per_second']:.1f}" if "ddp_steps_per_second" in entry else ""
                print(f"bench_gpu: {name} {precision}: eager {eager:.1f}{ddp_text} steps/s", flush=True)
    finally:
        if not args.no_ddp:
            dist.destroy_process_group()
        if os.path.exists(store.name):
            os.unlink(store.name)
    out = {"torch": torch.__version__, "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "cuda": torch.version.cuda, "threads": args.threads, "results": results}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
