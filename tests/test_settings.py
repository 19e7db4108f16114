"""Numbers the deployer sets in the environment: a bad one stops the start with a message naming it, in one line (it
had been a traceback from inside an import: "could not convert string to float: 'abc'"), and one below any sense
(negative, nan) is refused rather than taken."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medimg_demo import settings
from medimg_demo.errors import SettingError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("raw", ["abc", "nan", "inf", "-1", "1e400", "2.5"])
def test_a_setting_that_is_no_sensible_number_is_refused_naming_it(raw: str, monkeypatch) -> None:
    monkeypatch.setenv("MEDIMG_TEST_WORKERS", raw)
    with pytest.raises(SettingError, match=r"MEDIMG_TEST_WORKERS must be a whole number of at least 1 \(decodes at "
                                           r"once\); it is .*unset it for the default, 2\.$"):
        settings.whole("MEDIMG_TEST_WORKERS", 2, "decodes at once", low=1)
    with pytest.raises(SettingError, match=r"for the default, 384,000,000\.$"):  # not 3.84e+08
        settings.whole("MEDIMG_TEST_WORKERS", 384_000_000, "bytes", low=1)


def test_a_setting_unset_or_empty_is_its_default_and_a_number_is_taken(monkeypatch) -> None:
    monkeypatch.delenv("MEDIMG_TEST_MB", raising=False)
    assert settings.number("MEDIMG_TEST_MB", 100, "megabytes") == 100
    monkeypatch.setenv("MEDIMG_TEST_MB", " ")
    assert settings.number("MEDIMG_TEST_MB", 100, "megabytes") == 100
    monkeypatch.setenv("MEDIMG_TEST_MB", "0.5")
    assert settings.number("MEDIMG_TEST_MB", 100, "megabytes", low=0.01) == 0.5
    monkeypatch.setenv("MEDIMG_TEST_MB", "3")
    assert settings.whole("MEDIMG_TEST_MB", 8, "places") == 3 and isinstance(settings.whole("MEDIMG_TEST_MB", 8, "p"), int)


@pytest.mark.slow
def test_the_app_does_not_start_with_a_bad_setting_and_says_which_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "MEDIMG_MAX_UPLOAD_MB": "abc", "MEDIMG_STATE_DIR": str(tmp_path / "state"),
           "GRADIO_SERVER_PORT": "7899"}
    done = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "medimg_demo stopped: MEDIMG_MAX_UPLOAD_MB must be a number of at least 0.01 (megabytes an upload may "
        "have); it is 'abc'. Set it so, or unset it for the default, 100.")
    assert "Traceback" not in done.stderr, done.stderr
