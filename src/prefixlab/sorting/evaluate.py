"""Paper B evaluation: accuracies of the pretrained model and every tuned member on each
evaluation task, the theory check, and the attention maps or block-output shifts."""

from __future__ import annotations

import json
import logging

import numpy as np
import torch
import xarray as xr

from prefixlab import storage
from prefixlab.config import ConfigError
from prefixlab.storage import var
from prefixlab.sorting import analysis, networks, population
from prefixlab.sorting.jobs import SortEvalJob
from prefixlab.sorting.tune import member_labels

log = logging.getLogger("prefixlab")


def evaluate(job: SortEvalJob, base: dict, tuned: dict[str, dict], device) -> xr.Dataset:
    """Accuracy of the pretrained model and every tuned member on each evaluation task,
    the theory check on trained and random prefixes, and the optional attention maps
    and block-output shifts."""
    base = population.to_device(base, device)
    models = {"pretrained": (networks.Model(job.model, base), ["pretrained"], "none", ["none"], [-1])}
    for run, rjob in job.runs.items():
        if run not in tuned:
            raise ValueError(f"evaluate {job.experiment}: no trained tensors for run {run!r}")
        models[run] = (networks.Model(job.model, base, population.to_device(tuned[run], device)), member_labels(rjob), rjob.method,
                       [t for t, _ in rjob.members], [r for _, r in rjob.members])
    labels, methods, tasks, reps = [], [], [], []
    acc_rows = []
    test_sets = {t: analysis.test_set(t, job.samples, job.digits, job.seed + i) for i, t in enumerate(job.eval_tasks)}
    for name, (model, mlabels, method, mtasks, mreps) in models.items():
        acc = np.stack([analysis.accuracy(model, *test_sets[t], chunk=job.chunk, device=device) for t in job.eval_tasks], 1)
        acc_rows.append(acc)
        labels += mlabels; methods += [method] * len(mlabels); tasks += mtasks; reps += mreps
        log.info("evaluate %s/%s: %s", job.experiment, name,
                 "; ".join(f"{l} " + " ".join(f"{t}={a:.3f}" for t, a in zip(job.eval_tasks, row)) for l, row in zip(mlabels, acc)))
    data = {"accuracy": var(np.concatenate(acc_rows), ("model", "eval_task"), "1",
                            "fraction of test inputs with all output digits right (greedy decoding)")}
    coords = {"model": labels, "method": ("model", methods), "task": ("model", tasks), "repetition": ("model", reps),
              "eval_task": list(job.eval_tasks)}
    data.update(_theory(job, base, tuned, device, coords))
    if job.attention_maps:
        data.update(_attention(job, models, device, coords))
    if job.shift_figure:
        data.update(_shifts(job, base, tuned, device, coords))
    log.info("evaluate %s: theory check at layer 0 over %d probes: max deviation attention %.2e, output %.2e, "
             "direction (L=1) %s", job.experiment, len(coords["probe"]), float(np.nanmax(data["theory_attention_dev"].values)),
             float(np.nanmax(data["theory_output_dev"].values)),
             "n/a" if job.model.prefix_length > 1 else f"{float(np.nanmax(data['theory_direction_dev'].values)):.2e}")
    counts = json_counts(job)
    log.info("evaluate %s: trainable parameters per member %s", job.experiment, counts)
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(experiment=job.experiment, prefix_length=job.model.prefix_length, layers=job.model.layers,
                    heads=job.model.heads, d=job.model.d,
                    trainable_parameters=counts)
    return ds


def json_counts(job: SortEvalJob) -> str:
    """{run: trainable parameters per member} as JSON (fine-tuning: every weight)."""
    cfg = job.model
    counts = {run: {"prefix": cfg.prefix_parameters(), "lora": cfg.lora_parameters()}.get(rjob.method, cfg.all_parameters())
              for run, rjob in job.runs.items()}
    return json.dumps(counts, sort_keys=True)


def _prefix_runs(job: SortEvalJob):
    return [(run, rjob) for run, rjob in job.runs.items() if rjob.method == "prefix"]


def _theory(job: SortEvalJob, base, tuned, device, coords) -> dict:
    rng = torch.Generator().manual_seed(job.theory_seed)
    cfg = job.model
    random = torch.randn(job.theory_random_prefixes, cfg.layers, cfg.prefix_length, cfg.d, generator=rng)
    trained, labels = [], []
    for run, rjob in _prefix_runs(job):
        trained.append(tuned[run]["prefix"])
        labels += member_labels(rjob)
    prefixes = torch.cat(trained + [random]) if trained else random
    kinds = ["trained"] * len(labels) + ["random"] * len(random)
    labels += [f"random:{i}" for i in range(len(random))]
    x, y = analysis.test_set(job.eval_tasks[0], job.theory_samples, job.digits, job.theory_seed)
    out = analysis.theory_check(cfg, base, prefixes.to(device), x, y, device)
    coords["probe"] = labels
    coords["probe_kind"] = ("probe", kinds)
    coords["point"] = np.arange(len(out["scatter_predicted"]))
    return {
        "theory_attention_dev": var(out["attention"], ("probe",), "1",
                                    "max |content attention with prefix - (1 - prefix mass) x prefix-free content attention|"),
        "theory_output_dev": var(out["output"], ("probe",), "1",
                                 "max |head output with prefix - predicted (rescaled prefix-free output + weighted prefix values)|"),
        "theory_direction_dev": var(out["direction"], ("probe",), "1",
                                    "max component of the output shift orthogonal to the prefix value (L = 1 only)"),
        "theory_predicted": var(out["scatter_predicted"], ("point",), "1", "predicted content attention weight (first probe)"),
        "theory_observed": var(out["scatter_observed"], ("point",), "1", "observed content attention weight (first probe)"),
    }


def _attention(job: SortEvalJob, models, device, coords) -> dict:
    """Maps of the pretrained model and of member 0 of every run on the example input."""
    maps, outputs, names = [], [], []
    for name, (model, *_rest) in models.items():
        m, decoded = analysis.attention_map(model, np.array(job.example), device)
        maps.append(m); outputs.append(decoded); names.append(name)
    coords["map_model"] = names
    coords["query"] = coords["key"] = np.arange(job.model.positions)
    coords["digit"] = np.arange(job.digits.digits)
    coords["example_input"] = ("digit", list(job.example))
    return {"attention": var(np.stack(maps), ("map_model", "layer", "head", "query", "key"), "1",
                             "attention weight on the example input (fed its own greedy output)"),
            "example_output": var(np.stack(outputs), ("map_model", "digit"), "1", "greedy output on the example input")}


def _shifts(job: SortEvalJob, base, tuned, device, coords) -> dict:
    """Layer-0 attention-block output at the last input position, without and with each
    trained prefix, on the same test inputs (SPEC 2.3 item 2)."""
    x, _ = analysis.test_set("ascending", job.shift_samples, job.digits, job.seed + 99)
    free = analysis.block_outputs(networks.Model(job.model, base), x, device)[0]
    shifted, directions, labels = [], [], []
    for run, rjob in _prefix_runs(job):
        prefixes = tuned[run]["prefix"].to(device)
        shifted.append(analysis.block_outputs(networks.Model(job.model, base, {"prefix": prefixes}), x, device))
        directions.append(analysis.prefix_directions(job.model, base, prefixes))
        labels += member_labels(rjob)
    coords["shift_model"] = labels
    coords["sample"] = np.arange(len(x))
    return {"block_free": var(free, ("sample", "feature"), "1", "attention-block output without prefix"),
            "block_prefixed": var(np.concatenate(shifted), ("shift_model", "sample", "feature"), "1",
                                  "attention-block output with the trained prefix"),
            "prefix_direction": var(np.concatenate(directions), ("shift_model", "feature"), "1",
                                    "layer-0 prefix value through the output projection")}


def command(args, cfg: dict) -> None:
    """`python -m prefixlab sort-evaluate`: one evaluation file for the experiment."""
    job = SortEvalJob.from_dict(cfg)
    tuned = {}
    for item in args.tuned:
        run, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--tuned expects RUN=PATH, got {item!r}")
        tuned[run] = storage.load_torch(path)
    missing = sorted(set(job.runs) - set(tuned))
    if missing:
        raise ConfigError(f"sort-evaluate {job.experiment}: no --tuned weights for run(s) {missing}")
    ds = evaluate(job, storage.load_weights(args.weights, networks.init_weights(job.model)), tuned, args.device)
    storage.write(ds, args.out_nc, "sort_eval", cfg, {"eval_seed": job.seed, "theory_seed": job.theory_seed})
