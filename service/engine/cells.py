"""Cells: categoricals declared as the operations on the edges of a DAG, and the structure
features a model learns from them (how many edges use each operation, which paths connect the
cell's inputs to its outputs and what they carry).

A NAS cell's one-hot edges say which operation sits where, but not what the cell computes: whether
the input still reaches the output, how many convolutions a signal passes through. Those are
functions of the whole cell that a model fitted on a few dozen results learns slowly from one-hot
columns, and cheaply from a handful of summaries (BANANAS' path encoding, aggregated).

A param opts in with ``"cell": {"name": "normal", "edge": [1, 2], "zero": "none"}``: it is the
edge from node 1 to node 2 of cell "normal", and its choice ``"none"`` means "no connection".
Nodes are numbered so that every edge goes from a lower to a higher number (a DAG by
construction); a cell's inputs are its nodes without an incoming edge, its outputs those without
an outgoing one. This module knows graphs and operation indices, not spaces: ``space`` parses
and checks the annotation, ``encoding`` turns configurations into the features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Bounds on what one annotation may cost: the features of a cell are a dynamic programme over its
# edges, O(edges x operations) per configuration, and path counts stay finite in float64.
MAX_CELLS = 16  # cells of one space
MAX_CELL_NODE = 63  # nodes are numbered 0..63
MAX_CELL_EDGES = 128  # edges of one cell (a complete DAG on 16 nodes has 120)
FEATURES_PER_OP = 3  # edge share, pure-path share, mean count on live paths (``CellGraph``)
CELL_FEATURES_VERSION = 1


@dataclass(frozen=True)
class CellEdge:
    """Where a categorical sits: the edge ``source -> target`` of cell ``cell``; ``zero`` is the
    choice meaning "no connection" (None: every choice connects)."""

    cell: str
    source: int
    target: int
    zero: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.cell, "edge": [self.source, self.target]}
        if self.zero is not None:
            out["zero"] = self.zero
        return out


class CellError(ValueError):
    """A bad annotation; ``field`` is relative to the param (``cell.edge``, say)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_cell_edge(raw: Any, max_name_length: int) -> CellEdge:
    """The API form ``{"name", "edge": [from, to], "zero"?}``; the zero's membership among the
    choices and the agreement between a cell's edges are checked by ``space``."""
    if not isinstance(raw, Mapping):
        raise CellError("cell", 'must be an object {"name", "edge": [from, to], "zero"?}')
    unknown = set(raw) - {"name", "edge", "zero"}
    if unknown:
        raise CellError(f"cell.{sorted(unknown)[0]}", "is not a field of a cell annotation")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CellError("cell.name", "must be a non-empty string")
    if len(name) > max_name_length:
        raise CellError("cell.name", f"at most {max_name_length} characters, got {len(name)}")
    edge = raw.get("edge")
    if not isinstance(edge, Sequence) or isinstance(edge, (str, bytes)) or len(edge) != 2:
        raise CellError("cell.edge", f"must be a list [from, to] of two node numbers, got {edge!r}")
    for i, node in enumerate(edge):
        if isinstance(node, bool) or not isinstance(node, int) or not 0 <= node <= MAX_CELL_NODE:
            raise CellError(f"cell.edge[{i}]", f"must be a node number in 0..{MAX_CELL_NODE}, "
                            f"got {node!r}")
    if not edge[0] < edge[1]:
        raise CellError("cell.edge", f"`from < to` must hold (nodes are numbered along the DAG), "
                        f"got from={edge[0]}, to={edge[1]}")
    zero = raw.get("zero")
    if zero is not None and not isinstance(zero, (str, bool, int, float)):
        raise CellError("cell.zero", f"must be one of the param's choices, got {zero!r}")
    return CellEdge(name, int(edge[0]), int(edge[1]), zero)


class CellGraph:
    """One cell's edges (in the space's order) and how its configurations become features.

    Per operation (``n_ops`` of them, the cell's shared choices), three columns, each in [0, 1]:
    the share of edges using it; the share of input -> output paths made of it alone; its mean
    count on the live paths (those through no zero and no inactive edge) over the longest path's
    length. Then one column: the share of paths that are live. ``FEATURES_PER_OP * n_ops + 1``.

    >>> nb201 = CellGraph([(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)], n_ops=2, zero=1)
    >>> nb201.n_paths, nb201.longest
    (4.0, 3)
    >>> nb201.features(np.array([[0, 1, 1, 0, 1, 0]])).round(2).tolist()  # only 1->2->3->4 lives
    [[0.5, 0.5, 0.25, 0.25, 1.0, 0.0, 0.25]]
    """

    def __init__(self, edges: Sequence[tuple[int, int]], n_ops: int, zero: int | None) -> None:
        self.edges = list(edges)
        self.n_ops = n_ops
        self.zero = zero
        self.width = FEATURES_PER_OP * n_ops + 1
        nodes = sorted({n for edge in self.edges for n in edge})
        self.index = {node: i for i, node in enumerate(nodes)}
        has_in = {t for _, t in self.edges}
        has_out = {s for s, _ in self.edges}
        self.sources = [self.index[n] for n in nodes if n not in has_in]
        self.sinks = [self.index[n] for n in nodes if n not in has_out]
        # Edges by source node: every edge into a node is done before any edge out of it.
        self.order = sorted(range(len(self.edges)), key=lambda e: self.edges[e])
        paths = np.zeros(len(nodes))
        paths[self.sources] = 1.0
        depth = np.zeros(len(nodes), dtype=int)
        for e in self.order:
            s, t = (self.index[n] for n in self.edges[e])
            paths[t] += paths[s]
            depth[t] = max(depth[t], depth[s] + 1)
        self.n_paths = float(paths[self.sinks].sum())
        self.longest = int(depth[self.sinks].max())

    def features(self, ops: np.ndarray) -> np.ndarray:
        """Rows of features for ``ops`` (configurations x edges): each edge's operation index,
        -1 where the edge is inactive (it connects nothing, like the zero)."""
        ops = np.asarray(ops, dtype=int)
        n, k = ops.shape[0], self.n_ops
        onehot = (ops[:, :, None] == np.arange(k)[None, None, :]).astype(np.float64)
        live_edge = ops >= 0
        if self.zero is not None:
            live_edge &= ops != self.zero
        n_nodes = len(self.index)
        pure = np.zeros((n, k, n_nodes))  # paths from an input made of one operation alone
        live = np.zeros((n, n_nodes))  # live paths from an input
        carried = np.zeros((n, k, n_nodes))  # summed count of each operation over those paths
        pure[:, :, self.sources] = 1.0
        live[:, self.sources] = 1.0
        for e in self.order:
            s, t = (self.index[node] for node in self.edges[e])
            pure[:, :, t] += pure[:, :, s] * onehot[:, e, :]
            on = live_edge[:, e].astype(np.float64)
            live[:, t] += live[:, s] * on
            reach = carried[:, :, s] + live[:, s, None] * onehot[:, e, :]
            carried[:, :, t] += reach * on[:, None]
        n_live = live[:, self.sinks].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_path = carried[:, :, self.sinks].sum(axis=2) / (n_live[:, None] * self.longest)
        per_path = np.where(n_live[:, None] > 0, per_path, 0.0)
        return np.concatenate([
            onehot.sum(axis=1) / len(self.edges),
            pure[:, :, self.sinks].sum(axis=2) / self.n_paths,
            np.clip(per_path, 0.0, 1.0),
            (n_live / self.n_paths)[:, None],
        ], axis=1)

