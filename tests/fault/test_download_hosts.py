"""A download URL with a wrong port or host name is answered within a minute, in one line.

A refused connection (a real port on 127.0.0.1 nobody listens on) and a host name that does
not resolve (under `.invalid`, RFC 6761: the resolver answers "no such name") are permanent:
wget does not try again, Prefect does not retry, and the line says what to check. Real wget,
and the `imgbatch download` command as a user runs it; the commands run at once.
"""

from __future__ import annotations

import time

import pytest
from helpers.cli_runs import Finished, start
from helpers.hung import refused_port

from imgbatch.acquire.download import WgetOptions, download
from imgbatch.errors import PermanentError

BOUND = 75.0  # seconds, Prefect's start-up included: "about a minute"
TYPO_HOST = "archives.example.invalid"


def refused_url() -> tuple[str, str]:
    host = f"127.0.0.1:{refused_port()}"
    return f"http://{host}/a.tar.gz", host


def test_a_refused_connection_is_permanent_and_not_tried_again(tmp_path):
    url, host = refused_url()
    t0 = time.monotonic()
    with pytest.raises(PermanentError) as err:
        download(url, tmp_path, options=WgetOptions(tries=10))  # the default budget
    assert time.monotonic() - t0 < 2  # not tried again (wget waits 1 s before a second try)
    assert str(err.value) == (
        f"{url}: connection refused by {host}: is the URL's port right? (a retry helps only "
        "once a server listens there)"
    )


def test_a_host_name_that_does_not_resolve_is_permanent(tmp_path):
    url = f"http://{TYPO_HOST}/a.tar.gz"
    with pytest.raises(PermanentError) as err:
        download(url, tmp_path, options=WgetOptions(tries=10))
    assert str(err.value) == f"{url}: the host name {TYPO_HOST!r} does not resolve: is it right?"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Finished, str]]:
    """`imgbatch download` of a refused port (defaults, and --tries 1 --retries 0) and of an
    unresolvable host, run at once; per case (what the user saw, the expected message)."""
    tmp = tmp_path_factory.mktemp("hosts")
    refused, host = refused_url()
    typo = f"http://{TYPO_HOST}/a.tar.gz"
    cases = {
        "refused": (
            [refused],
            f"{refused}: connection refused by {host}: is the URL's port right?",
        ),
        "refused, no retries": (
            [refused, "--tries", "1", "--retries", "0"],
            f"{refused}: connection refused by {host}: is the URL's port right?",
        ),
        "unresolvable": ([typo], f"{typo}: the host name {TYPO_HOST!r} does not resolve"),
    }
    started = {
        name: start(["download", *args, "--dest", str(tmp / name.replace(" ", "_"))])
        for name, (args, _) in cases.items()
    }
    return {name: (run.wait(BOUND + 60), cases[name][1]) for name, run in started.items()}


@pytest.mark.parametrize(
    "case",
    ["refused", "refused, no retries", "unresolvable"],
)
def test_a_wrong_download_host_ends_the_command_within_a_minute_in_one_line(runs, case):
    got, expected = runs[case]
    assert got.returncode == 1, got.both
    assert got.seconds < BOUND, got.both
    assert "Retrying" not in got.both, got.both
    [line] = got.error_lines
    assert expected in line, line
    assert "Traceback" not in got.both, got.both
