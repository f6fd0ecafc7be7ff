"""Pretraining (SPEC 1.3): one network on fresh Random-Coins batches every step."""

from __future__ import annotations

import numpy as np
import xarray as xr

from prefixlab.coins import networks, population
from prefixlab.coins.jobs import PretrainJob
from prefixlab.coins.population import Member
from prefixlab import storage
from prefixlab.storage import var


def run(job: PretrainJob, device="cpu"):
    """Returns (weights without population axis, Dataset of loss and unclipped grad norm per step).

    LoRA (Transformer) is present but frozen; its gradients still enter the clipping
    norm, as in the reference.
    """
    base = networks.init_params(job.network)
    pop = population.build(job.network, base, [Member("Pretrain", 0)], prefix_length=0, device=device)
    t = job.train
    res = population.train(pop, job.source, steps=t.steps, batch=t.batch, length=t.length, lr=t.lr, clip=t.clip,
                           data_seeds=[t.data_seed], clip_norm_over="all", log_every=t.log_every,
                           label=f"pretrain {job.network.arch}", reference=job.source)
    ds = xr.Dataset(
        {
            "loss": var(res.loss[:, 0], ("step",), "nats", "pretraining loss (summed over positions, batch mean)"),
            "grad_norm": var(res.grad_norm[:, 0], ("step",), "1", "unclipped global gradient norm"),
            "bayes_loss": var(res.reference_loss[:, 0], ("step",), "nats",
                              "PreBayes loss on the same training batch (summed over positions, batch mean)"),
        },
        coords={"step": np.arange(t.steps)},
    )
    # No wall-clock time in the file (it would break bitwise-identical reruns); population.train logs it.
    ds.attrs.update(arch=job.network.arch)
    return {k: v.cpu() for k, v in pop.member_network(0).items()}, ds


def command(args, cfg: dict) -> None:
    """`python -m prefixlab pretrain`: weights and the loss curve, written together."""
    job = PretrainJob.from_dict(cfg)
    weights, ds = run(job, args.device)
    seeds = {"init_seed": job.network.init_seed, "data_seed": job.train.data_seed}
    with storage.Staging() as out:
        out.write(ds, args.out_nc, "pretrain", cfg, seeds)
        out.save_torch(weights, args.out_weights)
