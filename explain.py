"""Explain a trained checkpoint with heatmaps, scores and a manifest: ``python explain.py ckpt_path=<run dir>``.

Nothing heavy is imported before Hydra has parsed the command line (like ``run.py``).
"""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent / "conf"


def main() -> None:
    import hydra
    from omegaconf import DictConfig

    import runner  # noqa: F401 - registers the config resolvers (omegaconf only, nothing heavy)

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="explain")
    def _main(cfg: DictConfig) -> None:
        from runner.explain import run

        run(cfg)

    _main()


if __name__ == "__main__":
    main()
