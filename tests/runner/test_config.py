"""Config composition of every option of every group, config checks, callbacks/loggers from
config, checkpoint paths, the --help text and the config tree."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichModelSummary,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from runner.checks import check_config, resolve_ckpt_path
from runner.cli_help import help_text
from runner.config_tree import print_config_tree
from runner.csv_logger import AppendingCSVLogger
from runner.instantiate import instantiate_callbacks, instantiate_loggers, target_nodes, wandb_has_credentials

Compose = Callable[..., DictConfig]

from tests.support.paths import REPO

CONF = REPO / "conf"

# Options that installed Hydra plugins add to Hydra's own groups.
PLUGIN_OPTIONS = {
    "hydra/launcher": ["joblib", "submitit_local", "submitit_slurm"],
    "hydra/sweeper": ["optuna"],
}


def discover_groups() -> dict[str, list[str]]:
    """Every config group under conf/ (nested ones as ``hydra/launcher``) and its options."""
    groups: dict[str, list[str]] = {}
    for path in sorted(CONF.rglob("*.yaml")):
        group = path.parent.relative_to(CONF).as_posix()
        if group != ".":
            groups.setdefault(group, []).append(path.stem)
    for group, options in PLUGIN_OPTIONS.items():
        groups.setdefault(group, [])
        groups[group] += [o for o in options if o not in groups[group]]
    return groups


GROUPS = discover_groups()
GROUP_OPTIONS = [(g, o) for g, opts in GROUPS.items() for o in opts]
LOGGER_OPTIONS = GROUPS["logger"]


def extra_overrides(group: str, option: str, tmp_path: Path) -> list[str]:
    """What an option needs besides itself to be complete."""
    if (group, option) == ("data", "imagefolder"):
        return [f"data.train_dir={tmp_path / 'train'}", f"data.val_dir={tmp_path / 'val'}"]
    if (group, option) == ("experiment", "finetune_imagefolder"):
        return [f"data.train_dir={tmp_path / 'train'}", f"data.val_dir={tmp_path / 'val'}"]
    if (group, option) == ("data", "hf"):
        return [f"data.path={tmp_path / 'hf'}"]
    if (group, option) == ("experiment", "finetune_hf"):
        return [f"data.path={tmp_path / 'hf'}"]
    if (group, option) == ("data", "coco_folder"):
        return [f"data.{split}_{kind}={tmp_path / split}{'.json' if kind == 'annotations' else ''}"
                for split in ("train", "val") for kind in ("annotations", "images")]
    return []


def test_discovery_finds_the_known_groups() -> None:
    for group, options in {
        "data": ["digits", "shapes", "imagefolder"],
        "model": ["classifier"],
        "trainer": ["default", "cpu", "gpu", "ddp", "ddp_cpu"],
        "logger": ["csv", "tensorboard", "wandb", "mlflow", "many", "none"],
        "callbacks": ["default", "none"],
        "debug": ["fdr", "overfit", "limit", "profiler"],
        "hparams_search": ["optuna"],
        "paths": ["default"],
        "hydra": ["default"],
        "hydra/launcher": ["slurm", "joblib", "submitit_local", "submitit_slurm"],
    }.items():
        assert set(options) <= set(GROUPS[group]), group
    assert GROUPS["experiment"], "no experiment configs found"


# --------------------------------------------------------------- composition
@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_option_composes_resolves_and_passes_checks(
    compose_cfg: Compose, job_of: Callable[[DictConfig], DictConfig], tmp_path: Path, group: str, option: str
) -> None:
    cfg = compose_cfg(f"{group}={option}", *extra_overrides(group, option, tmp_path))
    # the whole config, hydra node included, resolves
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    for key in ("data", "model", "trainer", "paths", "seed", "task_name"):
        assert key in resolved, key
    assert resolved["paths"]["output_dir"] == str(tmp_path / "run")
    assert resolved["trainer"]["default_root_dir"] == str(tmp_path / "run")
    check_config(cfg)
    # so does what the task function gets (no hydra node), and it passes the checks too
    job_cfg = job_of(cfg)
    check_config(job_cfg)
    job = OmegaConf.to_container(job_cfg, resolve=True)
    assert "hydra" not in job
    for key in ("data", "model", "trainer"):
        assert importlib.util.find_spec(job[key]["_target_"].rsplit(".", 1)[0]) is not None


def test_group_choice_is_applied(compose_cfg: Compose, tmp_path: Path) -> None:
    """A sample of choices really lands in the config."""
    cfg = compose_cfg("data=shapes", "trainer=ddp_cpu", "logger=many", "callbacks=none", "debug=fdr")
    assert cfg.data._target_.endswith("ShapesDataModule")
    assert cfg.trainer.strategy._target_ == "lightning.pytorch.strategies.DDPStrategy"
    assert cfg.trainer.devices == 2 and cfg.trainer.accelerator == "cpu"
    assert set(target_nodes(cfg.logger, "logger")[i][0] for i in range(2)) == {"csv", "tensorboard"}
    assert not target_nodes(cfg.get("callbacks"), "callbacks")
    assert cfg.trainer.fast_dev_run is True
    assert HydraConfig.get().runtime.choices["data"] == "shapes"


@pytest.mark.parametrize("experiment", GROUPS["experiment"])
def test_experiment_changes_the_defaults(compose_cfg: Compose, experiment: str, tmp_path: Path) -> None:
    base = compose_cfg(job=True)
    cfg = compose_cfg(f"experiment={experiment}", *extra_overrides("experiment", experiment, tmp_path), job=True)
    assert OmegaConf.to_container(cfg, resolve=True) != OmegaConf.to_container(base, resolve=True)
    check_config(cfg)


def test_hparams_search_optuna_is_a_multirun_maximising(compose_cfg: Compose) -> None:
    cfg = compose_cfg("hparams_search=optuna")
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert cfg.optimized_metric
    params = cfg.hydra.sweeper.params
    # every searched key exists in the config
    for key in params:
        assert OmegaConf.select(cfg, key, default="__absent__") != "__absent__", key


def test_slurm_launcher_follows_the_ddp_trainer(compose_cfg: Compose) -> None:
    cfg = compose_cfg("hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2", "trainer.devices=4")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["nodes"] == 2 and launcher["tasks_per_node"] == 4 and launcher["gpus_per_node"] == 4


def test_slurm_launcher_with_ddp_defaults_asks_for_a_valid_allocation(compose_cfg: Compose) -> None:
    """The command documented in conf/trainer/ddp.yaml: ``-m trainer=ddp trainer.num_nodes=2 hydra/launcher=slurm``.

    trainer=ddp has ``devices: -1`` (all GPUs), which the slurm launcher copies into
    tasks_per_node/gpus_per_node: SLURM cannot allocate -1 tasks or GPUs per node.
    """
    cfg = compose_cfg("hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert isinstance(launcher["tasks_per_node"], int) and launcher["tasks_per_node"] >= 1, launcher["tasks_per_node"]
    assert isinstance(launcher["gpus_per_node"], int) and launcher["gpus_per_node"] >= 1, launcher["gpus_per_node"]


# ------------------------------------------------------------- config checks
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs"),
        ("model.optimizer.lr=true", "model.optimizer.lr"),
        ("data.batch_size=1.5", "data.batch_size"),
        ("seed=abc", "seed"),
        ("model.pretrained=yes_please", "model.pretrained"),
        ("trainer.devices=1.5", "trainer.devices"),
        ("keep_freed_memory=sometimes", "keep_freed_memory"),
    ],
)
def test_check_config_rejects_wrong_types(compose_cfg: Compose, override: str, key: str) -> None:
    cfg = compose_cfg(override, job=True)
    with pytest.raises(ValueError) as err:
        check_config(cfg)
    assert key in str(err.value)
    assert "expected" in str(err.value)


def test_check_config_reports_every_wrong_type_at_once(compose_cfg: Compose) -> None:
    cfg = compose_cfg("trainer.max_epochs=abc", "model.optimizer.lr=true", job=True)
    with pytest.raises(ValueError) as err:
        check_config(cfg)
    assert "trainer.max_epochs" in str(err.value) and "model.optimizer.lr" in str(err.value)


def test_check_config_accepts_valid_values(compose_cfg: Compose) -> None:
    check_config(compose_cfg("trainer.max_epochs=3", "model.optimizer.lr=3e-4", "seed=null",
                             "trainer.devices=[0]", "data.batch_size=8", job=True))


def test_check_config_reports_missing_values(compose_cfg: Compose) -> None:
    cfg = compose_cfg("data=imagefolder", job=True)
    with pytest.raises(ValueError) as err:
        check_config(cfg)
    msg = str(err.value)
    assert "data.train_dir" in msg and "data.val_dir" in msg and "missing" in msg
    cfg = compose_cfg("data=imagefolder", "data.train_dir=/somewhere", job=True)
    with pytest.raises(ValueError) as err:
        check_config(cfg)
    assert "data.val_dir" in str(err.value) and "data.train_dir" not in str(err.value)


# ---------------------------------------------------------------- callbacks
def test_default_callbacks_instantiate(compose_cfg: Compose, tmp_path: Path) -> None:
    cfg = compose_cfg("callbacks=default", "callbacks.early_stopping.patience=2", job=True)
    callbacks = instantiate_callbacks(cfg.callbacks, has_logger=True)
    kinds = {type(cb) for cb in callbacks}
    assert {ModelCheckpoint, EarlyStopping, LearningRateMonitor, RichModelSummary} <= kinds
    assert any(isinstance(cb, RichProgressBar) for cb in callbacks)  # callbacks.progress_bar.MetricsLineProgressBar
    ckpt = next(cb for cb in callbacks if isinstance(cb, ModelCheckpoint))
    assert Path(ckpt.dirpath) == tmp_path / "run" / "checkpoints"
    assert ckpt.monitor == "val/acc" and not ckpt.save_last
    # last.ckpt every epoch comes from a second ModelCheckpoint without a metric
    last = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor is None]
    assert len(last) == 1 and last[0].filename == "last" and Path(last[0].dirpath) == Path(ckpt.dirpath)
    stop = next(cb for cb in callbacks if isinstance(cb, EarlyStopping))
    assert stop.patience == 2 and stop.monitor == "val/acc"

    without_logger = instantiate_callbacks(cfg.callbacks, has_logger=False)
    assert not any(isinstance(cb, LearningRateMonitor) for cb in without_logger)
    assert len(without_logger) == len(callbacks) - 1


def test_no_callbacks(compose_cfg: Compose) -> None:
    cfg = compose_cfg("callbacks=none", job=True)
    assert instantiate_callbacks(cfg.get("callbacks"), has_logger=True) == []


def test_instantiate_callbacks_skips_plain_keys_and_rejects_non_callbacks() -> None:
    cfg = OmegaConf.create({"note": {"a": 1}, "stop": {"_target_": "lightning.pytorch.callbacks.EarlyStopping",
                                                       "monitor": "val/loss"}})
    callbacks = instantiate_callbacks(cfg, has_logger=False)
    assert len(callbacks) == 1 and isinstance(callbacks[0], EarlyStopping)
    bad = OmegaConf.create({"odd": {"_target_": "collections.OrderedDict"}})
    with pytest.raises(TypeError, match="callbacks.odd"):
        instantiate_callbacks(bad, has_logger=False)


# ------------------------------------------------------------------ loggers
@pytest.fixture
def no_wandb_account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("RUNNER_OUTPUT_DIR", str(tmp_path / "outputs"))
    return home


SLOW_LOGGERS = {"mlflow"}  # creating the sqlite store takes ~10 s


@pytest.mark.parametrize(
    "option",
    [pytest.param(o, marks=pytest.mark.slow) if o in SLOW_LOGGERS else o for o in LOGGER_OPTIONS],
)
def test_every_logger_instantiates(compose_cfg: Compose, no_wandb_account: Path, tmp_path: Path, option: str) -> None:
    cfg = compose_cfg(f"logger={option}", f"paths.log_dir={tmp_path / 'outputs'}", job=True)
    nodes = target_nodes(cfg.get("logger"), "logger")
    loggers = instantiate_loggers(cfg.get("logger"))
    try:
        assert len(loggers) == len(nodes)
        for (name, node), logger in zip(nodes, loggers):
            assert type(logger).__name__ == node._target_.rsplit(".", 1)[-1], name
        for logger in loggers:
            if isinstance(logger, (CSVLogger, TensorBoardLogger)):
                assert Path(logger.log_dir).is_relative_to(tmp_path / "run")
                logger.log_metrics({"val/acc": 0.5}, step=0)
                logger.finalize("success")
            name = type(logger).__name__
            if name == "WandbLogger":
                assert logger._offline is True
                assert os.environ.get("WANDB_MODE") == "offline"
                assert Path(logger.save_dir).is_relative_to(tmp_path)
            if name == "MLFlowLogger":
                assert logger._tracking_uri == f"sqlite:///{tmp_path / 'outputs'}/mlflow/mlflow.db"
                assert (tmp_path / "outputs" / "mlflow").is_dir()
                logger.log_metrics({"val/acc": 0.5}, step=0)
                logger.finalize("success")
                assert (tmp_path / "outputs" / "mlflow" / "mlflow.db").is_file()
    finally:
        for logger in loggers:
            if type(logger).__name__ == "WandbLogger" and logger._experiment is not None:
                logger.experiment.finish()
    if option == "none":
        assert loggers == []
    if option == "csv":
        assert (tmp_path / "run" / "csv" / "metrics.csv").is_file()
    if option == "many":
        assert {type(lg) for lg in loggers} == {AppendingCSVLogger, TensorBoardLogger}
        assert isinstance(loggers[0], CSVLogger)


@pytest.mark.slow
def test_wandb_offline_run_holds_metrics(compose_cfg: Compose, no_wandb_account: Path, tmp_path: Path) -> None:
    cfg = compose_cfg("logger=wandb", job=True)
    (logger,) = instantiate_loggers(cfg.logger)
    try:
        logger.log_metrics({"val/acc": 0.75}, step=1)
        run_dir = Path(logger.experiment.dir).parent
    finally:
        logger.experiment.finish()
    assert run_dir.name.startswith("offline-run-")
    assert run_dir.is_relative_to(tmp_path / "run")
    assert list(run_dir.glob("run-*.wandb"))


def test_wandb_credentials_detection(no_wandb_account: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert wandb_has_credentials() is False
    (no_wandb_account / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert wandb_has_credentials() is True
    (no_wandb_account / ".netrc").write_text("machine example.com\n  login user\n  password abc\n")
    assert wandb_has_credentials() is False
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_has_credentials() is True


def test_wandb_explicit_offline_is_kept(compose_cfg: Compose, no_wandb_account: Path) -> None:
    cfg = compose_cfg("logger=wandb", "logger.wandb.offline=true", job=True)
    (logger,) = instantiate_loggers(cfg.logger)
    assert logger._offline is True


# --------------------------------------------------------------- ckpt_path
def test_resolve_ckpt_path_none(tmp_path: Path) -> None:
    assert resolve_ckpt_path(None, tmp_path) is None


def test_resolve_ckpt_path_last(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        resolve_ckpt_path("last", tmp_path)
    assert str(tmp_path) in str(err.value) and "hydra.run.dir" in str(err.value)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path("last", tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")


def test_resolve_ckpt_path_run_dir_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # no Hydra run: paths relative to the cwd
    run = tmp_path / "old_run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        resolve_ckpt_path(str(run), tmp_path / "new")
    assert str(run) in str(err.value)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "checkpoints" / "epoch_003.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path(str(run), tmp_path / "new") == str(run / "checkpoints" / "last.ckpt")
    best = run / "checkpoints" / "epoch_003.ckpt"
    assert resolve_ckpt_path(str(best), tmp_path / "new") == str(best)
    monkeypatch.chdir(tmp_path)
    assert resolve_ckpt_path("old_run/checkpoints/epoch_003.ckpt", tmp_path / "new") == str(best)
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError) as err:
        resolve_ckpt_path(str(missing), tmp_path / "new")
    assert str(missing) in str(err.value)


def test_resolve_ckpt_path_relative_to_launch_dir(compose_cfg: Compose, tmp_path: Path, monkeypatch) -> None:
    compose_cfg()  # a Hydra run launched from the repo root (hydra.runtime.cwd)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        resolve_ckpt_path("some/run.ckpt", tmp_path)
    assert str(REPO / "some" / "run.ckpt") in str(err.value)


# --------------------------------------------------------------------- help
def test_help_lists_every_group_and_option() -> None:
    text = help_text(CONF)
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ") and line.split()}
    for group, options in GROUPS.items():
        if group == "hydra":
            continue
        assert group in lines, group
        listed = [o.strip() for o in lines[group].split(None, 1)[1].split(",")]
        for option in options:
            assert option in listed, (group, option)
    assert "basic" in lines["hydra/launcher"]


# -------------------------------------------------------------- config tree
def test_print_config_tree_saves_file(compose_cfg: Compose, tmp_path: Path, capsys) -> None:
    cfg = compose_cfg(job=True)
    target = tmp_path / "config_tree.log"
    text = print_config_tree(cfg, save_to=target, show=False)
    assert capsys.readouterr().out == ""
    saved = target.read_text()
    assert saved == text
    for key in cfg:
        assert str(key) in saved, key
    # the preferred order first, values resolved
    assert saved.index("data") < saved.index("model") < saved.index("trainer")
    assert str(tmp_path / "run") in saved
    assert "${" not in saved
    assert "_target_: runner.data.DigitsDataModule" in saved


def test_print_config_tree_shows(compose_cfg: Compose, capsys) -> None:
    text = print_config_tree(compose_cfg(job=True), show=True)
    out = capsys.readouterr().out
    assert "CONFIG" in out and "CONFIG" in text
