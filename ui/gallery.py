"""Grids of images, as the Data and Explore pages show them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

# Small images (32x32) are enlarged by whole pixels, so they stay sharp.
DISPLAY_SIDE = 64


def to_display(images: np.ndarray) -> list[np.ndarray]:
    """(N, C, H, W) uint8 -> N images (H', W', C) or (H', W') for grey ones."""
    factor = max(1, DISPLAY_SIDE // images.shape[-1])
    pictures = images.repeat(factor, axis=2).repeat(factor, axis=3)
    if pictures.shape[1] == 1:
        return list(pictures[:, 0])
    return list(pictures.transpose(0, 2, 3, 1))


def image_grid(images: np.ndarray, captions: Sequence[str], columns: int = 8) -> None:
    """Show images (N, C, H, W) in rows of `columns`, a caption under each."""
    if len(images) == 0:
        st.caption("No images.")
        return
    pictures = to_display(images)
    for start in range(0, len(pictures), columns):
        cells = st.columns(columns)
        for cell, picture, caption in zip(
            cells, pictures[start : start + columns], captions[start : start + columns]
        ):
            cell.image(picture, caption=caption, width=DISPLAY_SIDE)
