"""Resume on real data: a DER++ run on Split-CIFAR-10 killed with SIGKILL and resumed, against the same
run never interrupted (``benchmarks/resume_cifar.py``), and what its checkpoints cost."""

from __future__ import annotations

from typing import Any

from report import Results, code, command, fmt, option, source, table

TITLE = "Resume on real data"


def _matrix(rows: list[list[float | None]]) -> str:
    """An accuracy matrix, one row per task trained, blank above the diagonal."""
    header = ["class-IL after task", *(f"T{j + 1}" for j in range(len(rows)))]
    body = [[str(i + 1), *(fmt(cell) if cell is not None and j <= i else "" for j, cell in enumerate(row))]
            for i, row in enumerate(rows)]
    return table(header, body)


def _position(where: dict[str, Any]) -> str:
    """A checkpoint's place in the run, tasks counted from 1."""
    return f"task {where['task'] + 1} ({where['stage']}, step {where['step']})"


def _cells_differing(a: dict[str, Any], b: dict[str, Any]) -> int:
    """How many cells of the class-IL and task-IL matrices differ between two runs."""
    return sum(x != y for key in ("class_il", "task_il")
               for row_a, row_b in zip(a["matrices"][key], b["matrices"][key], strict=True)
               for x, y in zip(row_a, row_b, strict=True))


def _equality(reference: dict[str, Any], killed: dict[str, Any]) -> str:
    differing = _cells_differing(reference, killed)
    if differing == 0:
        return "its class-IL matrix and its task-IL matrix equal the uninterrupted run's in every cell"
    return f"its matrices differ from the uninterrupted run's in {differing} cells"


def render(results: Results) -> str:
    doc = results("resume_cifar.json")
    overhead = results("resume_cifar_overhead.json")
    protocol, runs = doc["protocol"], doc["results"]
    reference, killed = runs["reference"], runs["killed"]
    base = protocol["base"]
    setting = (f"DER++ on Split-CIFAR-10, {protocol['per_class']:,} training images per class, 1 epoch per task, "
               f"batch 32, M = 500, {option(base, '--amp')}, seed {option(base, '--seed')}, "
               f"a mid-task checkpoint every {protocol['every']} steps")
    kills = killed["kills"]
    killed_at = " and ".join(_position(k["resumes_from"]) for k in kills)
    out = [
        f"Measured with `benchmarks/resume_cifar.py`: {setting}. The run was sent SIGKILL from outside "
        f"{len(kills)} times during training, each time {fmt(protocol['kill_delay'], 0)} s after its checkpoint "
        f"showed it had passed step {protocol['every']} of a task, and was resumed with `lifelong-kd run "
        f"--resume OUT` from the checkpoints at {killed_at}. Compared with the same command run straight "
        f"through, {_equality(reference, killed)}. The resumed run's class-IL matrix:\n",
        _matrix(killed["matrices"]["class_il"]),
        code(command(doc)),
        source(results, "resume_cifar.json"),
    ]

    second = overhead["results"]
    second_kills = " and ".join(_position(k["checkpoint_position"]) for k in second["killed"]["kills"])
    full = second["full"]
    small = reference
    out.append(
        f"A second invocation of the same script, which also ran the whole of Split-CIFAR-10, killed the "
        f"same capped run {len(second['killed']['kills'])} times, with its checkpoint at {second_kills}; "
        f"{_equality(second['reference'], second['killed'])} here too.\n"
    )
    out.append(
        f"**What a checkpoint costs.** A checkpoint of this run (reduced ResNet-18, its teacher, SGD momentum, "
        f"the replay memory with its stored logits) is {fmt(small['checkpoint_mib'], 1)} MiB and takes "
        f"{1000 * small['checkpoint_seconds_median']:.0f} ms to write, fsync included (median of the "
        f"{small['checkpoints']} checkpoints of the uninterrupted run). On the whole of Split-CIFAR-10 (DER++, "
        f"1 epoch per task, no image cap, {fmt(full['wall_seconds'], 1)} s) the default interval of 10 minutes "
        f"wrote {full['checkpoints']} checkpoints in {fmt(full['checkpoint_seconds_total'])} s: "
        f"{fmt(100 * full['checkpoint_overhead'])} % of the run. A mid-task checkpoint every 10 minutes adds "
        f"about {1000 * full['checkpoint_seconds_median']:.0f} ms (that run's median checkpoint) per 10 minutes "
        f"of training.\n"
    )
    out.append(code(command(overhead)))
    out.append(source(results, "resume_cifar_overhead.json"))
    return "\n".join(out)
