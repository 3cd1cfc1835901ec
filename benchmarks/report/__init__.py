"""The pieces every section of ``benchmarks/README.md`` is built from.

A section is a module of this package with a ``TITLE`` and ``render(results: Results) -> str``. Its
protocol sentences and its reading are written by hand; every number in it (table cells and the
numbers in the prose alike) is read from the committed JSON in ``benchmarks/results/`` through
``Results`` and formatted by ``fmt`` or ``pm``, so that ``python benchmarks/make_readme.py``
regenerates the file byte for byte and a result can never be typed in by hand. Every command on the
page is a result file's own, made runnable from the repository root by ``command``.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"
MINUS = "\u2212"
# Each strategy's name in the prose: its paper's spelling (kd-mse, the primer's loss, has no paper of its own).
NAMES = {"finetune": "fine-tuning", "lwf": "LwF", "kd-mse": "KD-MSE", "er": "ER", "der": "DER", "derpp": "DER++",
         "icarl": "iCaRL", "er-ace": "ER-ACE", "wa": "WA", "lucir": "LUCIR", "bic": "BiC", "podnet": "PODNet",
         "xder": "X-DER"}
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth")
# The entries of a ``throughput.py`` file, each with its row label.
ENTRIES = (("bare", "bare model"), ("finetune", "finetune (full step)"), ("lwf", "lwf (full step + teacher)"))
# What a recorded ``--data-root`` becomes in a program without a default data root (``lifelong-kd run``).
DATA_ROOT = "DATA_ROOT"


class Results:
    """The committed result files, read lazily; remembers which section read which file."""

    def __init__(self, folder: Path = RESULTS) -> None:
        self.folder = folder
        self.readers: dict[str, set[str]] = {}
        self.section = ""
        self._cache: dict[str, Any] = {}

    def __call__(self, name: str) -> Any:
        """The parsed ``benchmarks/results/<name>`` (``.json`` may be left off), cited by the current section."""
        name = name if name.endswith(".json") else name + ".json"
        self.readers.setdefault(name, set()).add(self.section)
        return self.peek(name)

    def peek(self, name: str) -> Any:
        """The parsed ``benchmarks/results/<name>``, looked at without citing it."""
        if name not in self._cache:
            self._cache[name] = json.loads((self.folder / name).read_text())
        return self._cache[name]

    def names(self) -> list[str]:
        """Every committed result file, sorted."""
        return sorted(path.name for path in self.folder.glob("*.json"))


def fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals, U+2212 for the minus, ``+`` first when ``sign``; "—" for None or NaN."""
    if value is None or math.isnan(value):
        return "—"
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return text.replace("-", MINUS)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and count of a figure over seeds."""
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def pm(values: Sequence[float] | Mapping[str, float], digits: int = 2) -> str:
    """``mean ± sample sd`` of ``values`` or of their ``spread`` (as ``family_table.py`` writes it); the mean
    alone for one value."""
    summary = values if isinstance(values, Mapping) else spread(values)
    return fmt(summary["mean"], digits) + (f" ± {fmt(summary['sd'], digits)}" if summary["n"] > 1 else "")


def joined(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c`` ("" for none)."""
    return " and ".join(part for part in (", ".join(items[:-1]), *items[-1:]) if part)


def versus(a: dict[str, float], b: dict[str, float]) -> str:
    """Where spread ``a`` ({mean, sd, n}) stands against ``b``: "above" or "below" when the means differ by
    more than the larger sd, else "level with" (the seeds cannot tell them apart)."""
    if abs(a["mean"] - b["mean"]) < max(a["sd"], b["sd"]):
        return "level with"
    return "above" if a["mean"] > b["mean"] else "below"


def final(run: dict[str, Any], key: str = "class_il", metric: str = "final_accuracy") -> float:
    """A final metric of a run (``metrics[key][metric]``): by default its final class-IL accuracy."""
    return run["metrics"][key][metric]


def reference_key(strategy: str, memory: int | None) -> str:
    """A published reference's key: ``der/500``, or the strategy alone without a memory."""
    return strategy if memory is None else f"{strategy}/{memory}"


def published(doc: dict[str, Any], strategy: str, memory: int | None) -> str:
    """``class-IL / task-IL`` of a file's ``published_reference`` for a strategy and memory, or "—"."""
    pair = doc["published_reference"]["class_il_task_il"].get(reference_key(strategy, memory))
    return "—" if pair is None else f"{fmt(pair[0])} / {fmt(pair[1])}"


def option(argv: Sequence[str], flag: str) -> str:
    """The value after ``flag`` in ``argv``."""
    return argv[list(argv).index(flag) + 1]


def _regroup(words: list[str], flag: str, values: Sequence[str]) -> list[str]:
    """``words`` with the words after ``flag`` that spell ``values`` unquoted made those values again."""
    spelt = " ".join(values).split()
    at = words.index(flag) + 1 if values and flag in words else 0
    if at and words[at:at + len(spelt)] == spelt:
        return [*words[:at], *values, *words[at + len(spelt):]]
    return words


def command(recorded: dict[str, Any] | str | Sequence[str]) -> str:
    """A result file's command (or a command line, or an argv), runnable from the repository root."""
    # A result file records ``" ".join(sys.argv)``: its protocol's ``--extra`` value and ``--entries`` names are
    # grouped again, and every word is quoted for the shell. ``--data-root`` (a path on the machine that ran it)
    # is left out where the program has a default, the scripts of ``benchmarks/``, and stands as DATA_ROOT where
    # it has none (``lifelong-kd``); an absolute ``--runs-dir`` is left out (the default applies), another
    # absolute path keeps what follows its ``benchmarks/``, and a script of ``benchmarks/`` is named from the
    # repository root.
    if isinstance(recorded, dict):
        protocol = recorded.get("protocol") or {}
        extra = [protocol["extra"]] if protocol.get("extra") else []
        words = _regroup(_regroup(shlex.split(recorded["command"]), "--extra", extra), "--entries",
                         protocol.get("entries") or [])
    else:
        words = shlex.split(recorded) if isinstance(recorded, str) else list(recorded)
    script = words[0] == "python"
    kept: list[str] = []
    for word in words:
        flag = kept[-1] if kept else ""
        if (flag == "--data-root" and script) or (flag == "--runs-dir" and word.startswith("/")):
            kept.pop()
        elif flag == "--data-root":
            kept.append(DATA_ROOT)
        elif word.startswith("/") and "/benchmarks/" in word:
            kept.append(word.rsplit("/benchmarks/", 1)[1])
        else:
            kept.append(word)
    if script and kept[1].endswith(".py") and "/" not in kept[1]:
        kept[1] = "benchmarks/" + kept[1]
    return shlex.join(kept)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A Markdown table. ``align`` has one letter per column, ``l`` or ``r``; by default the first
    column is left-aligned and the rest right-aligned (numbers)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines) + "\n"


def code(text: str) -> str:
    """A fenced block holding shell commands."""
    return f"```bash\n{text}\n```\n"


def machine(doc: dict[str, Any], missing: str = "unknown machine") -> str:
    """The machine a result file ran on: its GPU, else its CPU."""
    where = doc.get("machine", {})
    return where.get("gpu") or where.get("cpu", missing)


def source(results: Results, *names: str) -> str:
    """One line per file: its name, the commit and the CPU it ran on."""
    lines = []
    for name in names:
        doc = results(name)
        name = name if name.endswith(".json") else name + ".json"
        lines.append(f"`results/{name}`: commit `{doc.get('commit', 'unknown')}`, {machine(doc)}")
    return "Source: " + "; ".join(lines) + ".\n"


def anchor(title: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return text.replace(" ", "-")


def link(title: str, text: str | None = None) -> str:
    """A Markdown link to the heading ``title`` of this page, reading ``text`` (the title by default)."""
    return f"[{text or title}](#{anchor(title)})"
