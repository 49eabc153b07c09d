"""The CLI's error contract: bad input gives exit status 2 and one `error:` line, no traceback."""

from __future__ import annotations

import pytest

from allocator.cli.main import main


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "invalid choice" in err and len(err.splitlines()) == 1
