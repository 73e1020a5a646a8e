"""``audiototext serve``'s observability flags: absurd values are refused before anything
starts, with the flag named."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from audiototext.cli import main


@pytest.fixture(autouse=True)
def root_handlers() -> Iterator[None]:
    """serve replaces the root logger's handlers (--log-format): put pytest's back."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--metrics-interval", "0"], "--metrics-interval 0"),
        (["--metrics-interval", "-2"], "--metrics-interval -2"),
        (["--alert-min-free-memory-mb", "-1"], "--alert-min-free-memory-mb"),
        (["--alert-min-free-disk-mb", "1e12"], "--alert-min-free-disk-mb"),
    ],
)
def test_absurd_settings_are_refused_at_start_up(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", "0", "--log-format", "json", *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err, err


def test_an_unknown_log_format_is_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--log-format", "xml"])
    assert exc.value.code == 2
    assert "--log-format" in capsys.readouterr().err
