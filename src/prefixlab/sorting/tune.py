"""Paper B tuning: every (task, repetition) member of one run trained as one population."""

from __future__ import annotations

import numpy as np
import xarray as xr

from prefixlab import storage
from prefixlab.storage import var
from prefixlab.sorting import analysis, networks, population
from prefixlab.sorting.jobs import SortTuneJob


def tune(job: SortTuneJob, base: dict, device) -> tuple[dict, xr.Dataset]:
    """Every (task, repetition) member of one run as one population."""
    base = population.to_device(base, device)
    members = job.members
    own = population.to_device(networks.member_tensors(job.model, base, job.method, len(members), job.init_seeds), device)
    model = networks.Model(job.model, base, own)
    label = f"tune {job.experiment}/{job.run} ({job.method}, {len(members)} members)"
    result = population.train(model, job.method, [t for t, _ in members], job.data_seeds, job.digits, job.opt, device,
                              job.dropout_seed, label=label, probe=accuracy_probe(job, model, device),
                              probe_every=job.curve_every)
    trained = {n: t.detach().cpu().contiguous() for n, t in model.own.items()}
    coords = {"member": member_labels(job), "task": ("member", [t for t, _ in members]),
              "repetition": ("member", [r for _, r in members]), "step": np.arange(job.opt.steps),
              "checkpoint": population.checkpoints(job.opt.steps, job.curve_every)}
    data = population.loss_variables(result, ("member", "step"), squeeze=False)
    data["curve_accuracy"] = var(result.probes.T, ("member", "checkpoint"), "1",
                                 f"accuracy on {job.curve_samples} test inputs of the member's task after `checkpoint` steps")
    if job.method == "prefix":
        data["prefix"] = var(trained["prefix"], ("member", "layer", "slot", "feature"), "1", "trained per-layer prefix")
    trainable = sum(t[0].numel() for t in trained.values())
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(method=job.method, run=job.run, trainable_parameters=trainable)
    return trained, ds


def accuracy_probe(job: SortTuneJob, model: networks.Model, device):
    """() -> (P,) each member's accuracy on its own task's fixed test inputs (the training
    curve of the claims' deciding numbers); test inputs never enter training."""
    tasks = np.array([t for t, _ in job.members])
    sets = {t: analysis.test_set(t, job.curve_samples, job.digits, job.curve_seed) for t in dict.fromkeys(tasks.tolist())}

    def probe():
        acc = np.zeros(len(tasks))
        for t, (x, y) in sets.items():
            acc = np.where(tasks == t, analysis.accuracy(model, x, y, device=device), acc)
        return acc

    return probe


def member_labels(job: SortTuneJob) -> list[str]:
    return [f"{job.run}:{t}:{r}" for t, r in job.members]




def command(args, cfg: dict) -> None:
    """`python -m prefixlab sort-tune`: the run's trained tensors and its loss curves."""
    job = SortTuneJob.from_dict(cfg)
    trained, ds = tune(job, storage.load_weights(args.weights, networks.init_weights(job.model)), args.device)
    seeds = {"data_seeds": job.data_seeds, "init_seeds": job.init_seeds, "dropout_seed": job.dropout_seed}
    with storage.Staging() as out:
        out.write(ds, args.out_nc, "sort_tune", cfg, seeds)
        out.save_torch(trained, args.out_weights)
