"""Where the servers of scripts/clients.sh listen; every test reads its own connection from here.

HW_PORT: a trust-mode server with tests/clients/fixture.sql loaded.
HW_SECURE_PORT: a server with --auth password and TLS (user HW_USER / HW_PASSWORD).
"""
import os

import pytest


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the client tests through scripts/clients.sh")
    return value


@pytest.fixture(scope="session")
def dsn():
    return f"host=127.0.0.1 port={_env('HW_PORT')} dbname=headwater user=tester"


@pytest.fixture(scope="session")
def url():
    return f"postgresql://tester@127.0.0.1:{_env('HW_PORT')}/headwater"


@pytest.fixture(scope="session")
def secure():
    return {
        "port": int(_env("HW_SECURE_PORT")),
        "user": _env("HW_USER"),
        "password": _env("HW_PASSWORD"),
    }
