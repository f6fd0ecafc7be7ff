"""Ahead-of-time compilation of the Triton kernels for real NVIDIA targets, on any machine.

`triton.compile` of a kernel's ASTSource with a GPUTarget needs no GPU, and ptxas (bundled
with Triton's wheel) reports registers and spills of the result. That proves without a GPU
that every kernel compiles for sm_80 (A100) and sm_90 (H100/H200) at the launch settings the
configured shapes select, and that it fits: shared memory within the per-block limit,
registers within the per-thread limit and the register file.

`launches(cfg)` lists what a resolved config launches; `compile_launch` compiles one.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Per-block limits: the largest dynamic shared memory a block may opt into; registers.
TARGETS = {
    "sm_80": {"capability": 80, "shared_bytes": 163 * 1024, "name": "A100"},
    "sm_90": {"capability": 90, "shared_bytes": 227 * 1024, "name": "H100/H200"},
}
MAX_REGS_PER_THREAD = 255
REGISTER_FILE = 64 * 1024  # 32-bit registers per SM, which one block must fit into
# Register spills slow a kernel but do not stop it from launching. Bytes of spill stores per
# thread allowed: ptxas leaves a few bytes in some variants whatever the tiling (4-12 B
# measured with Triton 3.6 and 3.9); the 340-440 B of an untiled 128-wide dK/dV are far over.
SPILL_BUDGET_BYTES = 16


@dataclass(frozen=True)
class Launch:
    """One compiled variant: a kernel, its constexprs and warps, and where it is used."""

    kernel: str  # "lstm_fwd", "lstm_bwd", "attention_fwd", "attention_dkdv", "attention_dq"
    constexprs: tuple[tuple[str, object], ...]
    num_warps: int
    used_by: str  # the shapes that select it, for the report


@dataclass(frozen=True)
class Resources:
    launch: Launch
    target: str
    shared_bytes: int
    registers: int
    spill_store_bytes: int
    spill_load_bytes: int
    stack_bytes: int

    @property
    def problems(self) -> list[str]:
        """What would stop this kernel from launching on the target."""
        lim = TARGETS[self.target]
        out = []
        if self.shared_bytes > lim["shared_bytes"]:
            out.append(f"shared memory {self.shared_bytes} B > {lim['shared_bytes']} B per block on {lim['name']}")
        if self.registers > MAX_REGS_PER_THREAD:
            out.append(f"{self.registers} registers per thread > {MAX_REGS_PER_THREAD}")
        if self.registers * 32 * self.launch.num_warps > REGISTER_FILE:
            out.append(f"{self.registers} registers x {32 * self.launch.num_warps} threads > register file {REGISTER_FILE}")
        return out

    @property
    def spills_over_budget(self) -> bool:
        return self.spill_store_bytes > SPILL_BUDGET_BYTES


def _kernels() -> dict:
    """name -> (jit function, {argument: type}) from the kernel modules themselves."""
    from prefixlab.kernels.lstm import fused as lstm
    from prefixlab.kernels.prefix_attention import fused as att

    return {**lstm.AOT_SIGNATURES, **att.AOT_SIGNATURES}


def attention_shapes(cfg: dict) -> dict[tuple[int, int, bool], set[str]]:
    """(T, E, is Paper B) of every prefix-attention call the config's jobs make -> labels."""
    shapes: dict[tuple[int, int, bool], set[str]] = {}

    def add(T, E, label):
        shapes.setdefault((T, E, label.startswith("paper_b")), set()).add(label)

    if "transformer" in cfg["archs"]:
        for exp in cfg["run_experiments"]:
            e = cfg["experiments"][exp]
            net = cfg["networks"][e["network"]]
            E = net["d"] // net["heads"]
            L = e.get("prefix_length", cfg["tune"]["prefix_length"])
            if e["pretrained"]:
                add(1 + cfg["pretrain"]["length"], E, f"pretrain {e['network']}")
            add(1 + L + cfg["tune"]["length"], E, f"tune {exp}")
            add(1 + L + cfg["evaluate"]["length"], E, f"evaluate {exp}")
            add(1 + L + cfg["tune"]["length"], E, f"search {exp}")
    b = cfg.get("paper_b") or {}
    digits = (b.get("digits") or {}).get("digits", 10)
    for exp in b.get("run_experiments", []):
        m = b["models"][b["experiments"][exp]["model"]]
        # content positions (after the prefix slots) for prefix members; all positions otherwise
        for T in (2 * digits - 1, m["prefix_length"] + 2 * digits - 1):
            add(T, m["d"] // m["heads"], f"paper_b {exp}")
    return shapes


def launches(cfg: dict) -> list[Launch]:
    """Every distinct compiled variant the config's jobs launch on a GPU."""
    from prefixlab.kernels.lstm import fused as lstm
    from prefixlab.kernels.prefix_attention import fused as att

    out = []
    if "lstm" in cfg["archs"] and cfg["run_experiments"]:
        widths = sorted({cfg["networks"][cfg["experiments"][e]["network"]]["width"] for e in cfg["run_experiments"]})
        used = f"LSTM widths {widths} (the gate kernels do not depend on the width)"
        for keep in (False, True):
            out.append(Launch("lstm_fwd", (("HAS_KEEP", keep), ("BLOCK", lstm.BLOCK)), lstm.NUM_WARPS, used))
            for init in (False, True):
                for dc in (False, True):
                    out.append(Launch("lstm_bwd", (("HAS_DC", dc), ("HAS_INIT", init), ("HAS_KEEP", keep),
                                                   ("BLOCK", lstm.BLOCK)), lstm.NUM_WARPS, used))
    # (block settings, has key mask, has prefix keys) -> where they are used
    variants: dict[tuple, set[str]] = {}
    for (T, E, paper_b), labels in attention_shapes(cfg).items():
        # Paper A masks pad keys and has no per-layer prefix; Paper B the other way round
        key = (att.block_settings(T, E), not paper_b, paper_b)
        variants.setdefault(key, set()).add(f"{', '.join(sorted(labels))} (T={T} E={E})")
    for ((BM, BN, BE, nw), valid, prefix), labels in sorted(variants.items()):
        used = "; ".join(sorted(labels))
        blocks = (("BM", BM), ("BN", BN), ("BE", BE))
        for has_valid in (False, True) if valid else (False,):
            v = (("HAS_VALID", has_valid),)
            out += [Launch("attention_fwd", v + blocks, nw, used), Launch("attention_dq", v + blocks, nw, used)]
            out += [Launch("attention_dkdv", v + (("IS_PREFIX", p),) + blocks + (("EC", min(BE, att.SCORE_COLUMNS)),), nw, used)
                    for p in ((False, True) if prefix else (False,))]
    return out


def _ptxas(capability: int) -> str:
    """The ptxas Triton itself compiles with (its signature differs across Triton releases)."""
    from triton.backends.nvidia import compiler

    try:
        found = compiler.get_ptxas(capability)
    except TypeError:
        found = compiler.get_ptxas()
    return found.path if hasattr(found, "path") else found[0]


def _ptxas_report(ptx: str, capability: int) -> dict[str, int]:
    arch = f"sm_{capability}a" if capability == 90 else f"sm_{capability}"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        proc = subprocess.run([_ptxas(capability), "-v", f"--gpu-name={arch}", str(src), "-o", str(Path(tmp) / "k.cubin")],
                              capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed for {arch}:\n{text[-2000:]}")

    def num(pattern):
        m = re.search(pattern, text)
        return int(m.group(1)) if m else 0

    return {"registers": num(r"Used (\d+) registers"), "stack_bytes": num(r"(\d+) bytes stack frame"),
            "spill_store_bytes": num(r"(\d+) bytes spill stores"), "spill_load_bytes": num(r"(\d+) bytes spill loads")}


def compile_launch(launch: Launch, target: str) -> Resources:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn, args = _kernels()[launch.kernel]
    consts = dict(launch.constexprs)
    signature = {**args, **{k: "constexpr" for k in consts}}
    cap = TARGETS[target]["capability"]
    src = ASTSource(fn, signature, constexprs=consts)
    compiled = triton.compile(src, target=GPUTarget("cuda", cap, 32), options={"num_warps": launch.num_warps})
    report = _ptxas_report(compiled.asm["ptx"], cap)
    return Resources(launch=launch, target=target, shared_bytes=int(compiled.metadata.shared), **report)


def report_lines(results: list[Resources]) -> list[str]:
    lines = [f"{'kernel':16} {'target':6} {'constexprs':44} {'warps':>5} {'shared B':>9} {'regs':>5} {'spill st/ld B':>14}  verdict"]
    for r in results:
        consts = ",".join(f"{k}={v}" for k, v in r.launch.constexprs)
        verdict = "fits" if not r.problems else "DOES NOT FIT: " + "; ".join(r.problems)
        if r.spills_over_budget:
            verdict += f" (spills over the {SPILL_BUDGET_BYTES} B budget)"
        lines.append(f"{r.launch.kernel:16} {r.target:6} {consts:44} {r.launch.num_warps:5d} {r.shared_bytes:9d} "
                     f"{r.registers:5d} {r.spill_store_bytes:>6d}/{r.spill_load_bytes:<7d}  {verdict}")
    return lines


def main(argv=None) -> int:
    """python -m prefixlab.kernels.aot [--scale paper] [--json FILE]: compile every kernel the
    scale launches for sm_80 and sm_90, print the resources, exit 1 if one would not launch
    or spills more than SPILL_BUDGET_BYTES."""
    import argparse
    import json
    import os
    import sys

    import yaml

    from prefixlab import settings

    if os.environ.get("TRITON_INTERPRET") == "1":
        print("aot: unset TRITON_INTERPRET: interpreted kernels cannot be compiled", file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(prog="python -m prefixlab.kernels.aot", description=main.__doc__)
    ap.add_argument("--scale", action="append", help="config scale(s); default: paper")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--schema", default="workflow/schemas/config.schema.yaml")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    raw = yaml.safe_load(Path(args.config).read_text())
    wanted: dict[tuple, Launch] = {}  # one compile per variant; its uses from every scale
    for scale in args.scale or ["paper"]:
        cfg = settings.resolve({**raw, "scale": scale}, args.schema)
        for launch in launches(cfg):
            key = (launch.kernel, launch.constexprs, launch.num_warps)
            used = f"{scale}: {launch.used_by}"
            if key in wanted:
                used = f"{wanted[key].used_by} | {used}"
            wanted[key] = Launch(launch.kernel, launch.constexprs, launch.num_warps, used)
    results = [compile_launch(launch, target) for launch in wanted.values() for target in TARGETS]
    print("\n".join(report_lines(results)))
    bad = [r for r in results if r.problems]
    spilling = [r for r in results if r.spills_over_budget]
    import triton

    print(f"aot (Triton {triton.__version__}): {len(results)} compiled kernels, {len(bad)} would not launch, "
          f"{len(spilling)} spill over the {SPILL_BUDGET_BYTES} B budget "
          f"(max {max((r.spill_store_bytes for r in results), default=0)} B of spill stores per thread)")
    if args.json:
        Path(args.json).write_text(json.dumps([{
            "kernel": r.launch.kernel, "target": r.target, "constexprs": dict(r.launch.constexprs),
            "num_warps": r.launch.num_warps, "used_by": r.launch.used_by, "shared_bytes": r.shared_bytes,
            "registers": r.registers, "spill_store_bytes": r.spill_store_bytes, "problems": r.problems,
            "triton": triton.__version__} for r in results], indent=1))
    return 1 if bad or spilling else 0


if __name__ == "__main__":
    raise SystemExit(main())
