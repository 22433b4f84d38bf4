"""The zoo's tables and figure: the adapters' geometry, the released architectures' cost, and the
zoo study's accuracy of each head on each VAE's latents against its cost.

Accuracies are video-level top-1 in percent (the registry heads: mean of clip softmax over a
video's clips, mean +- std over seeds; the linear probe: the centre clip). Rows of random-init
members are marked as plumbing checks in the table and drawn hollow in the figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lib.zoo.adapters import ADAPTERS
from lib.zoo.study import LINEAR_PROBE, RANDOM_INIT, ZooMember


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 1)


def zoo_records(members: Sequence[ZooMember], scores: Mapping[str, Mapping[str, Any]],
                costs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One JSON-ready record per member: cost figures and, per head, val and test accuracy (%)."""
    records = []
    for m in members:
        c = costs[m.name]
        rec: dict[str, Any] = {"vae": m.name, "kind": m.kind, "source": m.vae_source,
                               "latent": "x".join(str(v) for v in c["latent_shape"]),
                               "bytes_per_clip": c["bytes_per_clip"], "encode_gflops": c["encode_gflops"],
                               "encode_clips_per_s": c["encode_clips_per_s"], "encoder_params": c["params"]}
        for head, result in scores[m.name].items():
            if head == LINEAR_PROBE:
                rec[f"{head}.val"], rec[f"{head}.test"] = _pct(result["val"]), _pct(result["test"])
                continue
            for split in ("val", "test"):
                mean, std = result.accuracy(split)
                rec[f"{head}.{split}"], rec[f"{head}.{split}_std"] = _pct(mean), _pct(std)
        records.append(rec)
    return records


def zoo_frame(records: Sequence[Mapping[str, Any]], heads: Sequence[str]) -> Any:
    """The zoo table: one row per VAE, cost columns, then ``val / test`` per head (+- std over seeds)."""
    import pandas as pd

    rows = []
    for r in records:
        row = {"VAE": r["vae"] + (" *" if r["kind"] == RANDOM_INIT else ""), "latent": r["latent"],
               "KB/clip": round(r["bytes_per_clip"] / 1024, 1), "encode GFLOPs/clip": round(r["encode_gflops"], 2),
               "encode clips/s": None if r["encode_clips_per_s"] is None else round(r["encode_clips_per_s"], 1),
               "encoder params M": round(r["encoder_params"] / 1e6, 2)}
        for head in heads:
            val, test, std = r.get(f"{head}.val"), r.get(f"{head}.test"), r.get(f"{head}.test_std")
            cell = "-" if test is None else f"{val:.1f} / {test:.1f}" + (f" +- {std:.1f}" if std else "")
            row[f"{head} val / test %"] = cell
        rows.append(row)
    return pd.DataFrame(rows)


def zoo_figure(records: Sequence[Mapping[str, Any]], heads: Sequence[str]) -> Any:
    """Test accuracy of each head against bytes/clip, encode GFLOPs/clip and encode clips/s (log x)."""
    import matplotlib.pyplot as plt

    axes_of = (("bytes_per_clip", "stored bytes per clip (fp16)"), ("encode_gflops", "encode GFLOPs per clip"),
               ("encode_clips_per_s", "encode clips/s (this machine)"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    markers = dict(zip(heads, "osD^v<>"))
    colours = {r["vae"]: f"C{i}" for i, r in enumerate(records)}
    for ax, (key, label) in zip(axes, axes_of):
        for r in records:
            x = r.get(key)
            if not x:
                continue
            for head in heads:
                y = r.get(f"{head}.test")
                if y is None:
                    continue
                hollow = r["kind"] == RANDOM_INIT
                ax.scatter([x], [y], marker=markers[head], s=55, edgecolors=colours[r["vae"]],
                           facecolors="none" if hollow else colours[r["vae"]], linewidths=1.5)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test video top-1 %")
    for r in records:
        axes[0].scatter([], [], color=colours[r["vae"]], label=r["vae"] + (" (random init)" if r["kind"] == RANDOM_INIT
                                                                             else ""))
    for head in heads:
        axes[0].scatter([], [], marker=markers[head], color="grey", label=head)
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle("Heads on frozen latents against the cost of the latent (hollow: random-init plumbing checks)")
    fig.tight_layout()
    return fig


def geometry_rows(clip: tuple[int, int, int]) -> list[dict[str, object]]:
    """One row per adapter, from its tiny instance (the released structure at narrow widths)."""
    from lib.zoo.tiny import build_tiny_vae

    rows = []
    for name, adapter in ADAPTERS.items():
        g = adapter.geometry(build_tiny_vae(name))
        rule = {"causal": f"{g.temporal_factor}k+1 (first frame repeated)", "fixed": f"{g.temporal_factor}k",
                "per_frame": "any (per frame)"}[g.frame_rule]
        rows.append({"adapter": name, "class": adapter.class_name, "released": f"{adapter.repo}"
                     + (f" ({adapter.subfolder}/)" if adapter.subfolder else ""),
                     "frames": rule, "factors TxHxW": f"{g.temporal_factor}x{g.spatial_factor}x{g.spatial_factor}",
                     "channels": g.channels, "multiple": g.spatial_multiple, "range": "[-1, 1]",
                     "posterior": g.posterior, "normalisation": g.normalisation,
                     "latent": "x".join(str(v) for v in g.latent_shape(*clip))})
    return rows


def cost_rows(clip: tuple[int, int, int]) -> list[dict[str, object]]:
    from lib.zoo.cost import reducio_encode_cost, released_encode_cost

    costs = [reducio_encode_cost("reducio-ft4", (3, *clip))] + [released_encode_cost(n, (3, *clip)) for n in ADAPTERS]
    return [{"VAE": c["adapter"], "params M": f"{c['params'] / 1e6:.1f}",
             "encoder params M": f"{c['encoder_params'] / 1e6:.1f}",
             "encode GFLOPs/clip": f"{c['encode_flops'] / 1e9:.0f}",
             "latent": "x".join(str(v) for v in c["latent_shape"]),
             "values": c["latent_bytes"] // 2, "KB/clip (fp16)": f"{c['latent_bytes'] / 1024:.1f}"} for c in costs]


def geometry_frame(clip: tuple[int, int, int] = (16, 224, 288)) -> Any:
    """:func:`geometry_rows` as a table."""
    import pandas as pd

    return pd.DataFrame(geometry_rows(clip))


def released_cost_frame(clip: tuple[int, int, int] = (16, 224, 288)) -> Any:
    """:func:`cost_rows` as a table."""
    import pandas as pd

    return pd.DataFrame(cost_rows(clip))
