import numpy as np
import pandas as pd
import pytest

from coreset_core import runs
from coreset_core.selection import scores_from_similarity, select, subset_size

# Toy scores with a known answer: examples 3 and 0 are the hardest.
SCORES = np.array([0.2, 0.9, 0.5, 0.1, 0.7, 0.6])


def test_coreset_keeps_the_lowest_scores():
    assert select(SCORES, 2, "lowest").tolist() == [0, 3]


def test_highest_keeps_the_easiest():
    assert select(SCORES, 2, "highest").tolist() == [1, 4]


def test_lowest_and_highest_split_the_pool():
    low = select(SCORES, 4, "lowest")
    high = select(SCORES, 2, "highest")
    assert set(low).isdisjoint(high) and set(low) | set(high) == set(range(6))


def test_offset_skips_the_hardest():
    assert select(SCORES, 2, "offset", offset=1).tolist() == [0, 2]
    with pytest.raises(ValueError, match="offset"):
        select(SCORES, 2, "offset", offset=5)


def test_random_is_seeded_and_exact():
    a = select(SCORES, 3, "random", seed=4)
    assert (
        len(set(a)) == 3 and a.tolist() == select(SCORES, 3, "random", seed=4).tolist()
    )


def test_balanced_takes_the_lowest_of_each_class_in_proportion():
    labels = np.array([0, 0, 0, 1, 1, 1])
    # Class 0 holds scores .2 .9 .5, class 1 holds .1 .7 .6.
    assert select(SCORES, 4, "balanced", labels=labels).tolist() == [0, 2, 3, 5]
    with pytest.raises(ValueError, match="needs labels"):
        select(SCORES, 2, "balanced")


def test_ties_are_broken_by_index():
    assert select(np.zeros(5), 2).tolist() == [0, 1]


def test_scores_sum_over_epochs_or_a_window():
    similarity = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float16)
    assert scores_from_similarity(similarity).tolist() == [9, 12]
    assert scores_from_similarity(similarity, (1, 3)).tolist() == [8, 10]
    with pytest.raises(ValueError, match="window"):
        scores_from_similarity(similarity, (2, 5))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01, float("nan")])
def test_fraction_outside_the_unit_interval_is_refused(fraction):
    with pytest.raises(ValueError, match="fraction"):
        subset_size(100, fraction=fraction)


def test_subset_size_from_fraction_or_count():
    assert subset_size(5000, fraction=0.3) == 1500
    assert subset_size(10, count=4) == 4
    assert subset_size(3, fraction=1.0) == 3
    with pytest.raises(ValueError, match="count"):
        subset_size(10, count=11)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.17])
def test_exported_csv_keeps_exactly_the_lowest(finished_run, fraction):
    path = runs.export_selection(finished_run, fraction=fraction)
    table = pd.read_csv(path)
    kept = table[table["decision"] == "keep"]
    dropped = table[table["decision"] == "drop"]
    assert len(kept) == round(fraction * len(table))
    assert kept["score"].max() <= dropped["score"].min()
    assert set(table.columns) >= {"index", "id", "score", "rank", "decision"}


def test_export_refuses_an_unfinished_run(finished_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    runs.write_status(copy, "cancelled", 1, 2)
    with pytest.raises(ValueError, match="not finished"):
        runs.export_selection(copy, fraction=0.3)


def test_exports_with_different_options_do_not_overwrite(finished_run):
    plain = runs.export_selection(finished_run, fraction=0.3)
    window = runs.export_selection(finished_run, fraction=0.3, window=(1, 2))
    seeded = runs.export_selection(
        finished_run, fraction=0.3, strategy="random", seed=4
    )
    assert len({plain.name, window.name, seeded.name}) == 3
    assert window.name == "selection_lowest_0.30_epochs2-2.csv"
