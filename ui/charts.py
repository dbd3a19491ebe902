"""Plotly figures of a run: loss, similarity bands, trajectories, the UMAP map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

BAND = "rgba(31, 119, 180, {})"


def _frame(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(
        title=title, xaxis_title=x, yaxis_title=y, height=320, margin=dict(t=40, b=40)
    )
    return fig


def _epochs_axis(fig: go.Figure, epochs: int) -> go.Figure:
    # whole epochs only, about ten ticks at most
    fig.update_xaxes(tick0=1, dtick=max(1, epochs // 10))
    return fig


def loss_figure(metrics: pd.DataFrame) -> go.Figure:
    """The contrastive loss after each epoch."""
    fig = go.Figure(
        go.Scatter(x=metrics["epoch"], y=metrics["loss"], mode="lines+markers")
    )
    fig = _frame(fig, "Loss per epoch", "epoch", "loss")
    return _epochs_axis(fig, len(metrics))


def similarity_figure(metrics: pd.DataFrame) -> go.Figure:
    """The median similarity per epoch inside its q10-q90 and q25-q75 bands."""
    fig = go.Figure()
    epoch = metrics["epoch"]
    # each band: its upper edge, then the lower edge filled up to it
    for low, high, alpha in (("q10", "q90", 0.15), ("q25", "q75", 0.3)):
        fig.add_trace(
            go.Scatter(
                x=epoch,
                y=metrics[f"similarity_{high}"],
                mode="lines",
                line=dict(width=0),
                showlegend=False,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=epoch,
                y=metrics[f"similarity_{low}"],
                mode="lines",
                line=dict(width=0),
                fill="tonexty",
                fillcolor=BAND.format(alpha),
                name=f"{low}-{high}",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=epoch,
            y=metrics["similarity_q50"],
            mode="lines+markers",
            line=dict(color=BAND.format(1)),
            name="median",
        )
    )
    fig = _frame(fig, "Similarity per epoch", "epoch", "similarity")
    return _epochs_axis(fig, len(metrics))


def trajectories_figure(
    similarity: np.ndarray, indices: Sequence[int], names: Sequence[str]
) -> go.Figure:
    """Similarity (epochs, N) of a few examples over the epochs, with the median."""
    epochs = np.arange(1, len(similarity) + 1)
    values = similarity.astype(np.float32)
    fig = go.Figure(
        go.Scatter(
            x=epochs,
            y=np.median(values, axis=1),
            name="median of all",
            line=dict(color="grey", dash="dash"),
        )
    )
    for index, name in zip(indices, names):
        fig.add_trace(
            go.Scatter(x=epochs, y=values[:, index], mode="lines+markers", name=name)
        )
    fig = _frame(fig, "Similarity trajectories", "epoch", "similarity")
    return _epochs_axis(fig, len(similarity))


def map_figure(
    layout: np.ndarray,
    indices: np.ndarray,
    colour: pd.Series,
    hover: Sequence[str],
) -> go.Figure:
    """The UMAP layout (n, 2) of the plotted indices, one colour column per point.

    A numeric colour gets a colour scale, a categorical one a trace per value;
    every point carries its pool index as customdata, for selections.
    """
    fig = go.Figure()
    hover_text = np.asarray(hover)
    if pd.api.types.is_numeric_dtype(colour):
        fig.add_trace(
            go.Scattergl(
                x=layout[:, 0],
                y=layout[:, 1],
                mode="markers",
                customdata=indices,
                text=hover_text,
                hoverinfo="text",
                marker=dict(
                    size=5,
                    color=colour.to_numpy(),
                    colorscale="Viridis",
                    showscale=True,
                    colorbar=dict(title=colour.name),
                ),
            )
        )
    else:
        for value in sorted(colour.unique(), key=str):
            mask = (colour == value).to_numpy()
            fig.add_trace(
                go.Scattergl(
                    x=layout[mask, 0],
                    y=layout[mask, 1],
                    mode="markers",
                    customdata=indices[mask],
                    text=hover_text[mask],
                    hoverinfo="text",
                    name=str(value),
                    marker=dict(size=5),
                )
            )
    fig.update_layout(
        height=560,
        margin=dict(t=20, b=20),
        dragmode="lasso",
        xaxis=dict(visible=False),
        yaxis=dict(visible=False),
    )
    return fig


def accuracy_figure(summary: pd.DataFrame) -> go.Figure:
    """Test accuracy against the kept fraction per subset, mean ± std over seeds."""
    fig = go.Figure()
    for subset, rows in summary.groupby("subset", sort=False):
        fig.add_trace(
            go.Scatter(
                x=rows["fraction"],
                y=rows["accuracy_mean"],
                mode="lines+markers",
                error_y=dict(type="data", array=rows["accuracy_std"]),
                name=str(subset),
            )
        )
    fig = _frame(fig, "Accuracy against fraction", "fraction kept", "test accuracy")
    fig.update_xaxes(range=[0, 1.05], tickformat=".0%")
    fig.update_yaxes(tickformat=".0%")
    return fig
