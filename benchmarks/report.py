"""docs/performance.md, generated from the committed benchmark results (benchmarks/results/*.json).

    python -m benchmarks.report        # rewrites docs/performance.md in a second

One table per benchmark, with the command that produced it and the machine it ran on, as far as
the JSON records it. The numbers come from the files only, so the page cannot drift from them;
tests/benchmarks/test_performance_page.py fails when the committed page differs from what this writes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runkit.files import atomic_write, read_jsonl

RESULTS = Path(__file__).parent / "results"
PAGE = Path(__file__).parents[1] / "docs" / "performance.md"


def _load(path: Path) -> Any:
    return read_jsonl(path) if path.suffix == ".jsonl" else json.loads(path.read_text())


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(map(str, row)) + " |" for row in rows)])


def _load_text(load: Any) -> str:
    """A 1-minute load average as recorded: {start, end}, a getloadavg triple, or one number."""
    if isinstance(load, dict):
        return f"{load['start']:.1f}-{load['end']:.1f}" if abs(load["start"] - load["end"]) >= 0.05 \
            else f"{load['start']:.1f}"
    if isinstance(load, list):
        return f"{load[0]:.1f}"
    return f"{load:.1f}"


def machine(payload: Any) -> str:
    """The machine and software a run names in its JSON (empty when it names none)."""
    if not isinstance(payload, dict):
        return ""
    device = payload.get("device")
    if isinstance(device, dict):
        device = f"{device.get('kind')}, {device.get('cpu_count')} cores ({device.get('machine')})"
        load = payload["device"].get("load_average")
    else:
        load = payload.get("load_average_1min")
    parts = [device or payload.get("backend") and f"{payload['backend']} ({payload.get('cpu')}, "
             f"{payload.get('threads')} threads)", payload.get("platform"),
             (v := payload.get("jax") or payload.get("jax_version")) and f"JAX {v}",
             (v := payload.get("torch_version")) and f"torch {v}",
             (v := payload.get("transparent_huge_pages")) and f"transparent huge pages: {v}",
             load is not None and f"1-min load {_load_text(load)}"]
    return "; ".join(p for p in parts if p)


def prefill_table(payload: dict[str, Any]) -> str:
    rows = [[r["tokens"], f"{r['project_tokens_per_s']:.0f}", f"{r['transformers_tokens_per_s']:.0f}",
             f"{r['speedup']:.2f}x", f"{100 * r['fraction_of_matmul_peak']:.0f}%"] for r in payload["results"]]
    return _table(["tokens", "project tok/s", "transformers tok/s", "speed-up",
                   f"% of matmul peak ({payload['matmul_peak_gflops']:.0f} GFLOP/s, same run)"], rows)


def decode_table(rows: list[dict[str, Any]]) -> str:
    return _table(["label", "code", "context", "new tokens", "best tok/s", "1-min load"],
                  [[r["label"], r.get("code") or "-", r["context"], r["new_tokens"], f"{r['tokens_per_s_best']:.2f}",
                    _load_text(r["load_average_1min"])] for r in rows])


def ttft_table(payload: dict[str, Any]) -> str:
    rows = [[r["context"], r["chunk_tokens"], r["method"], "-" if r["ratio"] is None else r["ratio"],
             f"{r['ttft_s']:.2f}", f"{r['speedup_vs_full']:.2f}x",
             "-" if not r["select_share"] else f"{100 * r['select_share']:.1f}%", r["recompiles"]]
            for r in payload["results"]]
    return _table(["context", "chunk", "method", "p", "TTFT (s)", "vs full", "Stage I / check share", "recompiles"],
                  rows)


def assembly_table(payload: dict[str, Any]) -> str:
    rows = []
    for r in payload["results"]:
        b = r["best_s"]
        rows.append([f"{r['dtype']} ({r['kv_bytes'] / 2**20:.0f} MiB)", r["allocator"],
                     f"{b['assemble_device_tier_recycled']:.3f} / {b['assemble_host_tier_recycled']:.3f}",
                     f"{b['host_memcpy']:.3f}", f"{r['recycled_device_tier_over_memcpy']:.2f}x / "
                     f"{r['recycled_host_tier_over_memcpy']:.2f}x", f"{b['assemble_device_tier']:.3f}",
                     f"{b['host_memcpy_fresh']:.3f}", f"{r['device_tier_over_fresh_memcpy']:.2f}x"])
    return _table(["KV dtype", "malloc", "recycled: device / host tier (s)", "copy, warm array (s)",
                   "recycled / copy", "new: device tier (s)", "copy, new array (s)", "new / copy"], rows)


def phases_table(payload: dict[str, Any]) -> str:
    b = payload["best"]
    return _table(["context", "chunk", "p", "assembly (s)", "Stage I (s)", "top-k (s)", "recompute (s)",
                   "full prefill (s)", "Stage I share", "full / ProphetKV"],
                  [[payload["context"], payload["chunk_tokens"], payload["ratio"], f"{b['assemble_s']:.3f}",
                    f"{b['stage1_s']:.3f}", f"{b['topk_s']:.4f}",
                    f"{b['recompute_s']:.2f} ({b['recomputed_rows']} rows)",
                    f"{b['full_prefill_s']:.2f}", f"{100 * payload['stage1_share_of_best']:.1f}%",
                    f"{payload['full_over_prophetkv']:.2f}x"]])


def prefix_share_table(payload: dict[str, Any]) -> str:
    means = payload["means"]["all"]
    methods = [k.removesuffix("_in_prefix") for k in means if k.endswith("_in_prefix") and k != "oracle_in_prefix"]
    rows = [["oracle", f"{100 * means['oracle_in_prefix']:.1f}%", "-", "-"]]
    rows += [[m, f"{100 * means[f'{m}_in_prefix']:.1f}%", f"{100 * means[f'{m}_oracle_overlap']:.1f}%",
              f"{100 * means[f'{m}_oracle_overlap_chunks']:.1f}%"] for m in methods]
    return _table(["selection", "share of the budget on the prefix", "oracle overlap", "oracle overlap, chunk rows"],
                  rows)


def efficiency_table(payload: dict[str, Any]) -> str:
    sizes = [str(s) for s in payload["settings"]["sizes"]]
    rows = [[v["variant"], f"{v['params']['total'] / 1e6:.2f}", *(f"{v['flops'][s] / 1e9:.1f}" for s in sizes),
             *(f"{v['latency_ms'][s]['median']:.0f}" for s in sizes), f"{v['train_images_per_s']:.2f}"]
            for v in payload["variants"]]
    met = ", ".join(f"{k}: {'met' if ok else 'not met'}" for k, ok in payload["targets"]["met"].items())
    return _table(["variant", "params (M)", *(f"GFLOPs @{s}" for s in sizes), *(f"latency ms @{s} (median)"
                   for s in sizes), "train img/s"], rows) + f"\n\nTargets: {met}."


def before_after_table(payload: dict[str, Any]) -> str:
    """head / base per round and measure: each round ran both checkouts back to back."""
    pairs: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}
    for row in payload["rows"]:
        pairs.setdefault((row["round"], row["benchmark"]), {})[row["checkout"].split()[0]] = row
    rows = []
    for (round_index, benchmark), sides in pairs.items():
        base, head = sides["base"], sides["head"]
        for key in (k for k in base if k.endswith("_s")):
            rows.append([round_index + 1, benchmark, key.removesuffix("_s"), f"{base[key]:.2f}", f"{head[key]:.2f}",
                         f"{head[key] / base[key]:.2f}", f"{base['load_1min']:.1f} / {head['load_1min']:.1f}"])
    return _table(["round", "benchmark", "measure", f"base {payload['base']} (s)", f"head {payload['head']} (s)",
                   "head / base", "1-min load"], rows)


def train_throughput_table(payload: dict[str, Any]) -> str:
    """The training step against its two anchors, then where one step's time goes."""
    step, anchors, where = payload["step"], payload["anchors"], payload["where_the_time_goes"]
    settings = payload["settings"]
    torch_step = anchors.get("torch_step")
    head = _table(
        ["model", "batch x crop", "JAX step (s, min / median)", "PyTorch step (s, min / median)", "PyTorch / JAX",
         "GFLOP per step", "achieved GFLOP/s", f"% of matmul peak ({anchors['matmul_peak_gflops']:.0f} GFLOP/s)"],
        [[f"{settings['preset']} {settings['variant']}", f"{settings['batch_size']} x {settings['crop']}",
          f"{step['min_s']:.3f} / {step['median_s']:.3f}",
          f"{torch_step['min_s']:.3f} / {torch_step['median_s']:.3f}" if torch_step else "-",
          f"{anchors['torch_over_jax']:.2f}x" if torch_step else "-", f"{step['gflop']:.1f}",
          f"{step['achieved_gflops']:.1f}", f"{100 * anchors['fraction_of_matmul_peak']:.1f}%"]])
    if torch_step:  # wall time also says how well each keeps both cores busy
        head += (f"\n\nBy CPU time (min, this process): JAX {step['cpu_min_s']:.3f} s, PyTorch "
                 f"{torch_step['cpu_min_s']:.3f} s, PyTorch / JAX {anchors['torch_over_jax_cpu']:.2f}x.")
    reference = payload.get("reference_ops")
    if reference:  # the same step with the previous ops, timed in the same run
        head += (f"\n\nThe same step with the previous depthwise/1x1 ops, in the same run: {reference['min_s']:.3f} / "
                 f"{reference['median_s']:.3f} s (CPU time min {reference['cpu_min_s']:.3f} s against "
                 f"{step['cpu_min_s']:.3f} s now): the current ops are {reference['speedup']:.2f}x faster by wall "
                 f"time, {reference['speedup_cpu']:.2f}x by CPU time.")
    rows = [["training step", f"{1e3 * where['step_s']:.1f}"], ["one batch from the data pipeline",
            f"{1e3 * where['data_batch_s']:.1f}"], ["host to device copy", f"{1e3 * where['host_to_device_s']:.2f}"]]
    rows += [[f"in the step: {name}", f"{ms:.1f}"] for name, ms in where["op_families_ms_per_step"].items()]
    return head + "\n\n" + _table(["where the time goes", "ms (op families: summed over threads)"], rows)


def store_put_table(payload: dict[str, Any]) -> str:
    def ms(side: dict[str, Any]) -> str:
        return f"{side['put_ms_mean']:.1f} / {side['put_ms_median']:.1f}"

    rows = [[entries.split("_")[0], case.replace("_", " "), ms(r["before"]), ms(r["after"]),
             f"{r['speedup_mean']:.1f}x"] for entries, cases in payload["results"].items() for case, r in cases.items()]
    return _table(["entries", "case", "before: put ms mean / median", "after: put ms mean / median", "mean speed-up"],
                  rows)


def roofline_table(payload: dict[str, Any]) -> str:
    rows = [[r["context"], r["row_groups"], f"{1e3 * r['ideal_s']['full_prefill']:.1f}",
             f"{1e3 * r['prophetkv_ideal_s']:.1f}", f"{r['speedup_vs_full']:.2f}x",
             f"{r['attended_pair_fraction']:.3f}"]
            for r in payload["results"]]
    head = (f"Estimates, not measurements: {payload['model']}, {payload['kind']}, {payload['gpu']} "
            f"({payload['peak_flops'] / 1e12:.0f} TFLOP/s, {payload['bandwidth_bytes_s'] / 1e12:.2f} TB/s), "
            f"chunk {payload['chunk_tokens']}, p = {payload['ratio']}.")
    return head + "\n\n" + _table(["context", "row groups", "full prefill ideal (ms)", "ProphetKV ideal (ms)",
                                     "ideal speed-up", "attended pairs / dense"], rows)


def xla_cpu_bf16_table(payload: dict[str, Any]) -> str:
    weights, cache = payload["weights"], payload["cache"]
    mib = lambda side: f"{side['bytes'] / 2**20:.0f} MiB"  # noqa: E731
    rows = [["q/o projections of every layer (" + mib(weights) + ")", "stacked bf16 weights",
             f"{weights['stacked_bf16_ms']:.2f}", f"{weights['stacked_bf16_ms'] / weights['numpy_copy_ms']:.1f}x"],
            ["", "the same weights as uint16 bits", f"{weights['stacked_bits_ms']:.2f}",
             f"{weights['stacked_bits_ms'] / weights['numpy_copy_ms']:.1f}x"],
            ["16 rows written into every layer of one cache stack (" + mib(cache) + ")",
             "bf16 stack packed to bits inside the program", f"{cache['packed_inside_ms']:.2f}",
             f"{cache['packed_inside_ms'] / cache['numpy_copy_ms']:.1f}x"],
            ["", "stack held as bits", f"{cache['held_as_bits_ms']:.3f}",
             f"{cache['held_as_bits_ms'] / cache['numpy_copy_ms']:.3f}x"]]
    return (f"{payload['shapes']}; best of {payload['rounds']} rounds, each against a NumPy copy of the same bytes "
            f"({weights['numpy_copy_ms']:.2f} / {cache['numpy_copy_ms']:.2f} ms).\n\n"
            + _table(["work", "form", "ms", "ratio to the copy"], rows))


def few_rows_table(payload: dict[str, Any]) -> str:
    rows = [[side, r["dtype"], r["method"], f"{r['read_plus_ttft_s']:.3f}", f"{r['numpy_copy_s']:.3f}",
             f"{r['ratio_to_copy']:.1f}x", f"{r['min_cpu_s']:.3f}" if "min_cpu_s" in r else "-"]
            for side in ("before", "after") for r in payload[side]]
    head = (f"{payload['layers']} layers, {payload['tokens']} tokens in {payload['chunk_tokens']}-token chunks, "
            f"{payload['query_tokens']} query tokens, {payload['kv_layout']}.")
    return head + "\n\n" + _table(["code", "dtype", "method", "store read + TTFT (s)", "NumPy copy of the KV (s)",
                                     "ratio to the copy", "process CPU time (s)"], rows)


def ttft_tiers_table(payload: dict[str, Any]) -> str:
    """TTFT with the chunk KVs served from each store tier, and the copy time each request still waited for."""
    rows = [[r["context"], r["chunk_tokens"], r["method"], r.get("tier") or "-",
             "-" if r["ratio"] is None else r["ratio"], f"{r['ttft_s']:.2f}",
             "-" if r.get("copy_wait_s") is None else f"{r['copy_wait_s']:.4f}",
             "-" if r.get("store_read_s") is None else f"{r['store_read_s']:.3f}", r.get("host_syncs", "-"),
             r["recompiles"]] for r in payload["results"]]
    return (f"Host-tier entries in `{payload['host_memory_kind']}` memory.\n\n"
            + _table(["context", "chunk", "method", "tier", "p", "TTFT (s)", "copy wait (s)", "store read (s)",
                      "host syncs", "recompiles"], rows))


def ttft_before_after_table(payload: dict[str, Any]) -> str:
    rows = [[side, r["context"], r["method"], f"{r['ttft_s']:.2f}", f"{r['speedup_vs_full']:.2f}x", r["recompiles"],
             r.get("program_launches", "-"), r.get("host_syncs", "-")]
            for side in ("before", "after") for r in payload[side]["results"]]
    return payload["note"] + "\n\n" + _table(["code", "context", "method", "TTFT (s)", "vs full", "recompiles",
                                                "launches", "host syncs"], rows)


@dataclass(frozen=True)
class Section:
    """One committed result file and how to show it."""

    title: str
    source: str
    command: str
    table: Callable[[Any], str]


SECTIONS = (
    Section("Llama prefill against transformers (SmolLM2-135M, fp32)", "llama_prefill.json",
            "python -m benchmarks.llama_prefill --lengths 1024 2048 4096 --repeats 2", prefill_table),
    Section("Llama prefill at 8K tokens", "llama_prefill_8192.json",
            "python -m benchmarks.llama_prefill --lengths 8192 --repeats 1 --matmul-sizes 2048 "
            "--out benchmarks/results/llama_prefill_8192.json", prefill_table),
    Section("Greedy decode after a 2K prefill, before / after pairs", "llama_decode.jsonl",
            "python -m benchmarks.llama_decode --context 2048 --new-tokens 32 --label LABEL --code COMMIT "
            "(each checkout in turn on PYTHONPATH)", decode_table),
    Section("ProphetKV TTFT against full prefill", "prophetkv_ttft.json",
            "python -m benchmarks.prophetkv_ttft --contexts 2048,4096,8192 --chunks 512 --ratios 0.2 "
            "--methods full,prophetkv --repeats 2", ttft_table),
    Section("ProphetKV TTFT by store tier: the copy a request still waits for", "prophetkv_ttft_tiers.json",
            "python -m benchmarks.prophetkv_ttft --contexts 2048 --chunks 512 --ratios 0.2 --methods full,prophetkv "
            "--tiers disk,host,device --repeats 3 --out benchmarks/results/prophetkv_ttft_tiers.json",
            ttft_tiers_table),
    Section("Cache assembly against a host copy of the same bytes (8B KV width, 4 layers, 16K tokens)",
            "prophetkv_assembly.json", "python -m benchmarks.prophetkv_assembly --rounds 7", assembly_table),
    Section("Where one ProphetKV request's time goes", "prophetkv_phases.json",
            "python -m benchmarks.prophetkv_phases --context 4096", phases_table),
    Section("Where the recompute budget goes: the exact prefix segment", "prophetkv_prefix_share.json",
            "python -m benchmarks.prophetkv_prefix_share --samples 2", prefix_share_table),
    Section("ProphetKV TTFT before / after the device-side selection (1024 tokens)",
            "prophetkv_ttft_cpu_before_after.json",
            "python -m benchmarks.prophetkv_ttft --contexts 1024 --chunks 256 --ratios 0.2 "
            "--methods full,naive,prophetkv --repeats 1 (each checkout in turn)", ttft_before_after_table),
    Section("A few query rows over a long cache against reading it", "prophetkv_few_rows.json",
            "python -m benchmarks.prophetkv_few_rows --before CHECKOUT --layers 4 --tokens 4096 --rounds 5",
            few_rows_table),
    Section("What bf16 costs a few-rows pass on XLA:CPU", "xla_cpu_bf16.json",
            "python -m benchmarks.xla_cpu_bf16", xla_cpu_bf16_table),
    Section("Roofline of full prefill and ProphetKV on an H100", "prophetkv_roofline.json",
            "python -m benchmarks.roofline --gpu h100", roofline_table),
    Section("Chunk store: one put at 200 and 6,000 entries, before / after", "prophetkv_store_put.json",
            "python -m benchmarks.prophetkv_store_put --baseline main", store_put_table),
    Section("CEA efficiency (paper preset, 256x256)", "cea_efficiency.json",
            "python -m benchmarks.cea_efficiency --sizes 256", efficiency_table),
    Section("CEA efficiency (paper preset, 512x512)", "cea_efficiency_512.json",
            "python -m benchmarks.cea_efficiency --sizes 512 --repeats 2 --train-steps 3 "
            "--out benchmarks/results/cea_efficiency_512.json", efficiency_table),
    Section("CEA training step on this CPU against the matmul peak and PyTorch", "cea_train_throughput.json",
            "python -m benchmarks.cea_train_throughput --preset tiny --variant cea --crop 64 --batch-size 8 "
            "--out benchmarks/results/cea_train_throughput.json", train_throughput_table),
    Section("CPU before / after: recycled caches", "cpu_before_after_recycle.json",
            "python -m benchmarks.cpu_before_after --base 80a54e7 --rounds 2 "
            "--out benchmarks/results/cpu_before_after_recycle.json", before_after_table),
    Section("CPU before / after: the accelerator data path", "cpu_before_after.json",
            "python -m benchmarks.cpu_before_after --base ebf0900", before_after_table),
    Section("CPU before / after: decode alone", "cpu_before_after_decode.json",
            "python -m benchmarks.cpu_before_after --base ebf0900 --benchmarks decode --rounds 4 "
            "--out benchmarks/results/cpu_before_after_decode.json", before_after_table),
)


def page(results: Path = RESULTS) -> str:
    """The whole Markdown page from the result files under ``results``."""
    parts = ["# Performance\n",
             "Generated by `python -m benchmarks.report` from `benchmarks/results/`; do not edit by hand. "
             "Every number was measured on the machine its section names, mostly a shared 2-core CPU under other "
             "load, so compare numbers within a table, not across tables.\n"]
    for section in SECTIONS:
        payload = _load(results / section.source)
        where = machine(payload)
        parts.append(f"## {section.title}\n\n`{section.command}` (`benchmarks/results/{section.source}`"
                     + (f"; {where})" if where else ")") + f"\n\n{section.table(payload)}\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    atomic_write(args.out, page())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
