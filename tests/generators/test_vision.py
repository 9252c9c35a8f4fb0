"""The vision model's JSON answer, checked: what is kept and what is dropped."""

from __future__ import annotations

import json

import pytest

from promptpix.generators.vision import parse_analysis


def test_a_full_answer_is_kept() -> None:
    text = (
        '```json\n{"focal_point": {"x": 0.25, "y": 1}, "alt_text": " A fox. ", "tags": ["Fox"]}```'
    )
    found = parse_analysis(text, "gemini:m")
    assert found is not None
    assert found.focal == (0.25, 1.0) and found.alt_text == "A fox." and found.tags == ["fox"]
    assert found.source == "gemini:m"


@pytest.mark.parametrize(
    "point",
    [{"x": 1.5, "y": 0.5}, {"x": -0.1, "y": 0.5}, {"x": "0.5", "y": 0.5}, {"x": 0.5}, None],
)
def test_a_focal_point_outside_the_image_is_dropped(point: object) -> None:
    found = parse_analysis(f'{{"focal_point": {json.dumps(point)}, "alt_text": "a fox"}}', "s")
    assert found is not None and found.focal is None and found.alt_text == "a fox"


def test_an_answer_with_nothing_usable_is_none() -> None:
    assert parse_analysis("not json", "s") is None
    assert parse_analysis("[1, 2]", "s") is None
    assert parse_analysis('{"focal_point": {"x": 2, "y": 2}, "tags": []}', "s") is None
