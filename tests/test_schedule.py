"""Longest-first priorities of training jobs (flows_tf.schedule)."""

import pytest

from flows_tf import schedule

GRID = [
    ("d", "maf", None),
    ("d", "iaf_student", "maf"),
    ("d", "nice", None),
    ("e", "glow", None),
]


def test_longer_jobs_come_first_and_a_teacher_carries_its_students_seconds():
    seconds = {("d", "maf"): 30.0, ("d", "iaf_student"): 500.0, ("d", "nice"): 20.4}
    seconds[("e", "glow")] = 200.0
    got = schedule.train_priorities(GRID, seconds)
    assert got == {
        ("d", "maf"): 530,
        ("d", "iaf_student"): 500,
        ("d", "nice"): 20,
        ("e", "glow"): 200,
    }


def test_the_first_table_that_knows_a_variant_wins_and_unknown_ones_get_the_longest():
    local = {("d", "nice"): 90.0}
    committed = {("d", "nice"): 20.0, ("d", "maf"): 30.0, ("d", "iaf_student"): 40.0}
    got = schedule.train_priorities(GRID, local, committed)
    assert got[("d", "nice")] == 90
    assert got[("e", "glow")] == 90  # in no table: the longest known
    assert got[("d", "maf")] == 70
    assert schedule.train_priorities(GRID) == {v[:2]: 2 if v[1] == "maf" else 1 for v in GRID}


def test_tables_are_read_from_the_committed_file_and_from_snakemake_benchmarks(tmp_path):
    table = tmp_path / "job_seconds.tsv"
    table.write_text("dataset\tflow\tseconds\nd\tmaf\t31.5\n")
    assert schedule.read_job_seconds(table) == {("d", "maf"): 31.5}
    assert schedule.read_job_seconds(tmp_path / "missing.tsv") == {}
    bench = tmp_path / "train" / "u1" / "planar_k32.tsv"
    bench.parent.mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\n"
    bench.write_text(header + "70.1\t0:01:10\t900\n54.2\t0:00:54\t880\n")  # the last run counts
    (tmp_path / "train" / "u1" / "iaf.tsv").write_text(header)  # no run recorded yet
    assert schedule.read_benchmarks(tmp_path / "train") == {("u1", "planar_k32"): 54.2}


@pytest.mark.parametrize("missing", ["seconds", "flow"])
def test_a_table_without_its_columns_names_the_column(tmp_path, missing):
    table = tmp_path / "job_seconds.tsv"
    columns = [c for c in ("dataset", "flow", "seconds") if c != missing]
    table.write_text("\t".join(columns) + "\n" + "\t".join("d" for _ in columns) + "\n")
    with pytest.raises(ValueError, match=f"job_seconds.tsv: no column \\['{missing}'\\]"):
        schedule.read_job_seconds(table)
