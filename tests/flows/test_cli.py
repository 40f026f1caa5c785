"""The `imgbatch preprocess` command: bad arguments fail first, in one line; results are clear."""

from __future__ import annotations

import os

import numpy as np
import pytest

import imgbatch.tasks.preprocess
from imgbatch.cli.main import main
from imgbatch.errors import PermanentError


def args_for(csv, root, out, *extra):
    return ["preprocess", "--csv", csv, "--images", root, "--out", str(out), *extra]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"csv": "nope.csv"}, "does not exist"),
        ({"extra": ["--column", "url"]}, "no column 'url'"),
        ({"root": "/nonexistent/images"}, "is not a folder"),
        ({"extra": ["--size", "0"]}, "--size: Input should be greater than 0"),
        ({"extra": ["--size", "100000"]}, "--size: Input should be less than or equal to 4096"),
        ({"extra": ["--size", "2048"]}, "GiB per partition"),
        ({"extra": ["--background", "255,0"]}, "three integers"),
        ({"extra": ["--partitions", "x"]}, "partitions must look like"),
        ({"extra": ["--partition-size", "0"]}, "--partition-size: Input should be greater than 0"),
        ({"extra": ["--workers", "0"]}, "--workers: Input should be greater than 0"),
        ({"extra": ["--resize-mode", "fill"]}, "invalid choice: 'fill'"),
    ],
)
def test_bad_arguments_fail_before_any_work_with_one_line(
    make_dataset, tmp_path, capsys, change, message
):
    csv, root, _ = make_dataset(3)
    out = tmp_path / "out"
    code = main(
        args_for(change.get("csv", csv), change.get("root", root), out, *change.get("extra", []))
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("imgbatch preprocess: error:")
    assert message in err
    assert not out.exists(), "nothing may be written before the arguments are checked"


@pytest.mark.usefixtures("prefect_server")
def test_preprocess_command_succeeds_and_reports_the_output(make_dataset, tmp_path, capsys):
    csv, root, _ = make_dataset(12, extra=["lost.jpg"])
    out = tmp_path / "out"
    code = main(
        args_for(
            csv,
            root,
            out,
            "--size",
            "32",
            "--partition-size",
            "5",
            "--resize-mode",
            "pad",
            "--background",
            "0,0,0",
        )
    )
    stdout = capsys.readouterr().out
    assert code == 0
    assert "images.npy (13, 32, 32, 3)" in stdout and "missing=1" in stdout
    images = np.load(out / "images.npy")
    assert images.shape == (13, 32, 32, 3) and not images[12].any()


@pytest.mark.usefixtures("prefect_server")
def test_failed_partition_gives_exit_1_and_one_line(make_dataset, tmp_path, capfd, monkeypatch):
    csv, root, _ = make_dataset(10)
    original = imgbatch.tasks.preprocess.run_partition

    def fail_second(part, *a, **kw):
        if part.id == 1:
            raise PermanentError("disk says no (injected)")
        return original(part, *a, **kw)

    monkeypatch.setattr(imgbatch.tasks.preprocess, "run_partition", fail_second)
    code = main(args_for(csv, root, tmp_path / "out", "--partition-size", "5"))
    captured = capfd.readouterr().err
    assert "disk says no (injected)" in captured and "Traceback" not in captured
    err = [line for line in captured.splitlines() if "imgbatch preprocess" in line]
    assert code == 1
    assert len(err) == 1 and "1 of 2 partitions failed" in err[0] and "partition 1" in err[0]


@pytest.mark.usefixtures("prefect_server")
def test_a_different_dataset_into_a_finished_output_needs_overwrite(make_dataset, tmp_path, capsys):
    csv, root, _ = make_dataset(6)
    out = tmp_path / "out"
    assert main(args_for(csv, root, out, "--partition-size", "3")) == 0
    before = (out / "images.npy").read_bytes()
    capsys.readouterr()
    assert main(args_for(csv, root, out, "--partition-size", "3", "--size", "32")) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("imgbatch")]
    assert len(err) == 1 and "--overwrite" in err[0], err
    assert (out / "images.npy").read_bytes() == before, "a refused run changes nothing"
    assert (
        main(args_for(csv, root, out, "--partition-size", "3", "--size", "32", "--overwrite")) == 0
    )
    assert np.load(out / "images.npy").shape == (6, 32, 32, 3)


# A command whose partition 2 meets a transient error on its first attempt.
DROP_ONCE = """
import sys
import imgbatch.tasks.preprocess
from imgbatch.cli.main import main
from imgbatch.errors import TransientError
original, calls = imgbatch.tasks.preprocess.run_partition, []
def drop_once(part, *a, **kw):
    calls.append(part.id)
    if part.id == 2 and calls.count(2) == 1:
        raise TransientError("connection reset (injected)")
    return original(part, *a, **kw)
imgbatch.tasks.preprocess.run_partition = drop_once
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.usefixtures("prefect_server")
def test_completed_partitions_are_counted_in_the_ui_not_listed_on_the_terminal(
    make_dataset, tmp_path
):
    import subprocess
    import sys

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import get_current_settings

    csv, root, _ = make_dataset(9)
    argv = args_for(csv, root, tmp_path / "out", "--partition-size", "3")
    env = {**os.environ, "PREFECT_API_URL": get_current_settings().api.url}
    proc = subprocess.run(
        [sys.executable, "-c", DROP_ONCE, *argv, "--retry-delay-seconds", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    terminal = proc.stderr.splitlines()
    partition_lines = [ln for ln in terminal if "Task run 'partition-" in ln]
    assert not [ln for ln in partition_lines if "Finished in state" in ln]
    assert any("Retry 1/3" in ln and "connection reset (injected)" in ln for ln in partition_lines)
    assert any("Task run 'plan-" in ln for ln in terminal)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort="START_TIME_DESC", limit=1)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
    in_ui = [log.message for log in logs]
    assert in_ui.count("Finished in state Completed()") == 2  # plan and assemble, no partition
    assert "partitions: 3 of 3 done (0 reused), 0 failed" in in_ui, in_ui
    assert any("Retry 1/3" in m and "connection reset (injected)" in m for m in in_ui), in_ui


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("imgbatch preprocess: error:"), err
    return err


def test_a_header_only_csv_and_a_bad_bucket_fail_before_prefect_starts(
    make_dataset, tmp_path, capsys
):
    csv, root, _ = make_dataset(2)
    header_only = tmp_path / "header.csv"
    header_only.write_text("id,image_path,label\n\n")
    assert main(args_for(str(header_only), root, tmp_path / "out")) == 2
    assert "has a header but no rows" in one_error_line(capsys)
    assert main(args_for(csv, "gs://Not_A_Bucket!/images", tmp_path / "out")) == 2
    assert "'Not_A_Bucket!' is not a valid bucket name" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_the_memory_limit_names_the_options_to_change(make_dataset, tmp_path, capsys):
    csv, root, _ = make_dataset(2)
    assert main(args_for(csv, root, tmp_path / "out", "--size", "2048")) == 2
    err = one_error_line(capsys)
    assert "--parameters" not in err and err.endswith("lower --size or --partition-size")


def test_version_prints_the_package_version_without_prefect():
    import subprocess
    import sys
    from importlib.metadata import version

    code = "import sys\nfrom imgbatch.cli.main import main\nmain(['--version'])\n"
    code += "print('prefect' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.splitlines() == [f"imgbatch {version('imgbatch')}", "False"], proc.stderr


@pytest.mark.usefixtures("prefect_server")
def test_absolute_paths_in_the_csv_are_said_to_be_refused(make_dataset, tmp_path, capsys):
    _, root, paths = make_dataset(3)
    csv = tmp_path / "absolute.csv"
    csv.write_text("image_path\n" + "".join(f"{root}/{p}\n" for p in paths))
    assert main(args_for(str(csv), root, tmp_path / "out")) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("imgbatch")]
    assert len(err) == 1 and "absolute paths are refused" in err[0], err
    assert "relative to the images root" in err[0]
