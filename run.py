"""Train a timm image classifier with Lightning, configured by Hydra: ``python run.py --help``.

Nothing heavy is imported before Hydra has parsed the command line, so ``--help`` is instant.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from runner.train import run

    return run(cfg)


if __name__ == "__main__":
    main()
