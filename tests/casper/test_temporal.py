"""Frame padding, window planning and multidiffusion ramps, against the values recorded from the reference."""
import pytest
import torch

from casper_core.temporal import (
    padded_length,
    plan_windows,
    symmetric_pad_indices,
    window_latent_frames,
    window_weights,
)


def test_symmetric_padding_repeats_edge_frames():
    assert symmetric_pad_indices(5, 21).tolist() == [0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0]
    assert symmetric_pad_indices(1, 5).tolist() == [0, 0, 0, 0, 0]
    assert symmetric_pad_indices(9, 9).tolist() == list(range(9))


def test_padded_length_is_the_smallest_4k_plus_1_with_odd_k():
    for frames in range(1, 240):
        for window in (1, 9, 17, 85):
            n = padded_length(frames, window)
            brute = next(m for m in range(1, 1000) if m >= max(frames, window) and m % 4 == 1 and (m // 4) % 2 == 1)
            assert n == brute, (frames, window)
    assert padded_length(197, 85) == 197 and padded_length(100, 85) == 101 and padded_length(1, 85) == 85


def test_window_latent_frames_drop_to_an_even_count():
    assert window_latent_frames(85) == 22
    assert window_latent_frames(17) == 4
    assert window_latent_frames(9) == 2
    with pytest.raises(ValueError, match="window_frames"):
        window_latent_frames(1)


def test_windows_of_the_release_default_on_197_frames():
    assert plan_windows(50, 22, 4) == [(0, 22), (18, 40), (36, 50)]
    assert plan_windows(22, 22, 4) == [(0, 22)]
    # an odd overlap would leave an odd last window (the reference crashes): it starts one latent earlier
    windows = plan_windows(12, 4, 1)
    assert all((end - begin) % 2 == 0 for begin, end in windows) and windows[-1][1] == 12


def _weights(total, window, overlap):
    windows = plan_windows(total, window, overlap)
    return [[round(w, 4) for w in window_weights(b, e, total, overlap).tolist()] for b, e in windows]


def test_ramp_weights_match_the_reference():
    third, two_thirds = round(1 / 3, 4), round(2 / 3, 4)
    w6 = _weights(14, 6, 4)  # windows [0,6) [2,8) [4,10) [6,12) [8,14)
    assert w6[0] == [1, 1, 0.8, 0.6, 0.4, 0.2]
    assert w6[1] == [0.2, 0.4, 0.8, 0.6, 0.4, 0.2]  # the falling ramp overwrites the rising one
    assert w6[-1] == [0.2, 0.4, 0.6, 0.8, 1, 1]
    w4 = _weights(8, 4, 2)
    assert w4[0] == [1, 1, two_thirds, third] and w4[1] == [third, two_thirds, two_thirds, third]
    assert w4[-1] == [third, two_thirds, 1, 1]
    w2 = _weights(4, 2, 1)
    assert w2 == [[1, 0.5], [0.5, 0.5], [0.5, 1]]
    assert window_weights(0, 22, 22, 4).tolist() == [1.0] * 22
    assert window_weights(0, 6, 6, 4).dtype == torch.float32
