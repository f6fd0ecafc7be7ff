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
SPILL_BUDGET_BYTES = 0  # spill stores allowed per kernel: none


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
        lim = TARGETS[self.target]
        out = []
        if self.shared_bytes > lim["shared_bytes"]:
            out.append(f"shared memory {self.shared_bytes} B > {lim['shared_bytes']} B per block on {lim['name']}")
        if self.registers > MAX_REGS_PER_THREAD:
            out.append(f"{self.registers} registers per thread > {MAX_REGS_PER_THREAD}")
        if self.registers * 32 * self.launch.num_warps > REGISTER_FILE:
            out.append(f"{self.registers} registers x {32 * self.launch.num_warps} threads > register file {REGISTER_FILE}")
        if self.spill_store_bytes > SPILL_BUDGET_BYTES:
            out.append(f"{self.spill_store_bytes} B of register spill stores > budget {SPILL_BUDGET_BYTES} B")
        return out


def _kernels() -> dict:
    """name -> (jit function, {argument: type}) from the kernel modules themselves."""
    from prefixlab.kernels.lstm import fused as lstm
    from prefixlab.kernels.prefix_attention import fused as att

    return {**lstm.AOT_SIGNATURES, **att.AOT_SIGNATURES}


def attention_shapes(cfg: dict) -> dict[tuple[int, int], set[str]]:
    """(T, E) of every prefix-attention call the config's Transformer jobs make -> labels."""
    shapes: dict[tuple[int, int], set[str]] = {}

    def add(T, E, label):
        shapes.setdefault((T, E), set()).add(label)

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
    settings: dict[tuple, set[str]] = {}
    for (T, E), labels in attention_shapes(cfg).items():
        settings.setdefault(att.block_settings(T, E), set()).add(f"{sorted(labels)[0]} T={T} E={E}")
    for (BM, BN, BE, nw), labels in sorted(settings.items()):
        used = "; ".join(sorted(labels))
        for kernel in ("attention_fwd", "attention_dkdv", "attention_dq"):
            for valid in (False, True):
                out.append(Launch(kernel, (("HAS_VALID", valid), ("BM", BM), ("BN", BN), ("BE", BE)), nw, used))
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
        lines.append(f"{r.launch.kernel:16} {r.target:6} {consts:44} {r.launch.num_warps:5d} {r.shared_bytes:9d} "
                     f"{r.registers:5d} {r.spill_store_bytes:>6d}/{r.spill_load_bytes:<7d}  {verdict}")
    return lines


__all__ = ["TARGETS", "Launch", "Resources", "attention_shapes", "launches", "compile_launch", "report_lines"]
