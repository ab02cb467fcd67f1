import re
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import EarlyStopping

from svg_lightning import devices
from svg_lightning.config import TRAINING_SETTINGS, config_dir, validate_config
from svg_lightning.errors import ConfigError, DataNotPreparedError
from svg_lightning.help import command_help
from svg_lightning.memory_checks import backward_bytes, check_training_fits
from svg_lightning.models.config import SVGConfig
from tests.helpers import compose_cfg, run_cli
from tests.helpers.reference import SPEC_COUNTS, count

EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))
DEBUGS = sorted(p.stem for p in (Path(config_dir()) / "debug").glob("*.yaml"))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


# Experiments whose model is in the reference's parameter table.
PAPER_COUNTS = {
    "smmnist_lp": "smmnist_lp",
    "bair_lp": "bair_lp",
    "kth_lp": "kth_lp",
    "kth_fp": "kth_fp",
}


PAPER_EXPERIMENTS = sorted(
    f"{d}_{m}" for d in ("smmnist", "bair", "kth") for m in ("lp", "fp", "det")
)


OWN_VIDEOS_EXPERIMENTS = ["videos_det", "videos_fp", "videos_lp"]


@pytest.fixture
def h100(monkeypatch):
    """The memory of the GPUs the paper experiments are for (an 80 GB H100), whatever this
    machine has left: their batches of 100 need more than a small CPU host has (KTH's at
    least 30 GiB)."""
    monkeypatch.setattr(devices, "available_memory", lambda device: 80 * 10**9)


def test_the_nine_paper_experiments_and_the_cpu_study_exist():
    assert EXPERIMENTS == sorted([*PAPER_EXPERIMENTS, *OWN_VIDEOS_EXPERIMENTS, "reproduce_cpu"])


@pytest.mark.parametrize("name", OWN_VIDEOS_EXPERIMENTS)
def test_own_videos_experiments_take_bair_settings(tmp_path, name, h100):
    cfg = compose_cfg(tmp_path, f"+experiment={name}", "data.data_dir=nowhere")
    validate_config(cfg)  # unprepared: the channels check waits for the data
    check_training_fits(cfg)
    m = cfg.model
    assert (cfg.n_past, cfg.n_future, m.backbone, m.z_dim, m.beta, m.lr) == (
        2, 10, "vgg64", 64, 1.0e-4, 2.0e-3
    )  # fmt: skip
    assert cfg.task_name == name


@pytest.mark.parametrize("model,variant", [("svg_lp", "lp"), ("deterministic", "deterministic")])
def test_cpu_study_experiment_composes_for_each_model(tmp_path, model, variant):
    cfg = compose_cfg(tmp_path, "+experiment=reproduce_cpu", f"model={model}")
    validate_config(cfg)
    assert (cfg.data.num_digits, cfg.data.image_size, cfg.trainer.max_steps) == (1, 32, 3000)
    assert instantiate(cfg.model).hparams.variant == variant


@pytest.mark.parametrize("name", PAPER_EXPERIMENTS)
def test_experiment_composes_validates_and_builds(tmp_path, name, h100):
    cfg = compose_cfg(tmp_path, f"+experiment={name}")
    validate_config(cfg)
    check_training_fits(cfg)  # on the 80 GB GPU it is for
    assert backward_bytes(OmegaConf.to_container(cfg.model, resolve=True)) is not None  # measured
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
        (["seed=-1"], "seed=-1 must be an integer in [0, 4294967295]"),
        (["data.num_digits=0"], "data.num_digits=0 must be an integer >= 1"),
        (["data.train_length=0"], "data.train_length=0 must be an integer >= 16"),
        (["data.val_videos=0"], "data.val_videos=0 must be an integer >= 1"),
        (["data.test_videos=0"], "data.test_videos=0 must be an integer >= 1 or null"),
        (["model.sample_chunk=0"], "model.sample_chunk=0 must be an integer >= 1 or null"),
        (["data.batch_size=1"], "data.batch_size=1 with model.bn_stats=per_step"),
        (["model.bn_stats=frame"], "model.bn_stats='frame' is unknown"),
        (["model.time_chunk=0"], "model.time_chunk=0 must be auto, an integer >= 1 or null"),
        (["model.time_chunk=half"], "model.time_chunk='half' must be auto, an integer >= 1"),
        (["model.time_chunk=3", "model.bn_stats=joint"], "would normalise each chunk on its own"),
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
        (["trainer.precision=64"], "trainer.precision='64' is unknown"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0 must be an integer >= 1"),
        (["seed=4294967296"], "seed=4294967296 must be an integer in [0, 4294967295]"),
        (["data.val_seed=-1"], "data.val_seed=-1 must be an integer in [0, 4294967295]"),
        (
            ["callbacks.video_samples.every_n_validations=0"],
            "callbacks.video_samples.every_n_validations=0 must be an integer >= 1",
        ),
        (
            ["callbacks.video_samples.num_sequences=0"],
            "callbacks.video_samples.num_sequences=0 must be an integer >= 1",
        ),
        (
            ["callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=-1"],
            "callbacks.early_stopping.patience=-1 must be an integer >= 0",
        ),
        (
            ["callbacks.model_checkpoint.mode=best"],
            "callbacks.model_checkpoint.mode='best' is unknown",
        ),
        (["summary.enabled=no"], "summary.enabled='no' must be true or false"),
        (["model.compile=maybe"], "model.compile='maybe' must be true or false"),
        (
            ["callbacks.model_checkpoint.save_last=yes"],
            "callbacks.model_checkpoint.save_last='yes' is unknown",
        ),
        (["task_name=.."], "task_name='..' must be a plain folder name"),
        (["task_name=a/b"], "task_name='a/b' must be a plain folder name"),
        ([f"task_name={'x' * 300}"], "task_name is 300 bytes long; a folder name may have at most"),
        (["trainer.devices=0"], "trainer.devices=0 must be >= 1 (devices per machine), or -1"),
        (["trainer.val_check_interval=0.5"], "trainer.val_check_interval=0.5 must be an integer"),
        (["summary.grid_videos=0"], "summary.grid_videos=0 must be an integer >= 1"),
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


ACCELERATORS = {"cpu": "cpu", "gpu": "gpu", "ddp": "gpu", "ddp_sim": "cpu", "mps": "mps"}


def test_every_trainer_preset_is_tested():
    assert sorted(ACCELERATORS) == sorted(set(options("trainer")) - {"default"})


@pytest.mark.parametrize("preset", sorted(ACCELERATORS))
def test_trainer_presets_compose(tmp_path, preset):
    cfg = compose_cfg(tmp_path, f"trainer={preset}", "trainer.precision=bf16-mixed")
    accelerator = ACCELERATORS[preset]
    if accelerator == "gpu" and not torch.cuda.is_available():
        # A GPU preset on a machine without one is refused with the other settings.
        with pytest.raises(ConfigError, match="no CUDA GPU; use trainer=cpu"):
            validate_config(cfg)
    elif accelerator == "mps" and not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="MPS is not available here; use trainer=cpu"):
            validate_config(cfg)
    else:
        validate_config(cfg)
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.accelerator == accelerator


def test_ddp_sim_is_two_cpu_processes(tmp_path):
    cfg = compose_cfg(tmp_path, "trainer=ddp_sim")
    validate_config(cfg)
    t = cfg.trainer
    assert (t.accelerator, t.devices, t.strategy) == ("cpu", 2, "ddp_spawn")


@pytest.mark.parametrize(
    "override,group,option",
    [
        ("debug=fdrr", "debug", "fdr"),
        ("hparams_search=smmnist_bta", "hparams_search", "smmnist_beta"),
    ],
)
def test_misspelt_option_fails_listing_the_options(tmp_path, override, group, option):
    with pytest.raises(MissingConfigException) as err:
        compose_cfg(tmp_path, override)
    msg = str(err.value)
    assert f"Could not find '{group}/{override.split('=')[1]}'" in msg
    assert f"Available options in '{group}'" in msg
    assert re.search(rf"^\s*{option}$", msg, re.M)


def compose_with_hydra(*overrides: str):
    """The config with its ``hydra`` node (run and sweep folders), paths as a user has them."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("experiment", [None, "smmnist_lp"])
@pytest.mark.parametrize("debug", DEBUGS)
def test_debug_configs_write_under_logs_debug_without_wandb(tmp_path, debug, experiment):
    """Also after +experiment=..., which comes later in the defaults and sets the task name."""
    extra = [f"+experiment={experiment}"] if experiment else []
    cfg = compose_with_hydra(f"debug={debug}", *extra)
    task = experiment or "quickstart"
    assert cfg.task_name == task
    for folder in (cfg.hydra.run.dir, cfg.hydra.sweep.dir):
        assert Path(folder).parts[-5:-2] == ("logs", "debug", task)
    assert list(cfg.logger) == ["csv"]
    assert cfg.trainer.accelerator == "cpu" and not cfg.summary.enabled
    validate_config(compose_cfg(tmp_path, f"debug={debug}", *extra))


def test_debug_variants_set_what_they_are_named_for():
    t = {d: compose_with_hydra(f"debug={d}").trainer for d in DEBUGS}
    assert DEBUGS == ["default", "fdr", "limit", "overfit", "profiler"]
    assert t["default"].detect_anomaly and t["default"].max_epochs == 1
    assert t["fdr"].fast_dev_run is True
    assert t["limit"].limit_train_batches == 5 and t["limit"].limit_val_batches == 2
    assert t["overfit"].overfit_batches == 1
    assert t["profiler"].profiler._target_.endswith("SimpleProfiler")
    assert not t["profiler"].detect_anomaly  # timings without anomaly detection's overhead


def test_real_runs_are_not_under_logs_debug():
    cfg = compose_with_hydra()
    assert Path(cfg.hydra.run.dir).parts[-4:-2] == ("logs", "quickstart")


def test_many_loggers(tmp_path):
    cfg = compose_cfg(tmp_path, "logger=many_loggers")
    assert sorted(cfg.logger) == ["csv", "tensorboard", "wandb"]


def test_early_stopping_is_added_next_to_the_default_callbacks(tmp_path):
    default = compose_cfg(tmp_path).callbacks
    assert "early_stopping" not in default
    cfg = compose_cfg(tmp_path, "callbacks=[default,early_stopping]")
    assert list(cfg.callbacks) == [*default, "early_stopping"]
    stop = instantiate(cfg.callbacks.early_stopping)
    assert isinstance(stop, EarlyStopping)
    assert (stop.monitor, stop.mode) == (cfg.optimized_metric, "max")


def test_config_tree_is_printed_unless_turned_off(tmp_path):
    assert compose_cfg(tmp_path).extras.print_config is True
    assert compose_cfg(tmp_path, "extras.print_config=false").extras.print_config is False


HELP = Path(config_dir()) / "hydra" / "help"


@pytest.mark.parametrize(
    "command,groups",
    [
        ("eval", ["trainer", "paths", "logger"]),
        ("analyze", ["paths", "logger"]),
        ("sample", ["paths"]),
    ],
)
def test_each_command_help_lists_its_own_groups(command, groups):
    text = command_help(command).split("== Config groups")[1].split("== Config (")[0]
    listed = re.findall(r"^(\w+):", text, re.M)
    assert listed == groups
    for group in groups:  # the options named are the ones that exist
        shown = re.findall(rf"^{group}:.*\n((?:  .*\n)+)", text, re.M)[0]
        assert [line.split()[0].rstrip("*") for line in shown.splitlines()] == options(group)
    help_cfg = yaml.safe_load((HELP / f"{command}.yaml").read_text())
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(command, return_hydra_config=True)
    assert cfg.hydra.help.app_name == help_cfg["app_name"]  # the command selects its own help


@pytest.mark.slow
def test_evaluate_help_through_the_cli(tmp_path):
    r = run_cli("svg_lightning.evaluate", tmp_path, "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "python -m svg_lightning.evaluate ckpt_path=" in r.stdout
    assert re.search(r"^trainer:.*\n  cpu .*\n  ddp ", r.stdout, re.M)
    assert not re.search(r"^(data|model|experiment|debug):", r.stdout, re.M)
    assert not (tmp_path / "logs").exists()


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
