"""Paper B pretraining: one GPT trained on its task (every weight, dropout on)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from prefixlab import storage
from prefixlab.sorting import networks, population
from prefixlab.sorting.jobs import SortPretrainJob


def pretrain(job: SortPretrainJob, device) -> tuple[dict, xr.Dataset]:
    base = networks.init_weights(job.model)
    own = {n: t[None].to(device) for n, t in base.items()}
    model = networks.Model(job.model, {}, own)
    result = population.train(model, "finetune", [job.task], [job.data_seed], job.digits, job.opt, device,
                         job.dropout_seed, label=f"pretrain {job.name}")
    weights = {n: t[0].detach().cpu().contiguous() for n, t in model.own.items()}
    ds = xr.Dataset(population.loss_variables(result, ("step",), squeeze=True), coords={"step": np.arange(job.opt.steps)})
    ds.attrs.update(model=job.name, task=job.task)  # no timings: reruns must give identical files
    return weights, ds




def command(args, cfg: dict) -> None:
    """`python -m prefixlab sort-pretrain`: weights and the loss curve, written together."""
    job = SortPretrainJob.from_dict(cfg)
    weights, ds = pretrain(job, args.device)
    seeds = {"init_seed": job.model.init_seed, "data_seed": job.data_seed, "dropout_seed": job.dropout_seed}
    with storage.Staging() as out:
        out.write(ds, args.out_nc, "sort_pretrain", cfg, seeds)
        out.save_torch(weights, args.out_weights)
