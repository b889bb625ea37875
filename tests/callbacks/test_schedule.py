"""EveryN: the every-n schedule of the periodic callbacks, without a Trainer."""

from __future__ import annotations

import pytest

from callbacks.schedule import EveryN


def test_steps_are_due_at_positive_multiples() -> None:
    schedule = EveryN(every_n_steps=3)
    assert [s for s in range(10) if schedule.step_due(s)] == [3, 6, 9]
    assert not any(schedule.epoch_due(e) for e in range(5))
    assert schedule.per_steps and not schedule.per_epochs


def test_epochs_are_due_from_epoch_zero() -> None:
    schedule = EveryN(every_n_epochs=2)
    assert [e for e in range(7) if schedule.epoch_due(e)] == [0, 2, 4, 6]
    assert not any(schedule.step_due(s) for s in range(10))
    assert schedule.per_epochs and not schedule.per_steps


def test_steps_win_over_epochs_and_neither_is_never_due() -> None:
    both = EveryN(every_n_steps=2, every_n_epochs=1)
    assert both.step_due(2) and not both.epoch_due(0)
    never = EveryN()
    assert not any(never.step_due(s) or never.epoch_due(s) for s in range(10))
    assert never.state_dict() == {}


def test_marked_step_and_epoch_are_not_due_again() -> None:
    schedule = EveryN(every_n_steps=2)
    assert schedule.mark_step(4) is True
    assert not schedule.step_due(4) and schedule.step_due(6)
    assert schedule.mark_step(4) is False  # e.g. gradient accumulation: the same global step again
    per_epoch = EveryN(every_n_epochs=1)
    assert per_epoch.mark_epoch(3) is True and per_epoch.mark_epoch(3) is False
    assert not per_epoch.epoch_due(3) and per_epoch.epoch_due(4)


def test_state_dict_round_trip_with_the_checkpoint_keys() -> None:
    steps = EveryN(every_n_steps=5)
    steps.mark_step(10)
    assert steps.state_dict() == {"last_logged_step": 10}
    restored = EveryN(every_n_steps=5)
    restored.load_state_dict(steps.state_dict())
    assert not restored.step_due(10) and restored.step_due(15)

    epochs = EveryN(every_n_epochs=1)
    epochs.mark_epoch(2)
    assert epochs.state_dict() == {"last_logged_epoch": 2}
    fresh = EveryN(every_n_epochs=1)
    fresh.load_state_dict({})  # an older checkpoint without the key: nothing done yet
    assert fresh.last_epoch == -1 and fresh.last_step == -1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_bad_values_name_the_config_key(bad: object) -> None:
    with pytest.raises(ValueError, match=r"`log_every_n_steps` must be None or an int >= 1, got"):
        EveryN(every_n_steps=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`every_epochs` must be None or an int >= 1, got"):
        EveryN(every_n_epochs=bad, epochs_key="every_epochs")  # type: ignore[arg-type]
