"""The CLI's error contract: bad input gives exit status 2 and one `error:` line, no traceback."""

from __future__ import annotations

import pytest

from allocator.cli.main import main


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
