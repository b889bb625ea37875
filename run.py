"""Train a timm image classifier with Lightning, configured by Hydra: ``python run.py --help``.

Nothing heavy is imported before Hydra has parsed the command line, so ``--help`` is instant.
"""

import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent / "conf"


def main() -> None:
    import hydra
    from omegaconf import DictConfig

    import runner  # noqa: F401 - registers the config resolvers (omegaconf only, nothing heavy)
    from runner.launch.slurm_config import register_slurm_launcher_config

    register_slurm_launcher_config()  # hydra/launcher=submitit_slurm runs runner.launch.slurm_launcher

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
    def _main(cfg: DictConfig) -> float | None:
        from runner.train import run

        return run(cfg)

    _main()


if __name__ == "__main__":
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        from runner.cli_help import help_text

        print(help_text(CONF_DIR))
    else:
        main()
