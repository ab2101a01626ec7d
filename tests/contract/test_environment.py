"""The environment stays sound with caldav installed: ``urllib3`` is the real urllib3, not urllib3-future.

caldav 3 pulls in niquests and urllib3-future. urllib3-future's wheel ships
``urllib3_future.pth``, which at every interpreter start copies the fork over
``site-packages/urllib3`` (leaving a ``.u3f_sync`` marker) and so breaks other
clients of urllib3 (requests, apprise, schemathesis). Installing with
``URLLIB3_NO_OVERRIDE=1 pip install --no-binary urllib3-future`` (the
Makefile does) builds it without that file. These tests fail if anything
reinstalls it the default way.
"""

from __future__ import annotations

import importlib.metadata
import json
import site
import subprocess
import sys
from pathlib import Path

from contract.servers import HttpRecorder

SITE_DIRS = [Path(p) for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]


def test_no_pth_file_overrides_urllib3() -> None:
    """No start-up hook that would swap urllib3 for the fork is installed."""
    offenders = [
        pth for directory in SITE_DIRS for pth in directory.glob("*.pth") if "urllib3_future" in pth.read_text()
    ]
    assert offenders == [], f"reinstall with URLLIB3_NO_OVERRIDE=1 and --no-binary urllib3-future: {offenders}"


def test_urllib3_is_the_real_one_in_a_fresh_interpreter() -> None:
    """A new interpreter (where .pth files run) imports urllib3 whose version is urllib3's own distribution's."""
    code = (
        "import json, pathlib, urllib3, importlib.metadata as m\n"
        "root = pathlib.Path(urllib3.__file__).parent\n"
        "print(json.dumps({'version': urllib3.__version__, 'dist': m.version('urllib3'),"
        " 'file': urllib3.__file__, 'marker': (root / '.u3f_sync').exists()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert seen["version"] == seen["dist"], seen
    assert seen["version"] != importlib.metadata.version("urllib3-future"), seen
    assert "urllib3_future" not in seen["file"] and not seen["marker"], seen


def test_urllib3_future_is_installed_beside_it() -> None:
    """caldav still has its fork, under its own name."""
    import urllib3
    import urllib3_future

    assert urllib3_future.__version__ == importlib.metadata.version("urllib3-future")
    assert Path(urllib3_future.__file__).parent != Path(urllib3.__file__).parent


def test_requests_still_works(http_recorder: HttpRecorder) -> None:
    """The symptom of the override: clients of the real urllib3 (requests, under apprise) break. They do not."""
    import requests

    response = requests.get(http_recorder.base_url + "/environment-check", timeout=30)
    assert response.status_code == 200 and response.json() == {}
    response.close()
