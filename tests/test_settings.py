"""Config resolution: scales, schema validation with key-naming errors, per-job subtrees."""

import copy
from pathlib import Path

import pytest
import yaml

from prefixlab.sorting import jobs as sorting_jobs
from prefixlab.coins import jobs as coins_jobs
from prefixlab.coins.configs import TuneConfig
from prefixlab import settings
from prefixlab.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


@pytest.fixture(scope="module")
def base():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def resolve(cfg):
    return settings.resolve(copy.deepcopy(cfg), SCHEMA)


def test_paper_and_quick_scales_resolve(base):
    paper = resolve(base)
    assert paper["tune"]["steps"] == 1000 and paper["tune"]["repetitions"] == 10
    quick = resolve({**base, "scale": "quick"})
    assert quick["tune"]["steps"] < paper["tune"]["steps"]
    assert quick["tune"]["lr"] == paper["tune"]["lr"] or "lr" in base["scales"]["quick"]["tune"]
    # quick shrinks the networks but keeps what each variant is about
    assert quick["networks"]["d4"]["d"] == 4 and quick["networks"]["maxi"]["layers"] == 2
    assert quick["networks"]["base"]["width"] < paper["networks"]["base"]["width"]


def _mutate(cfg, path, value):
    cfg = copy.deepcopy(cfg)
    node = cfg
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return cfg


BAD = [
    # (path, value, text the error must contain)
    (("tune", "stepz"), 5, "tune"),  # unknown key
    (("tune", "steps"), "many", "tune.steps"),  # wrong type
    (("tune", "steps"), 0, "tune.steps"),  # out of range
    (("tune", "lr"), -1.0, "tune.lr"),  # out of range
    (("methods",), ["SoftPT", "MagicPT"], "methods.1"),  # unknown method
    (("run_experiments",), ["r2s", "r9x"], "run_experiments"),  # unknown experiment
    (("scale",), "huge", "scale"),  # unknown scale
    (("experiments", "r2s", "network"), "giant", "experiments.r2s.network"),  # unknown network
    (("experiments", "u2m", "methods"), ["FullWT"], "experiments.u2m.methods"),  # FullWT on an untrained net
    (("tune", "clip_norm_over"), "some", "tune.clip_norm_over"),  # bad enum
    (("experiments", "r2s", "target"), "dice", "experiments.r2s.target"),  # unknown source
    (("evaluate", "sequences"), 2.5, "evaluate.sequences"),  # float for int
    # Paper B
    (("paper_b", "run_experiments"), ["b1_descending", "b9"], "paper_b.run_experiments"),
    (("paper_b", "experiments", "b2_elicit", "model"), "giant", "paper_b.experiments.b2_elicit.model"),
    (("paper_b", "experiments", "b2_elicit", "runs", "prefix", "tasks"), ["ascending", "sideways"],
     "paper_b.experiments.b2_elicit.runs.prefix.tasks.1"),
    (("paper_b", "experiments", "b2_elicit", "runs", "prefix", "method"), "adapter",
     "paper_b.experiments.b2_elicit.runs.prefix.method"),
    (("paper_b", "models", "asc_1l1h", "heads"), 5, "paper_b.models.asc_1l1h.heads"),  # 96 % 5 != 0
    (("paper_b", "models", "asc_1l1h", "task"), "double_hist2", "paper_b.models.asc_1l1h.task"),
    (("paper_b", "evaluate", "example"), [2, 6, 0], "paper_b.evaluate.example"),
    (("paper_b", "train", "dropout"), 1.5, "paper_b.train.dropout"),
]


@pytest.mark.parametrize("path,value,needle", BAD, ids=[".".join(map(str, b[0])) + "=" + repr(b[1]) for b in BAD])
def test_bad_config_is_rejected_naming_the_key(base, path, value, needle):
    with pytest.raises(ConfigError) as err:
        resolve(_mutate(base, path, value))
    assert needle in str(err.value)


def test_unknown_top_level_key(base):
    with pytest.raises(ConfigError, match="unexpected_key"):
        resolve({**base, "unexpected_key": 1})


def test_bad_scale_override_is_rejected(base):
    cfg = _mutate(base, ("scales", "quick", "tune", "steps"), -3)
    with pytest.raises(ConfigError, match="scales.quick.tune.steps"):
        resolve(cfg)


def test_tune_subtree_is_exactly_what_tuning_needs(base):
    cfg = resolve(base)
    job = coins_jobs.tune_job(cfg, "r2s", "lstm")
    assert set(job) == {"experiment", "network", "pretrained", "pretrain_source", "target", "target_source", "tune"}
    assert job["target_source"] == cfg["sources"]["single"]
    assert "FullWT" not in coins_jobs.tune_job(cfg, "u2m", "transformer")["tune"]["methods"]
    assert coins_jobs.tune_job(cfg, "r2s_L25", "lstm")["tune"]["prefix_length"] == 25
    assert coins_jobs.tune_job(cfg, "r2s_L25", "lstm")["tune"]["hard_search"] is False
    # a figure setting is not part of any job subtree
    changed = resolve(_mutate(base, ("figures", "dpi"), 300))
    assert coins_jobs.tune_job(changed, "r2s", "lstm") == job
    assert coins_jobs.eval_job(changed, "r2s", "lstm") == coins_jobs.eval_job(cfg, "r2s", "lstm")


def test_l25_experiments_share_their_weight_members_with_the_base_experiment(base):
    cfg = resolve(base)
    groups = {(e, a): coins_jobs.weight_group(cfg, e, a) for e in cfg["run_experiments"] for a in cfg["archs"]}
    assert {k: v for k, v in groups.items() if v} == {(e, a): e.removesuffix("_L25") for e in ("r2s", "r2m", "r2s_L25", "r2m_L25")
                                                      for a in cfg["archs"]}
    # a rate of r2m's own for FullWT makes its weight members differ from r2m_L25's: nothing shared
    changed = resolve(_mutate(base, ("experiments", "r2m", "method_lr"), {"FullWT": 2.0e-3}))
    assert (coins_jobs.weight_group(changed, "r2m", "lstm"), coins_jobs.weight_group(changed, "r2m_L25", "lstm")) == (None, None)
    assert coins_jobs.weight_group(changed, "r2s_L25", "lstm") == "r2s"
    # LoRAWT's rate does not reach the LSTM, which has no LoRAWT member
    lora = resolve(_mutate(base, ("experiments", "r2m", "method_lr"), {"LoRAWT": 2.0e-3}))
    assert (coins_jobs.weight_group(lora, "r2m_L25", "lstm"), coins_jobs.weight_group(lora, "r2m_L25", "transformer")) == (
        "r2m", None)


def test_weight_members_job_holds_no_prefix_setting(base):
    cfg = resolve(base)
    job = coins_jobs.weight_members_job(cfg, "r2s", "transformer")
    assert job["tune"]["methods"] == ["FullWT", "LoRAWT", "EmbedWT", "UnembedWT", "Un+EmbedWT"]
    assert not set(job["tune"]) & {"prefix_length", "hard_search", "prefix_seed", "search_sequences", "search_seed"}
    tuned = TuneConfig.from_dict(job["tune"])
    full = TuneConfig.from_dict(coins_jobs.tune_job(cfg, "r2s", "transformer")["tune"])
    assert all(tuned.lr_of(m) == full.lr_of(m) for m in job["tune"]["methods"])
    # r2s's prefix length reaches r2s's own tuning job, not the weight members it shares
    longer = resolve(_mutate(base, ("experiments", "r2s", "prefix_length"), 4))
    assert coins_jobs.weight_members_job(longer, "r2s", "transformer") == job
    assert coins_jobs.tune_job(longer, "r2s", "transformer") != coins_jobs.tune_job(cfg, "r2s", "transformer")
    prefix_only = resolve(_mutate(base, ("experiments", "r2s", "methods"), ["SoftPT", "RealPT"]))
    with pytest.raises(ConfigError, match="experiments.r2s: lstm trains no weight-tuning method"):
        coins_jobs.weight_members_job(prefix_only, "r2s", "lstm")


def test_a_method_rate_reaches_only_the_jobs_that_train_the_method(base):
    """tune.method_lr for LoRAWT (Transformer only) or FullWT (pretrained only) leaves every other
    job's subtree as it was, so changing it reruns only the jobs that train that method."""
    lora = resolve(_mutate(base, ("tune", "method_lr"), {"LoRAWT": 1.0e-2}))
    full = resolve(_mutate(base, ("tune", "method_lr"), {"FullWT": 1.0e-2}))
    assert coins_jobs.tune_job(lora, "r2s", "lstm") == coins_jobs.tune_job(resolve(_mutate(base, ("tune", "method_lr"), {})), "r2s", "lstm")
    assert coins_jobs.tune_job(lora, "r2s", "transformer")["tune"]["method_lr"] == {"LoRAWT": 1.0e-2}
    assert coins_jobs.tune_job(full, "u2m", "transformer")["tune"]["method_lr"] == {}
    assert coins_jobs.tune_job(full, "r2m", "lstm")["tune"]["method_lr"] == {"FullWT": 1.0e-2}
    assert coins_jobs.eval_job(lora, "r2m", "lstm")["tune"] == coins_jobs.tune_job(lora, "r2m", "lstm")["tune"]


def test_an_experiment_rate_overrides_tune_rates_for_its_jobs_only(base):
    """experiments.<exp>.method_lr wins over tune.method_lr in that experiment's jobs; other
    experiments keep tune.method_lr, and the LSTM jobs of that experiment get no LoRAWT rate."""
    cfg = resolve(_mutate(_mutate(base, ("tune", "method_lr"), {"LoRAWT": 6.0e-2, "FullWT": 5.0e-3}),
                          ("experiments", "r2m_maxi", "method_lr"), {"LoRAWT": 1.0e-2}))
    assert coins_jobs.tune_job(cfg, "r2m_maxi", "transformer")["tune"]["method_lr"] == {"LoRAWT": 1.0e-2, "FullWT": 5.0e-3}
    assert coins_jobs.tune_job(cfg, "r2m", "transformer")["tune"]["method_lr"] == {"LoRAWT": 6.0e-2, "FullWT": 5.0e-3}
    assert coins_jobs.tune_job(cfg, "r2m_maxi", "lstm")["tune"]["method_lr"] == {"FullWT": 5.0e-3}
    assert TuneConfig.from_dict(coins_jobs.tune_job(cfg, "r2m_maxi", "transformer")["tune"]).lr_of("LoRAWT") == 1.0e-2
    with pytest.raises(ConfigError, match=r"config key 'experiments.r2s.method_lr': names \['HardPT'\]"):
        resolve(_mutate(base, ("experiments", "r2s", "method_lr"), {"HardPT": 1.0e-2}))


def test_an_architecture_can_have_its_own_network_size(base):
    """networks.<variant>.<arch> overrides the shared size for that arch's jobs only: the other
    arch's job subtrees stay as they were, so changing it reruns only that arch's jobs."""
    plain = resolve(_mutate(base, ("networks", "base"), {"d": 64, "width": 64, "layers": 1, "heads": 4}))
    own = resolve(_mutate(base, ("networks", "base"), {"d": 64, "width": 64, "layers": 1, "heads": 4,
                                                       "transformer": {"d": 128, "width": 96}}))
    net = coins_jobs.tune_job(own, "r2s", "transformer")["network"]
    assert (net["d"], net["width"], net["layers"], net["arch"]) == (128, 96, 1, "transformer")
    assert "lstm" not in net and "transformer" not in net
    for job in (coins_jobs.pretrain_job, lambda c, v, a: coins_jobs.eval_job(c, "u2m", a)):
        assert job(own, "base", "lstm") == job(plain, "base", "lstm")
    assert coins_jobs.pretrain_job(own, "base", "transformer") != coins_jobs.pretrain_job(plain, "base", "transformer")
    assert coins_jobs.tune_job(own, "r2s_d4", "transformer") == coins_jobs.tune_job(plain, "r2s_d4", "transformer")
    # every override key is checked, and a bad value is named by its key
    with pytest.raises(ConfigError, match="networks.base.transformer"):
        resolve(_mutate(base, ("networks", "base", "transformer"), {"depth": 2}))
    with pytest.raises(ConfigError, match="networks.base"):
        resolve(_mutate(base, ("networks", "base", "gru"), {"d": 8}))
    with pytest.raises(ConfigError, match="networks.base.transformer"):
        resolve(_mutate(base, ("networks", "base", "transformer"), {"d": 30}))  # 30 heads of 4: not divisible


def test_paper_b_values_as_published(base):
    b = resolve(base)["paper_b"]
    m = b["models"]
    assert (m["asc_1l1h"]["layers"], m["asc_1l1h"]["heads"], m["asc_1l1h"]["d"], m["asc_1l1h"]["steps"]) == (1, 1, 96, 20000)
    assert m["random_1l4h"]["ln_1"] is False and m["random_4l4h"]["prefix_length"] == 10
    assert m["random_4l4h_L12"]["prefix_length"] == 12 and b["train"]["batch"] == 64
    runs = b["experiments"]["b3_matrix"]["runs"]
    assert runs["prefixnew"]["steps"] == 500000 and runs["prefix"]["lr"] == 5e-5
    assert b["experiments"]["b4_double_hist"]["runs"]["lora"] == {"method": "lora", "tasks": ["double_hist"],
                                                                   "steps": 10000, "lr": 5e-3}


def test_paper_b_tune_subtree_is_exactly_what_the_run_needs(base):
    cfg = resolve(base)
    job = sorting_jobs.tune_job(cfg, "b4_double_hist", "lora")
    assert job["train"]["weight_decay"] == {"lora": 0.01} and "dropout" not in job["train"]
    assert "steps" not in job["model"] and "task" not in job["model"]  # pretraining reaches it via the weights
    # another run's settings, fine-tuning's weight decay or figure settings do not touch it
    for path, value in ((("paper_b", "experiments", "b4_double_hist", "runs", "prefix", "lr"), 0.1),
                        (("paper_b", "train", "weight_decay", "finetune"), 0.3), (("figures", "dpi"), 300)):
        assert sorting_jobs.tune_job(resolve(_mutate(base, path, value)), "b4_double_hist", "lora") == job
    ft = sorting_jobs.tune_job(cfg, "b1_descending", "finetune")
    assert ft["train"]["dropout"] == 0.1 and ft["train"]["weight_decay"] == {"finetune": 0.1}


def test_nested_value_given_as_text_points_to_configfile(base):
    """`--config 'tune={steps: 5}'` reaches the config as text; the error says what to do."""
    with pytest.raises(ConfigError, match=r"config key 'tune.steps': '5' is not of type 'integer'.*--configfile"):
        resolve(_mutate(base, ["tune", "steps"], "5"))


def test_smoke_scale_resolves_and_covers_every_experiment_kind(base):
    smoke = resolve({**base, "scale": "smoke"})
    assert {"r2s", "r2m", "u2m", "r2s_d4", "r2s_L25"} <= set(smoke["run_experiments"])
    assert smoke["paper_b"]["run_experiments"] == base["paper_b"]["run_experiments"]


def test_cpu_scale_resolves_with_the_published_depth_where_a_claim_needs_it(base):
    """The laptop scale keeps Paper B's 4-layer models (the composition claims need depth),
    the claim definitions of the paper scale, and more than quick's tuning budget."""
    paper, quick, cpu = resolve(base), resolve({**base, "scale": "quick"}), resolve({**base, "scale": "cpu"})
    models = cpu["paper_b"]["models"]
    for exp in ("b3_matrix", "b4_double_hist"):
        assert models[cpu["paper_b"]["experiments"][exp]["model"]]["layers"] == 4, exp
    assert cpu["claims"] == paper["claims"] and cpu["paper_b"]["claims"] == paper["paper_b"]["claims"]
    assert quick["tune"]["steps"] <= cpu["tune"]["steps"] <= paper["tune"]["steps"]
    assert cpu["tune"]["repetitions"] >= quick["tune"]["repetitions"]
    assert cpu["run_experiments"] == paper["run_experiments"]
    # A2 needs the Transformer's published width; the LSTM reaches TargetBayes at quick's width
    paper_tf, cpu_tf = (coins_jobs.network_subtree(c, "base", "transformer") for c in (paper, cpu))
    assert (cpu_tf["d"], cpu_tf["width"]) == (paper_tf["d"], paper_tf["width"])
    assert coins_jobs.network_subtree(cpu, "base", "lstm")["d"] < paper_tf["d"]
    # A5 needs the d = 4 LSTM's published 128 units at cpu and quick scale alike (at 64 its SoftPT keeps a lead RealPT loses)
    paper_d4, cpu_d4, quick_d4 = (coins_jobs.network_subtree(c, "d4", "lstm") for c in (paper, cpu, quick))
    assert (cpu_d4["d"], cpu_d4["width"]) == (quick_d4["d"], quick_d4["width"]) == (paper_d4["d"], paper_d4["width"]) == (4, 128)
