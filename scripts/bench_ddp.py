#!/usr/bin/python3
"""PyTorch DDP reference for build/bench: the same models, batches per rank,
optimizer, ranks and threads as the framework's scaling suite.

Run under mpirun (ranks come from Open MPI's environment), with Debian's
python3-torch (gloo backend):

    mpirun -np 2 /usr/bin/python3 scripts/bench_ddp.py --json out/ddp.json

Rank 0 also times plain PyTorch eager on one rank (no DDP) while the other
ranks wait, as bench does for its own one-rank figure.
"""
import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(root, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(root, name)):
            return os.path.join(root, name)
    raise SystemExit(f"bench_ddp.py: neither {root}/{stem} nor {root}/{stem}.gz exists (--data)")


def mlp():
    # build/bench's MLP: 784-512-256 trunk, one 10-way head.
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def vgg9(in_channels=1, size=28):
    # models/conv_nets.h: conv 32-32-pool-64-64-pool-128-128-pool, fc 256-256, head.
    layers, channels = [], in_channels
    for width in (32, 64, 128):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                   nn.ReLU(), nn.MaxPool2d(2)]
        channels, size = width, size // 2
    layers += [nn.Flatten(), nn.Linear(128 * size * size, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
               nn.Linear(256, 10)]
    return nn.Sequential(*layers)


def steps_per_second(model, images, labels, batch, steps, repeats, rank, world, lr, momentum, generator):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    rates = []
    for repeat in range(repeats + 1):  # the first repetition warms up
        order = torch.randperm(images.shape[0], generator=generator)
        start = time.perf_counter()
        for step in range(steps):
            # Each rank takes its share of the global batch, as the framework's sampler does.
            positions = order[(step * world + rank) * batch:(step * world + rank + 1) * batch]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images[positions]), labels[positions])
            loss.backward()
            optimizer.step()
        if repeat > 0:
            rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp,vgg9")
    parser.add_argument("--batch", type=int, default=128, help="batch size per rank")
    parser.add_argument("--mlp-steps", type=int, default=300)
    parser.add_argument("--conv-steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("RANK", "0")))
    world = int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    torch.set_num_threads(args.threads)
    images = torch.from_numpy(read_idx(find(args.data, "train-images-idx3-ubyte")).astype(np.float32) / 255.0)
    images = images.unsqueeze(1).contiguous()
    labels = torch.from_numpy(read_idx(find(args.data, "train-labels-idx1-ubyte")).astype(np.int64))

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank, world_size=world)
    results = []
    for name in args.models.split(","):
        steps = args.mlp_steps if name == "mlp" else args.conv_steps
        build = mlp if name == "mlp" else vgg9
        eager = None
        if rank == 0:
            torch.manual_seed(1)
            eager = steps_per_second(build(), images, labels, args.batch, steps, args.repeats, 0, 1, 0.01, 0.9,
                                     torch.Generator().manual_seed(1))
        dist.barrier()
        torch.manual_seed(1)
        ddp = nn.parallel.DistributedDataParallel(build())
        rate = steps_per_second(ddp, images, labels, args.batch, steps, args.repeats, rank, world, 0.01, 0.9,
                                torch.Generator().manual_seed(1))
        rate_tensor = torch.tensor([rate])
        dist.all_reduce(rate_tensor, op=dist.ReduceOp.MIN)  # the slowest rank sets the pace
        if rank == 0:
            results.append({"model": name, "ranks": world, "threads": args.threads, "per_rank_batch": args.batch,
                            "steps_per_second": rate_tensor.item(), "eager_1rank_steps_per_second": eager})
            print(f"bench_ddp: {name}: DDP {world} ranks {rate_tensor.item():.1f} steps/s, "
                  f"eager 1 rank {eager:.1f} steps/s", flush=True)
    if rank == 0:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "backend": "gloo", "results": results}, f, indent=2)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
