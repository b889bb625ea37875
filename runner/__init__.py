"""The runner: Hydra config -> Lightning training (``runner.train.run``)."""

from runner.resolvers import register_resolvers

register_resolvers()
