"""Byte sizes as people write them: decimal and binary units up to tera, Docker's bare letters, and a
clear refusal of anything else."""

from __future__ import annotations

import re

import pytest

from edgecrew.domain.sizes import find_size, human_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("900MiB", 900 * 2**20),
        ("1.5GB", 1_500_000_000),
        ("2 GiB", 2 * 2**30),
        ("3TiB", 3 * 2**40),
        ("1tb", 10**12),
        ("512m", 512 * 2**20),  # a bare letter is binary, as Docker and Kubernetes read it
        ("2g", 2 * 2**30),
        ("10 K", 10 * 1024),
        ("1t", 2**40),
    ],
)
def test_sizes_read_as_written(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "9x", "-1GB", "1.2.3MB", "GiB", "5 PiB", ""])
def test_other_text_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("write e.g. 900MiB, 1.5GB or 2g")):
        parse_size(text)


def test_sizes_in_a_sentence_and_back_to_text() -> None:
    assert find_size("does a 2 TB job fit?") == 2 * 10**12
    assert find_size("a 3 g job") is None  # in prose only a full unit counts
    assert (
        human_size(15032385536) == "14.0 GiB"
        and human_size(512) == "512 B"
        and human_size(9999 * 2**40) == "9999.0 TiB"
    )


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("a 1,5 GB job", 1_500_000_000),  # a decimal comma: it was read as 5 GB
        ("a .5 GB job", 500_000_000),  # it was read as 5 GB
        ("needs 12,25 GiB", int(12.25 * 2**30)),
        ("a 1,500 GB disk", 1_500 * 10**9),  # a thousands separator
        ("a 0.5 GB job", 500_000_000),
        ("a 4GB job", 4 * 10**9),
        ("(4 GB)", 4 * 10**9),
    ],
)
def test_a_size_in_prose_is_read_whole(text: str, size: int) -> None:
    assert find_size(text) == size
