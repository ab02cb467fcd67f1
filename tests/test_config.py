from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate

from svg_lightning.config import TRAINING_SETTINGS, config_dir, validate_config
from svg_lightning.errors import ConfigError, DataNotPreparedError
from svg_lightning.models.config import SVGConfig
from tests.helpers import compose_cfg
from tests.helpers.reference import SPEC_COUNTS, count

EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))
# Experiments whose model is in the reference's parameter table.
PAPER_COUNTS = {
    "smmnist_lp": "smmnist_lp",
    "bair_lp": "bair_lp",
    "kth_lp": "kth_lp",
    "kth_fp": "kth_fp",
}


def test_all_nine_experiments_exist():
    assert EXPERIMENTS == sorted(
        f"{d}_{m}" for d in ("smmnist", "bair", "kth") for m in ("lp", "fp", "det")
    )


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_validates_and_builds(tmp_path, name):
    cfg = compose_cfg(tmp_path, f"+experiment={name}")
    validate_config(cfg)
    assert cfg.task_name == name
    assert cfg.trainer.max_steps == 180_000 and cfg.data.batch_size == 100
    model = instantiate(cfg.model)
    variant = {"lp": "lp", "fp": "fp", "det": "deterministic"}[name.split("_")[1]]
    assert model.hparams.variant == variant
    if name in PAPER_COUNTS:
        assert count(model.svg) == SPEC_COUNTS[PAPER_COUNTS[name]][1][-1]


def test_smmnist_paper_settings(tmp_path):
    cfg = compose_cfg(tmp_path, "+experiment=smmnist_lp")
    assert (cfg.n_past, cfg.n_future, cfg.data.num_digits, cfg.data.image_size) == (5, 10, 2, 64)
    m = cfg.model
    assert (m.backbone, m.z_dim, m.beta, m.lr, m.g_dim, m.rnn_size) == (
        "dcgan64",
        10,
        1e-4,
        2e-3,
        128,
        256,
    )


@pytest.mark.parametrize("name,dataset", [("kth_lp", "KTH"), ("bair_fp", "BAIR")])
def test_unprepared_datasets_fail_with_instructions(tmp_path, name, dataset):
    cfg = compose_cfg(tmp_path, f"+experiment={name}")
    dm = instantiate(cfg.data)
    with pytest.raises(DataNotPreparedError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert f"{dataset} data is not prepared" in msg and "svg_lightning.data.prepare" in msg
    assert str(tmp_path / "data") in msg


def test_default_is_the_quickstart(tmp_path):
    cfg = compose_cfg(tmp_path)
    validate_config(cfg)
    assert cfg.task_name == "quickstart"
    assert (cfg.model.backbone, cfg.data.image_size, cfg.data.num_digits) == ("dcgan32", 32, 1)
    assert cfg.model.variant == "lp" and "wandb" in cfg.logger


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["n_past=0"], "n_past=0 must be an integer >= 1"),
        (["n_future=0"], "n_future=0 must be an integer >= 1"),
        (["n_past=2.5"], "n_past=2.5 must be an integer >= 1"),
        (["model.nf=1.5"], "model.nf=1.5 must be an integer >= 1"),
        (["model.n_past=3"], "model.n_past=3 differs from n_past=5"),
        (["model.n_future=0"], "model.n_future=0 differs from n_future=10"),
        (["data.n_future=4"], "data.n_future=4 differs from n_future=10"),
        (["model.adam_beta1=1.0"], "model.adam_beta1=1.0 must be a finite number in [0, 1)"),
        (["model.lr=inf"], "model.lr=inf must be a finite number"),
        (["model.beta=inf"], "model.beta=inf must be a finite number"),
        (["trainer.val_check_interval=0"], "trainer.val_check_interval=0 must be an integer >= 1"),
        (["data.num_workers=-1"], "data.num_workers=-1 must be an integer >= 0"),
        (["seed=-1"], "seed=-1 must be an integer >= 0"),
        (["data.num_digits=0"], "data.num_digits=0 must be an integer >= 1"),
        (["data.train_length=0"], "data.train_length=0 must be an integer >= 16"),
        (["data.val_videos=0"], "data.val_videos=0 must be an integer >= 1"),
        (["data.test_videos=0"], "data.test_videos=0 must be an integer >= 1 or null"),
        (["model.sample_chunk=0"], "model.sample_chunk=0 must be an integer >= 1 or null"),
        (["data.batch_size=1"], "data.batch_size=1 with model.bn_stats=per_step"),
        (["model.bn_stats=frame"], "model.bn_stats='frame' is unknown"),
        (["+experiment=bair_lp", "n_future=40"], "longer than the dataset's 30-frame videos"),
        (["model.backbone=dcgan64"], "model.backbone=dcgan64 works on 64x64"),
        (["data.image_size=64"], "backbones for that size: ['dcgan64', 'vgg64']"),
        (["model.channels=3"], "model.channels=3 does not match the dataset"),
        (["+experiment=bair_lp", "model.channels=1"], "set model.channels=3"),
        (["model.backbone=resnet"], "model.backbone='resnet' is unknown"),
        (
            ["model.skip=first"],
            "model.skip='first' is unknown; allowed: ['last', 'reference', 'previous']",
        ),
        (["model.variant=vae"], "model.variant='vae' is unknown"),
        (["+model.dropout=0.1"], "unknown model settings ['dropout']"),
        (["model.beta=-1"], "model.beta=-1 must be a finite number in [0, inf)"),
        (["model.lr=0"], "model.lr=0 must be a finite number in (0, inf)"),
        (["trainer.precision=8"], "trainer.precision='8' is unknown"),
        (
            ["data.image_size=48"],
            "data.image_size=48 is not available for this dataset; allowed: [32, 64]",
        ),
    ],
)
def test_bad_settings_are_named(tmp_path, overrides, needle):
    cfg = compose_cfg(tmp_path, *overrides)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert needle in str(err.value)


def test_unknown_experiment_and_key_fail_at_composition(tmp_path):
    with pytest.raises(MissingConfigException, match="experiment/nope"):
        compose_cfg(tmp_path, "+experiment=nope")
    with pytest.raises(ConfigCompositionException, match="model.nonexistent"):
        compose_cfg(tmp_path, "model.nonexistent=1")


@pytest.mark.parametrize("preset", ["cpu", "gpu", "ddp"])
def test_trainer_presets_compose(tmp_path, preset):
    cfg = compose_cfg(tmp_path, f"trainer={preset}", "trainer.precision=bf16-mixed")
    if preset != "cpu" and not torch.cuda.is_available():
        # A GPU preset on a machine without one is refused with the other settings.
        with pytest.raises(ConfigError, match="no CUDA GPU; use trainer=cpu"):
            validate_config(cfg)
    else:
        validate_config(cfg)
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.accelerator == {"cpu": "cpu", "gpu": "gpu", "ddp": "gpu"}[preset]


def test_evaluation_uses_the_trainer_group(tmp_path):
    cfg = compose_cfg(tmp_path, "ckpt_path=x.ckpt", "trainer=ddp", config_name="eval")
    assert (cfg.trainer.strategy, cfg.trainer.accelerator) == ("ddp", "gpu")
    assert compose_cfg(tmp_path, "ckpt_path=x.ckpt", config_name="eval").trainer.devices == 1


def test_experiments_differ_only_in_what_they_name(tmp_path):
    """The model variants of one dataset share every setting but the model and the task name."""
    for dataset in ("smmnist", "kth", "bair"):
        lp, fp, det = (
            compose_cfg(tmp_path, f"+experiment={dataset}_{v}") for v in ("lp", "fp", "det")
        )
        assert lp.data == fp.data == det.data and lp.trainer == det.trainer
        assert (lp.model.variant, fp.model.variant, det.model.variant) == (
            "lp", "fp", "deterministic"
        )  # fmt: skip
        assert {k: v for k, v in lp.model.items() if k != "variant"} == {
            k: v for k, v in det.model.items() if k != "variant"
        }
        assert lp.task_name == f"{dataset}_lp"


def test_model_config_lists_the_architecture(tmp_path):
    """conf/model/svg_lp.yaml names every SVGConfig field and every LightningModule setting."""
    keys = set(compose_cfg(tmp_path).model) - {"_target_"}
    assert keys == set(SVGConfig.names()) | set(TRAINING_SETTINGS)
