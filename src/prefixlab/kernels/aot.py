"""Ahead-of-time compilation of the Triton kernels for real NVIDIA targets, on any machine.

`triton.compile` of a kernel's ASTSource with a GPUTarget needs no GPU, and ptxas (bundled
with Triton's wheel) reports registers and spills of the result. That proves without a GPU
that every kernel compiles for sm_80 (A100) and sm_90 (H100/H200) at the launch settings the
configured shapes select, and that it fits: shared memory within the per-block limit,
registers within the per-thread limit and the register file.

`compile_launch` compiles one launch setting; prefixlab.launches lists those a config's
jobs use and runs the check (python -m prefixlab.launches).
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
