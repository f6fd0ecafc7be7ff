"""Which kernel variants a config's jobs launch on a GPU, compiled ahead of time for real
targets on any machine (prefixlab.kernels.aot) to prove they fit.

    python -m prefixlab.launches [--scale paper] [--scale quick] [--json FILE]

The launch settings follow the config: the LSTM's flags, and the prefix-attention block
settings of every (length, head width) Paper A's and Paper B's jobs use.
"""

from __future__ import annotations

from pathlib import Path

from prefixlab.coins.jobs import network_subtree
from prefixlab.kernels import aot


def attention_shapes(cfg: dict) -> dict[tuple[int, int, bool], set[str]]:
    """(T, E, is Paper B) of every prefix-attention call the config's jobs make -> labels."""
    shapes: dict[tuple[int, int, bool], set[str]] = {}

    def add(T, E, label):
        shapes.setdefault((T, E, label.startswith("paper_b")), set()).add(label)

    if "transformer" in cfg["archs"]:
        for exp in cfg["run_experiments"]:
            e = cfg["experiments"][exp]
            net = network_subtree(cfg, e["network"], "transformer")
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


def launches(cfg: dict) -> list[aot.Launch]:
    """Every distinct compiled variant the config's jobs launch on a GPU."""
    from prefixlab.kernels.lstm import fused as lstm
    from prefixlab.kernels.prefix_attention import fused as att

    out = []
    if "lstm" in cfg["archs"] and cfg["run_experiments"]:
        widths = sorted({network_subtree(cfg, cfg["experiments"][e]["network"], "lstm")["width"]
                         for e in cfg["run_experiments"]})
        used = f"LSTM widths {widths} (the gate kernels do not depend on the width)"
        for keep in (False, True):
            out.append(aot.Launch("lstm_fwd", (("HAS_KEEP", keep), ("BLOCK", lstm.BLOCK)), lstm.NUM_WARPS, used))
            for init in (False, True):
                for dc in (False, True):
                    out.append(aot.Launch("lstm_bwd", (("HAS_DC", dc), ("HAS_INIT", init), ("HAS_KEEP", keep),
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
            out += [aot.Launch("attention_fwd", v + blocks, nw, used), aot.Launch("attention_dq", v + blocks, nw, used)]
            out += [aot.Launch("attention_dkdv", v + (("IS_PREFIX", p),) + blocks + (("EC", min(BE, att.SCORE_COLUMNS)),), nw, used)
                    for p in ((False, True) if prefix else (False,))]
    return out


def main(argv=None) -> int:
    """python -m prefixlab.launches [--scale paper] [--json FILE]: compile every kernel the
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
    ap = argparse.ArgumentParser(prog="python -m prefixlab.launches", description=main.__doc__)
    ap.add_argument("--scale", action="append", help="config scale(s); default: paper")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--schema", default="workflow/schemas/config.schema.yaml")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    raw = yaml.safe_load(Path(args.config).read_text())
    wanted: dict[tuple, aot.Launch] = {}  # one compile per variant; its uses from every scale
    for scale in args.scale or ["paper"]:
        cfg = settings.resolve({**raw, "scale": scale}, args.schema)
        for launch in launches(cfg):
            key = (launch.kernel, launch.constexprs, launch.num_warps)
            used = f"{scale}: {launch.used_by}"
            if key in wanted:
                used = f"{wanted[key].used_by} | {used}"
            wanted[key] = aot.Launch(launch.kernel, launch.constexprs, launch.num_warps, used)
    results = [aot.compile_launch(launch, target) for launch in wanted.values() for target in aot.TARGETS]
    print("\n".join(aot.report_lines(results)))
    bad = [r for r in results if r.problems]
    spilling = [r for r in results if r.spills_over_budget]
    import triton

    print(f"aot (Triton {triton.__version__}): {len(results)} compiled kernels, {len(bad)} would not launch, "
          f"{len(spilling)} spill over the {aot.SPILL_BUDGET_BYTES} B budget "
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


if __name__ == "__main__":
    raise SystemExit(main())
