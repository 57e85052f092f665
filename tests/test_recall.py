"""Recall@K names and printed cells: one source for the evaluation, the terminal and the card."""

from __future__ import annotations

import torch

from simpleclip.evaluate import format_recall_table, recall_from_ranks
from simpleclip.model_card import recall_table
from simpleclip.recall import KS, recall_cells, recall_key

METRICS = {
    "t2i": {"R@1": 0.25, "R@5": 0.6064, "R@10": 0.75, "median_rank": 4.0},
    "i2t": {"R@1": 0.3125, "R@5": 0.625, "R@10": 0.70399, "median_rank": 3.0},
    "n_images": 16,
    "n_captions": 80,
}


def test_recall_from_ranks_reports_every_k_under_its_key() -> None:
    ranks = torch.tensor([1, 2, 6, 11])
    metrics = recall_from_ranks(ranks)
    assert [metrics[recall_key(k)] for k in KS] == [0.25, 0.5, 0.75]


def test_cells_are_percentages_with_one_decimal() -> None:
    assert recall_cells(METRICS["t2i"]) == ["25.0", "60.6", "75.0"]
    assert recall_cells(METRICS["i2t"], ks=(10,)) == ["70.4"]


def test_terminal_and_markdown_tables_print_the_same_cells() -> None:
    terminal = format_recall_table(METRICS).splitlines()
    markdown = [line for line in recall_table({"test": METRICS}) if line.startswith("| test")]
    for direction, terminal_row, markdown_row in zip(
        ("t2i", "i2t"), terminal[1:3], markdown, strict=True
    ):
        cells = recall_cells(METRICS[direction])
        assert terminal_row.split()[-len(KS) - 1 : -1] == cells  # before the median rank
        assert markdown_row.rstrip(" |").split(" | ")[-len(KS) :] == cells
    assert terminal[0].split()[1 : 1 + len(KS)] == [recall_key(k) for k in KS]
