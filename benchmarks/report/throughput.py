"""Throughput: training images/s of the whole step against the bare model, fp32 and bf16, at batch 128 and 32,
with and without ``torch.compile``, and of the replay strategies.

Reads ``throughput_cpu.json``, ``throughput_cpu_b32.json``, ``throughput_cpu_b32_compile.json``,
``throughput_cpu_replay.json`` and, for one comparison of ratios, ``throughput_cpu_b32_epyc.json``.
"""

from __future__ import annotations

from typing import Any

from . import ENTRIES, Results, code, command, fmt, source, table

TITLE = "Throughput"

REPLAY = (("finetune", "finetune", 1), ("lwf", "lwf (teacher forward)", 1), ("der", "der (1 replay batch)", 2),
          ("derpp", "derpp (2 replay batches)", 3))


def _setup(doc: dict[str, Any]) -> str:
    """The protocol a ``throughput.py`` file records, in words."""
    s = doc["setup"]
    return (f"{s['model']}, batch {s['batch_size']}, {s['images_per_task']} synthetic images per task, "
            f"channels_last {'on' if s['channels_last'] else 'off'}, {'compiled' if s.get('compile') else 'eager'}, "
            f"medians of {s['repeats']} interleaved repeats, on {doc['machine']['cpu_threads']} threads of an "
            f"{doc['machine']['cpu']}; measured: {s['measured']}")


def _pct(time_ratio: float) -> str:
    return f"{100 * (time_ratio - 1):.0f} %"


def _batch128(results: Results) -> str:
    doc = results("throughput_cpu.json")
    med, r = doc["median_images_per_second"], doc["ratios"]
    rows = [[label, fmt(med[f"{k}/off"], 0), fmt(med[f"{k}/bf16"], 0), fmt(r[f"speed bf16/fp32 ({k})"])]
            for k, label in ENTRIES]
    times = [r[f"time lwf/finetune ({p})"] for p in ("off", "bf16")]
    rows.append(["**time lwf / finetune**", *(f"**{fmt(x)}**" for x in times), ""])
    step = [r[f"speed finetune full step / bare model ({p})"] for p in ("off", "bf16")]
    rows.append(["full finetune step / bare model", *(fmt(x) for x in step), ""])
    return f"""Training images/s of the whole step (batched augmentation, forward, teacher forward, loss, backward,
SGD) on a 2-task synthetic stream; "bare" trains the same network on ready-made float tensors with plain CE.
Protocol: {_setup(doc)}.

{code(command(doc))}
{table(["batch 128", "fp32 img/s", "bf16 img/s", "bf16 / fp32"], rows)}
The full fine-tuning step runs at {fmt(step[0])}x (fp32) and {fmt(step[1])}x (bf16) of the bare model's speed:
augmentation and the runner cost little (at most {100 * (1 - min(step)):.0f} % in these medians). LwF's extra
teacher forward costs {_pct(times[0])} in fp32 and {_pct(times[1])} in bf16.

{source(results, "throughput_cpu.json")}"""


def _batch32(results: Results) -> str:
    eager, comp = results("throughput_cpu_b32.json"), results("throughput_cpu_b32_compile.json")
    epyc = results("throughput_cpu_b32_epyc.json")
    assert (eager["machine"]["cpu"], eager["commit"]) == (comp["machine"]["cpu"], comp["commit"])
    med, cmed, r = eager["median_images_per_second"], comp["median_images_per_second"], eager["ratios"]
    rows = [[label, fmt(med[f"{k}/off"], 0), fmt(med[f"{k}/bf16"], 0), fmt(cmed[f"{k}/bf16"], 0),
             fmt(r[f"speed bf16/fp32 ({k})"]), fmt(cmed[f"{k}/bf16"] / med[f"{k}/bf16"])] for k, label in ENTRIES]
    overall = {k: cmed[f"{k}/bf16"] / med[f"{k}/off"] for k in ("finetune", "lwf")}
    bare_gain, epyc_gain = r["speed bf16/fp32 (bare)"], epyc["ratios"]["speed bf16/fp32 (bare)"]
    assert bare_gain > epyc_gain
    machines = [results(n)["machine"] for n in ("throughput_cpu.json", "throughput_cpu_b32.json",
                                                "throughput_cpu_b32_compile.json", "throughput_cpu_replay.json")]
    assert all(m["gpu"] is None for m in machines)
    return f"""### Batch 32, with and without compile

At batch 32, the batch size of the Split-CIFAR benchmarks. Eager: {_setup(eager)}. Compiled: the same with
`--compile --amps bf16`, which trains a 5-task stream and times the last task, so that no compilation falls in the
timed task.

{code(command(eager))}
{code(command(comp))}
{table(["batch 32", "fp32 img/s", "bf16 img/s", "bf16 + compile img/s", "bf16 / fp32", "compile / eager (bf16)"],
       rows)}
The last column divides medians of two runs (same commit `{eager["commit"]}`, same CPU model, one after the other);
the other ratios are within one run. Across the two runs, bf16 with compilation trains fine-tuning
{fmt(overall["finetune"], 1)}x and LwF {fmt(overall["lwf"], 1)}x faster than fp32 eager at batch 32. On the AMD
EPYC (AVX-512 BF16, no AMX) bf16 gains less: the bare model's bf16 / fp32 ratio there is {fmt(epyc_gain)}, against
{fmt(bare_gain)} on this Xeon ([Fast by default](#fast-by-default)).

None of these files ran on a GPU, so there are no GPU figures yet (`python benchmarks/throughput.py --device cuda`,
with and without `--compile`).

{source(results, "throughput_cpu_b32.json", "throughput_cpu_b32_compile.json")}"""


def _replay(results: Results) -> str:
    doc = results("throughput_cpu_replay.json")
    med, r = doc["median_images_per_second"], doc["ratios"]

    def time_ratio(k: str, p: str) -> float:
        return 1 if k == "finetune" else r[f"time {k}/finetune ({p})"]

    rows = [[label, fmt(med[f"{k}/off"], 0), fmt(med[f"{k}/bf16"], 0),
             ", ".join(fmt(time_ratio(k, p)) for p in ("off", "bf16"))] for k, label, _ in REPLAY]
    per_sample = {k: time_ratio(k, "off") / n for k, _, n in REPLAY if n > 1}
    batch = doc["setup"]["batch_size"]
    return f"""### Replay strategies

The same measurement for the replay strategies: {_setup(doc)}. Each replay batch holds {batch} stored samples beside
the {batch} current ones.

{code(command(doc))}
{table(["images/s of the stream", "fp32", "bf16", "time / finetune (fp32, bf16)"], rows)}
DER trains on twice the samples per step (current + replayed) and DER++ on three times, so their time per *trained
sample* is about fine-tuning's ({fmt(per_sample["der"])}x and {fmt(per_sample["derpp"])}x in fp32): reusing the stored
logits costs no teacher forward, where LwF's teacher pass adds {_pct(r["time lwf/finetune (off)"])} in fp32.

{source(results, "throughput_cpu_replay.json")}"""


def render(results: Results) -> str:
    """The section's Markdown."""
    return "\n".join([_batch128(results), _batch32(results), _replay(results)])
