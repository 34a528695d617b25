"""The plots panel draws only the figure whose tab is on screen (the browser test clicks a tab)."""

from __future__ import annotations

import plotly.graph_objects as go

from panels import plots


def _is_skip(value) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update" and len(value) == 1


def test_only_the_shown_figure_is_drawn():
    for shown in plots.FIGURES:
        out = plots.figures(None, shown)
        assert len(out) == len(plots.FIGURES)
        for name, value in zip(plots.FIGURES, out, strict=True):
            if name == shown:
                assert isinstance(value, go.Figure) and value.layout.title.text
            else:
                assert _is_skip(value), (shown, name, value)


def test_the_figures_are_the_ones_their_tabs_name():
    titles = {name: plots.figures(None, name)[i].layout.title.text for i, name in enumerate(plots.FIGURES)}
    assert titles["Timings"] == "Stage timings"
    assert "rounding" in titles["Grounding"] and "ction" in titles["Actions"]


def test_choosing_a_figure_tab_draws_it_and_the_tab_it_leaves_changes_nothing():
    import gradio as gr

    def select(label: str, selected: bool) -> gr.SelectData:
        return gr.SelectData(None, {"value": label, "index": 0, "selected": selected})

    class Tab:  # a loaded page's state, no steps yet
        records: list = []

    shown, *out = plots.chosen(Tab(), select("Timings", True))
    assert shown == "Timings" and isinstance(out[2], go.Figure) and _is_skip(out[0]) and _is_skip(out[1])
    assert all(_is_skip(v) for v in plots.chosen(Tab(), select("Actions", False)))  # Actions lost the page
    shown, *out = plots.chosen(None, select("Grounding", True))  # nothing loaded yet: nothing drawn
    assert shown == "Grounding" and all(_is_skip(v) for v in out)
