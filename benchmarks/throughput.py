"""Training throughput of the full step (augment + forward + teacher + loss + backward + SGD).

For each strategy and precision, a 2-task synthetic stream (random uint8
32x32 images, 10 classes) is trained by the real runner; the images/s of the
last task, where LwF has a teacher, is recorded. With --compile the stream
has 5 tasks, so that the last task runs on graphs compiled earlier (the
student's in task 1, the teacher's in task 2). A "bare" reference trains
the same network on pre-normalised float tensors with plain CE: no
augmentation, no teacher, no runner. Repeats are interleaved and medians
reported; ratios compare medians from the same run.

    python benchmarks/throughput.py                   # CPU: fp32 and bf16, batch 128
    python benchmarks/throughput.py --device cuda     # on a GPU
    python benchmarks/throughput.py --compile --output throughput_cpu_compile.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import provenance, save

from lifelong_kd.data import tensor_stream
from lifelong_kd.models import build_model
from lifelong_kd.runner import Runner
from lifelong_kd.strategies import build_strategy
from lifelong_kd.training import TrainConfig, seed_everything


def synthetic_stream(per_task: int, n_tasks: int):
    rng = np.random.default_rng(0)
    n = n_tasks * per_task
    train_x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    train_y = np.arange(n) % 10
    test_x = rng.integers(0, 256, (100, 3, 32, 32), dtype=np.uint8)
    return tensor_stream(train_x, train_y, test_x, np.arange(100) % 10, n_tasks=n_tasks)


def runner_rate(strategy: str, amp: str, args: argparse.Namespace, stream) -> float:
    seed_everything(0)
    model = build_model(args.model, 3, 10)
    config = TrainConfig(
        batch_size=args.batch_size, device=args.device, amp=amp, channels_last=args.channels_last,
        compile="on" if args.compile else "off", eval_batch_size=100,
    )
    doc = Runner(model, build_strategy(strategy, lr=0.01), stream, config, progress=False).run()
    return doc["timing"]["images_per_second"][-1]


def bare_rate(amp: str, args: argparse.Namespace, steps: int) -> float:
    seed_everything(0)
    model = build_model(args.model, 3, 10, head="fixed").to(args.device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    x = torch.randn(args.batch_size, 3, 32, 32, device=args.device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (args.batch_size,), device=args.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    backbone = torch.compile(model.backbone) if args.compile else model.backbone
    device_type = torch.device(args.device).type

    def step() -> None:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            features = backbone(x)
        loss = F.cross_entropy(model.head(features.float()), y)  # the head in float32, as in the runner
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    return args.batch_size * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="reduced-resnet18")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images-per-task", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=["finetune", "lwf"])
    parser.add_argument("--amps", nargs="+", default=["off", "bf16"])
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone (bare and runner alike)")
    parser.add_argument("--output", default=None, help="results file name (default: throughput_<device>.json)")
    args = parser.parse_args()
    origin = provenance()  # taken before the runs: the code they ran

    stream = synthetic_stream(args.images_per_task, 5 if args.compile else 2)
    steps = args.images_per_task // args.batch_size
    samples: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for amp in args.amps:
            for name in ["bare", *args.strategies]:
                rate = bare_rate(amp, args, steps) if name == "bare" else runner_rate(name, amp, args, stream)
                samples.setdefault(f"{name}/{amp}", []).append(rate)
                print(f"repeat {repeat + 1}: {name:<9} {amp:<4} {rate:8.1f} img/s", flush=True)
    medians = {key: statistics.median(values) for key, values in samples.items()}
    ratios: dict[str, float] = {}
    for amp in args.amps:
        for name in args.strategies:
            if name != "finetune" and "finetune" in args.strategies:
                ratios[f"time {name}/finetune ({amp})"] = medians[f"finetune/{amp}"] / medians[f"{name}/{amp}"]
            ratios[f"speed {name} full step / bare model ({amp})"] = medians[f"{name}/{amp}"] / medians[f"bare/{amp}"]
    if {"off", "bf16"} <= set(args.amps):
        for name in ["bare", *args.strategies]:
            ratios[f"speed bf16/fp32 ({name})"] = medians[f"{name}/bf16"] / medians[f"{name}/off"]
    print("\nmedian images/s:")
    for key, value in medians.items():
        print(f"  {key:<16}{value:8.1f}")
    print("ratios:")
    for key, value in ratios.items():
        print(f"  {key:<44}{value:6.3f}")
    payload = {
        **origin,
        "setup": {
            "model": args.model, "batch_size": args.batch_size, "images_per_task": args.images_per_task,
            "repeats": args.repeats, "device": args.device, "channels_last": args.channels_last,
            "compile": args.compile,
            "measured": "images/s of the last task's training (teacher present for distillation strategies)",
        },
        "samples_images_per_second": samples,
        "median_images_per_second": medians,
        "ratios": ratios,
    }
    device = torch.device(args.device).type
    print(f"saved {save(args.output or f'throughput_{device}.json', payload)}")


if __name__ == "__main__":
    main()
