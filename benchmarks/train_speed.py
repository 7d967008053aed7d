"""Benchmark: the project's LoRA training against ms-swift's ``swift sft`` on the same model, data and settings.

Runs the ``train_lora`` stage (``stages/train_lora.py``, as ``dvc repro`` runs it) and, when ms-swift is
installed (``pip install -e ".[swift]"``), the script ``swift sft`` runs, on the same model folder and
``train.jsonl`` with the same settings: params.yaml's ``train`` block with ``--steps`` steps, each
``--batch`` size, ``--encoding`` (lazy by default, as ms-swift encodes) with ``--workers`` loader processes
and the token-mean loss (ms-swift's). Each run is a fresh process with ``--threads``
torch threads, timed whole (startup included) with its peak memory (the resident memory of the
process and its data-loader workers, sampled every 0.1 s); the two tools alternate, and ratios
are taken within each pair, then their median. Before any timing, a few records are encoded by
both tools and compared (input ids, labels, image token types, pixel values, image grids):
ms-swift runs with the template plugin in ``swift_qwen2_vl_template.py``, which reads the image
token ids from the tokenizer as the project does.

From a checkout where ``dvc repro fetch_model`` has run (only the ``qwen2_vl`` family):

    python benchmarks/train_speed.py [--steps 200] [--batch 32 --batch 4] [--pairs 4] [--threads 1]
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).with_name("swift_qwen2_vl_template.py")
SWIFT_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
TOOLS = ("project", "swift")


@dataclass(frozen=True)
class Run:
    tool: str
    samples: int
    wall_s: float
    train_s: float  # the training loop alone, as the tool's Trainer reports it
    peak_rss_mib: float
    losses: list[float]  # the mean loss of each logging window

    @property
    def outside_s(self) -> float:
        """Startup (imports, loading, encoding up front) and saving at the end."""
        return self.wall_s - self.train_s


def peak_tree_rss(process: subprocess.Popen, interval: float = 0.1) -> float:
    """The largest resident memory, in MiB, of ``process`` and its children until it ends."""
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        total = 0
        try:
            for member in [root, *root.children(recursive=True)]:
                total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass  # a worker ended while being read: the next sample counts without it
        peak = max(peak, total)
        time.sleep(interval)
    return peak / 2**20


def timed(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Wall seconds and peak MiB of ``command``; its output goes to ``log``."""
    start = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        peak = peak_tree_rss(process)
    if process.returncode:
        raise click.ClickException(f"{command[1]} failed (exit status {process.returncode}); see {log}")
    return time.perf_counter() - start, peak


def project_command(config: Any, model: Path, data: Path, scratch: Path) -> list[str]:
    """The train_lora stage with params.yaml's blocks and ``config`` as its ``train`` block."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["train"] = asdict(config)
    (scratch / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return [sys.executable, str(REPO / "stages" / "train_lora.py"), "--model", str(model), "--data", str(data),
            "--out", str(scratch / "adapter"), "--checkpoints", str(scratch / "checkpoints"),
            "--metrics", str(scratch / "metrics"), "--summary", str(scratch / "train.json"),
            "--params", str(scratch / "params.yaml")]


def project_result(scratch: Path) -> tuple[float, list[float]]:
    metrics = json.loads((scratch / "metrics" / "metrics.json").read_text())
    rows = (scratch / "metrics" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]
    return metrics["train"]["runtime"], [float(row.split("\t")[-1]) for row in rows]


def swift_command(config: Any, lora_regex: str, model: Path, data: Path, scratch: Path) -> list[str]:
    """``swift sft`` with the settings of ``config`` (ms-swift's own defaults differ where it is given one)."""
    from swift_qwen2_vl_template import TEMPLATE

    flags = {
        "model": model, "model_type": "qwen2_vl", "template": TEMPLATE, "custom_register_path": PLUGIN,
        "dataset": data, "tuner_type": "lora", "lora_rank": config.lora.r, "lora_alpha": config.lora.alpha,
        "lora_dropout": config.lora.dropout, "target_regex": lora_regex, "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_batch, "gradient_accumulation_steps": config.grad_accum,
        "learning_rate": config.learning_rate, "lr_scheduler_type": config.scheduler,
        "warmup_ratio": config.warmup_ratio, "weight_decay": config.weight_decay,
        "adam_beta2": 0.999,  # the transformers Trainer's, which the project keeps (ms-swift's is 0.95)
        "max_grad_norm": config.max_grad_norm, "max_length": config.max_length,
        "torch_dtype": SWIFT_DTYPES[config.precision], "gradient_checkpointing": config.gradient_checkpointing,
        "dataloader_num_workers": config.dataloader_workers, "seed": config.seed, "data_seed": config.seed,
        "save_steps": config.save_steps, "logging_steps": config.logging_steps, "split_dataset_ratio": 0,
        "output_dir": scratch / "out", "report_to": "none",
        "check_model": False,  # else it asks ModelScope's hub whether a local model is current (network retries)
    }
    arguments = [text for key, value in flags.items()
                 for text in (f"--{key}", str(value).lower() if isinstance(value, bool) else str(value))]
    return [sys.executable, "-m", "swift.cli.sft", *arguments]


def swift_result(scratch: Path, logging_steps: int) -> tuple[float, list[float]]:
    log = next((scratch / "out").glob("v*/logging.jsonl"))
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    runtime = next(row["train_runtime"] for row in rows if "train_runtime" in row)
    # ms-swift also logs step 1; the project logs every logging_steps only
    losses = [row["loss"] for row in rows
              if "loss" in row and int(row["global_step/max_steps"].split("/")[0]) % logging_steps == 0]
    return runtime, losses


def run_once(tool: str, config: Any, lora_regex: str, model: Path, data: Path, env: dict[str, str]) -> Run:
    with tempfile.TemporaryDirectory(prefix=f"train-speed-{tool}-") as folder:
        scratch = Path(folder)
        if tool == "project":
            command = project_command(config, model, data, scratch)
        else:
            command = swift_command(config, lora_regex, model, data, scratch)
        wall, peak = timed(command, env, scratch / "log.txt")
        if tool == "project":
            train_s, losses = project_result(scratch)
        else:
            train_s, losses = swift_result(scratch, config.logging_steps)
    return Run(tool, config.max_steps * config.per_device_batch, wall, train_s, peak, losses)


def check_identical_inputs(model: Path, records: Sequence[dict[str, Any]]) -> None:
    """Stop unless ms-swift (with the plugin) encodes ``records`` exactly as the project does."""
    import torch
    from swift.model import get_processor
    from swift.template import get_template
    from swift_qwen2_vl_template import TEMPLATE

    from eiad.ddqa.records import record_prompt
    from eiad.models.config import ModelHandle

    handle = ModelHandle.load(REPO / "params.yaml")
    processor = handle.processor(model)
    swift_processor = get_processor(str(model), model_type="qwen2_vl")
    templates = {name: get_template(swift_processor, template_type=name) for name in (TEMPLATE, "qwen2_vl")}
    for template in templates.values():
        template.set_mode("train")
    for record in records:
        ours = handle.adapter.encode(processor, *record_prompt(record))
        expected = {**{key: value[0] for key, value in ours.tokens.items() if key != "attention_mask"}, **ours.media}
        theirs = templates[TEMPLATE].encode({"messages": record["messages"], "images": record["images"]})
        differing = [key for key, value in expected.items() if not torch.equal(torch.as_tensor(theirs[key]), value)]
        if differing:
            raise click.ClickException(f"ms-swift encodes a {record['task']} record differently: {differing}")
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    stock = templates["qwen2_vl"].encode({"messages": records[0]["messages"], "images": records[0]["images"]})
    click.echo(f"identical inputs: {len(records)} records ({', '.join(sorted({r['task'] for r in records}))}) "
               f"give equal input ids, labels, token types, pixel values and grids in both tools; ms-swift's own "
               f"qwen2_vl template would give {stock['input_ids'].count(image_token)} image token(s) instead of "
               f"{expected['input_ids'].eq(image_token).sum().item()}")


def sample_records(records: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """One record of each task first, then the file's first records: ``count`` in all."""
    first_of_task = {}
    for record in records:
        first_of_task.setdefault(record["task"], record)
    chosen = list(first_of_task.values())
    return (chosen + [record for record in records if record not in chosen])[:max(count, len(chosen))]


def mean_tokens(model: Path, records: Sequence[dict[str, Any]]) -> float:
    """Tokens per record (images included, no padding) over ``records``, as the project encodes them."""
    from eiad.ddqa.records import record_prompt
    from eiad.models.config import ModelHandle

    handle = ModelHandle.load(REPO / "params.yaml")
    processor = handle.processor(model)
    return statistics.mean(handle.adapter.encode(processor, *record_prompt(r)).length for r in records)


def table(runs: dict[int, list[Run]], tokens: float, tools: Sequence[str]) -> str:
    """A Markdown table of the medians per batch size and tool, and the median ratio within pairs."""
    header = ("| batch | tool | samples/s in training | samples/s whole process | tokens/s whole process "
              "| outside training (s) | peak memory (MiB) | loss first → last window |")
    lines = [header, "|---" * 8 + "|"]
    for batch, batch_runs in runs.items():
        by_tool = {tool: [run for run in batch_runs if run.tool == tool] for tool in tools}
        for tool, tool_runs in by_tool.items():
            inside = statistics.median(run.samples / run.train_s for run in tool_runs)
            whole = statistics.median(run.samples / run.wall_s for run in tool_runs)
            first = statistics.median(run.losses[0] for run in tool_runs)
            last = statistics.median(run.losses[-1] for run in tool_runs)
            lines.append(f"| {batch} | {tool} ({len(tool_runs)} runs) | {inside:.1f} | {whole:.1f} | "
                         f"{whole * tokens:.0f} | {statistics.median(r.outside_s for r in tool_runs):.1f} | "
                         f"{statistics.median(r.peak_rss_mib for r in tool_runs):.0f} | {first:.3f} → {last:.3f} |")
        if len(tools) == 2:
            pairs = list(zip(*by_tool.values()))
            inside = statistics.median(s.train_s / p.train_s for p, s in pairs)
            whole = statistics.median(s.wall_s / p.wall_s for p, s in pairs)
            memory = statistics.median(p.peak_rss_mib / s.peak_rss_mib for p, s in pairs)
            lines.append(f"| {batch} | project / swift ({len(pairs)} pairs) | **{inside:.2f}×** | **{whole:.2f}×** | "
                         f"{whole:.2f}× | | {memory:.2f}× | |")
    return "\n".join(lines)


@click.command()
@click.option("--steps", default=200, show_default=True, help="Training steps per run.")
@click.option("--batch", "batches", multiple=True, type=int, default=(32, 4), show_default=True,
              help="Per-device batch sizes (repeat the option).")
@click.option("--pairs", default=4, show_default=True, help="Runs of each tool per batch size, alternating.")
@click.option("--threads", default=1, show_default=True, help="Torch threads of each run (OMP_NUM_THREADS).")
@click.option("--encoding", type=click.Choice(["lazy", "eager"]), default="lazy", show_default=True,
              help="train.encoding of the project's runs (lazy: as ms-swift encodes, suited to runs under an epoch).")
@click.option("--workers", default=1, show_default=True, help="Data-loader processes of both tools.")
@click.option("--check-records", default=8, show_default=True, help="Records whose encodings are compared.")
@click.option("--project-only", is_flag=True, help="Time the project alone (no ms-swift).")
@click.option("--model", type=click.Path(exists=True, file_okay=False, path_type=Path), default="models/base")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default="data/ddqa/train.jsonl")
def main(steps: int, batches: tuple[int, ...], pairs: int, threads: int, encoding: str, workers: int,
         check_records: int, project_only: bool, model: Path, data: Path) -> None:
    sys.path.insert(0, str(REPO))  # this checkout's eiad, whatever is installed
    from eiad.io import read_jsonl
    from eiad.models.config import ModelHandle
    from eiad.training.config import TrainConfig

    handle = ModelHandle.load(REPO / "params.yaml")
    tools = TOOLS[:1] if project_only else TOOLS
    if "swift" in tools and importlib.util.find_spec("swift") is None:
        raise click.ClickException("ms-swift is not installed (pip install -e '.[swift]'); or pass --project-only")
    if handle.config.family != "qwen2_vl":
        raise click.ClickException(f"the comparison runs the qwen2_vl family only, not {handle.config.family}")
    records = read_jsonl(data)
    if "swift" in tools:
        check_identical_inputs(model, sample_records(records, check_records))
    measured = records[:: max(1, len(records) // 256)]
    tokens = mean_tokens(model, measured)
    base = replace(TrainConfig.load("train", REPO / "params.yaml"), max_steps=steps, loss_reduction="token",
                   save_steps=steps, logging_steps=max(1, steps // 4), encoding=encoding,
                   dataloader_workers=workers)
    lora_regex = handle.adapter.lora_targets(base.lora.targets)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    runs: dict[int, list[Run]] = {}
    for batch in batches:
        config = replace(base, per_device_batch=batch)
        runs[batch] = []
        for pair in range(pairs):
            for tool in tools if pair % 2 == 0 else tools[::-1]:
                run = run_once(tool, config, lora_regex, model, data, env)
                runs[batch].append(run)
                click.echo(f"batch {batch:>3} {tool:>7}: {run.wall_s:6.1f} s whole, {run.train_s:6.1f} s training, "
                           f"{run.peak_rss_mib:5.0f} MiB, loss {' '.join(f'{x:.3f}' for x in run.losses)}")
    click.echo(f"\n{steps} steps, {threads} torch thread(s), {base.dataloader_workers} data-loader worker(s), "
               f"LoRA {base.lora.targets} r{base.lora.r}; tokens/s = samples/s x {tokens:.1f} tokens per record "
               f"(the mean over {len(measured)} records)\n")
    click.echo(table(runs, tokens, tools))


if __name__ == "__main__":
    main()
