"""Interactive views that read well wherever a notebook is opened.

A view (the 01 scrubber, the 07 test-video view) is an ipywidgets UI in a live JupyterLab and a
static picture everywhere else: an executed notebook opened without a kernel, an untrusted one
(JupyterLab renders only safe mimetypes there, and widgets are not safe), GitHub, nbconvert.
:class:`InteractiveView` displays as one output whose bundle holds both the widget view and a PNG
of the view's first state, so each reader picks what it can show and no reader sees two views.

Figures go into the view's ``Output`` widget by setting its ``outputs`` (:func:`show_figure`),
never through ``with output:`` capture: captured output makes a headless executor that mimics the
Output widget (nbclient: papermill, nbmake) send messages to the kernel while the cell runs, and
those messages can cost it the cell's reply (see :mod:`lib.notebook_runner`).
"""

from __future__ import annotations

import base64
import io
from typing import Any

DPI = 100  # JupyterLab shows a PNG at its pixel size: a 10-inch figure is 1000 px, its 8-pt text readable


def figure_png(fig: Any, *, dpi: int = DPI) -> bytes:
    """The PNG bytes of a matplotlib figure (tight bounding box), as the inline backend draws it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def png_output(png: bytes, *, text: str = "") -> dict[str, Any]:
    """A ``display_data`` output (nbformat) showing ``png``, with ``text`` as its plain-text form."""
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text or "<figure>"}}


def widgets_available() -> bool:
    """Whether this code runs in a Jupyter kernel with ipywidgets installed (a frontend may show widgets)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show_figure(output: Any, fig: Any, *, text: str = "") -> bytes:
    """Replace what the ``ipywidgets.Output`` ``output`` shows by ``fig`` (then closed); returns its PNG."""
    import matplotlib.pyplot as plt

    png = figure_png(fig)
    plt.close(fig)
    output.outputs = (png_output(png, text=text),)
    return png


class InteractiveView:
    """A widget displayed together with a static picture of its first state.

    ``widget`` is any ipywidgets widget; ``picture`` the PNG bytes shown by readers that cannot
    render widgets; ``text`` the plain-text form (e.g. what the picture shows).
    """

    def __init__(self, widget: Any, picture: bytes, text: str) -> None:
        self.widget = widget
        self.picture = picture
        self.text = text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_() or {})
        bundle["image/png"] = base64.b64encode(self.picture).decode("ascii")
        bundle["text/plain"] = self.text
        return bundle

    def __repr__(self) -> str:
        return self.text
