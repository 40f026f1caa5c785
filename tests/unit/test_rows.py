"""CSV rows and partitioning: bad input fails with a message that says what to fix."""

import pandas as pd
import pytest

from imgbatch.errors import UsageError
from imgbatch.params import parse_partition_ids
from imgbatch.plan.rows import check_csv, partitions, read_paths
from imgbatch.plan.run_plan import PartitionPlan, Plan


def test_read_paths_keeps_order_and_empty_cells(tmp_path):
    csv = tmp_path / "m.csv"
    pd.DataFrame({"id": [3, 1, 2], "img": ["b.jpg", "", "NA"]}).to_csv(csv, index=False)
    assert read_paths(str(csv), "img") == ["b.jpg", "", "NA"]


def test_read_paths_takes_a_bom_quoted_newlines_and_blank_lines(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_bytes(b'\xef\xbb\xbfid,image_path\r\n1,"odd\nname.jpg"\r\n\r\n2,null\r\n3,""\r\n')
    assert read_paths(str(csv), "image_path") == ["odd\nname.jpg", "null", ""]


@pytest.mark.parametrize(
    "content, column, message",
    [
        (None, "image_path", "does not exist"),
        ("a,b\n1,2\n", "image_path", "no column 'image_path' \\(columns: a, b\\)"),
        ("image_path\n", "image_path", "no rows"),
        ("", "image_path", "columns: none"),
        ("image_path\na.jpg\nb\x00.jpg\n", "image_path", "row 1 \\(line 3\\) has a NUL byte"),
        (b"id,image_path\n1,a.jpg\n2,\xff\xfe.jpg\n", "image_path", "line 3 is not UTF-8 text"),
        ("id,image_path\n1,a.jpg\n2\n", "image_path", "line 3 has 1 fields, the header 2"),
        ('id,image_path\n1,"a\nb.jpg"\n2,c,d\n', "image_path", "line 4 has 3 fields, the header 2"),
    ],
)
def test_bad_csv_is_a_usage_error(tmp_path, content, column, message):
    csv = tmp_path / "m.csv"
    if isinstance(content, bytes):
        csv.write_bytes(content)
    elif content is not None:
        csv.write_text(content)
    with pytest.raises(UsageError, match=message):
        read_paths(str(csv), column)


def test_check_csv_reads_only_the_header(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("image_path\n" + "x.jpg\n" * 5 + '"unterminated\n')
    check_csv(str(csv), "image_path")


def test_partitions_cover_every_row_once_with_a_ragged_tail():
    parts = partitions(2501, 1000)
    assert [(p.id, p.start, p.stop) for p in parts] == [
        (0, 0, 1000),
        (1, 1000, 2000),
        (2, 2000, 2501),
    ]
    assert sum(p.rows for p in parts) == 2501
    with pytest.raises(UsageError, match="positive"):
        partitions(10, 0)


def test_parse_partition_ids():
    assert parse_partition_ids("7,3, 3") == [3, 7]
    assert parse_partition_ids("0-2,9") == [0, 1, 2, 9]
    for bad in ("x", "1-a", ","):
        with pytest.raises(UsageError):
            parse_partition_ids(bad)


def test_plan_select_rejects_unknown_partitions():
    plan = Plan(
        25,
        "m.parquet",
        [PartitionPlan(i, i * 10, min(25, i * 10 + 10), "f") for i in range(3)],
        25,
        None,
    )
    assert [p.id for p in plan.select([2, 0])] == [0, 2]
    assert len(plan.select(None)) == 3
    with pytest.raises(UsageError, match=r"\[3\] out of range.*0-2"):
        plan.select([1, 3])
