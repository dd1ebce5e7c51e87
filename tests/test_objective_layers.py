"""Teacher → student layer mapping (Python round(): round half to even, as in the reference method)."""

from __future__ import annotations

import pytest

from geovr.objectives.layers import default_layers, map_teacher_layers


def test_vggt_layers_onto_28_layer_llm():
    assert map_teacher_layers([4, 11, 17, 23], 24, 28) == [6, 14, 21, 28]


def test_vggt_layers_onto_36_layer_llm():
    # (5/24)·36 = 7.5 → 8 (half to even), 18, 27, 36
    assert map_teacher_layers([4, 11, 17, 23], 24, 36) == [8, 18, 27, 36]


def test_rounding_is_half_to_even():
    # (1/4)·10 = 2.5 → 2 and (3/4)·10 = 7.5 → 8: Python's round(), not round-half-up (which gives 3 and 8)
    assert map_teacher_layers([0, 1, 2, 3], 4, 10) == [2, 5, 8, 10]
    assert map_teacher_layers([0], 4, 6) == [2]  # 1.5 → 2


def test_mapping_stays_within_decoder_layers():
    assert map_teacher_layers([0], 24, 2) == [1]  # 0.083 rounds to 0 (the embeddings): clamped to layer 1
    assert map_teacher_layers([23], 24, 2) == [2]


def test_mapping_rejects_bad_layers():
    with pytest.raises(ValueError, match="outside 0..23"):
        map_teacher_layers([24], 24, 28)
    with pytest.raises(ValueError, match="positive"):
        map_teacher_layers([0], 0, 28)


def test_default_layers():
    assert default_layers(4, 28) == [7, 14, 21, 28]
    assert default_layers(4, 2) == [1, 1, 2, 2]
