"""2D-homogeneous edge functions of clip-space triangles (shared by the PyTorch rasterizer and its
antialiasing).

For a triangle with clip-space vertices ``V_i = (X_i, Y_i, W_i)`` (``z`` ignored), the edge opposite
vertex ``i`` runs from vertex ``NEXT[i]`` to ``AFTER_NEXT[i]`` and has the edge function
``E_i(x, y) = (V_j x V_k) . (x, y, 1)`` at NDC point ``(x, y)`` (Olano & Greer). ``E_i`` vanishes on
the projected edge's line and ``E_i(vertex i) = det / W_i`` where ``det = det[V_0; V_1; V_2]``, so
``sign(det) E_i >= 0`` for all ``i`` exactly on the triangle's (visible) interior.
"""

from __future__ import annotations

import torch

#: Vertex j and k of the edge opposite vertex i (cyclic order keeps the edge's direction).
NEXT = (1, 2, 0)
AFTER_NEXT = (2, 0, 1)


def edge_coefficients(verts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge functions of triangles ``verts [..., 3, 4]`` (clip space).

    Returns ``coeffs [..., 3, 3]`` -- for the edge opposite vertex ``i`` the ``(a, b, c)`` of
    ``E_i(x, y) = a x + b y + c`` -- and the determinant ``[...]`` of the ``(X, Y, W)`` matrix.
    Swapping an edge's two vertices negates its coefficients exactly (products commute exactly).
    """
    x, y, w = verts[..., 0], verts[..., 1], verts[..., 3]
    xj, yj, wj = x[..., NEXT], y[..., NEXT], w[..., NEXT]
    xk, yk, wk = x[..., AFTER_NEXT], y[..., AFTER_NEXT], w[..., AFTER_NEXT]
    coeffs = segment_coefficients(
        torch.stack([xj, yj, wj], dim=-1), torch.stack([xk, yk, wk], dim=-1)
    )
    a, b, c = coeffs.unbind(-1)
    det = x[..., 0] * a[..., 0] + y[..., 0] * b[..., 0] + w[..., 0] * c[..., 0]
    return coeffs, det


def segment_coefficients(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """``(a, b, c) [..., 3]`` of the edge function of the line through the projections of the
    homogeneous 2D points ``start, end [..., 3]`` (``(X, Y, W)``): their cross product."""
    xj, yj, wj = start.unbind(-1)
    xk, yk, wk = end.unbind(-1)
    a = yj * wk - wj * yk
    b = wj * xk - xj * wk
    c = xj * yk - yj * xk
    return torch.stack([a, b, c], dim=-1)


def evaluate_edges(coeffs: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``E [N, 3]`` for per-sample coefficients ``[N, 3, 3]`` at NDC points ``x, y [N]``.

    Always the same expression ``(a x + b y) + c``, so negated coefficients give negated values.
    """
    return coeffs[..., 0] * x[:, None] + coeffs[..., 1] * y[:, None] + coeffs[..., 2]


def pixel_centres_ndc(
    px: torch.Tensor, py: torch.Tensor, height: int, width: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """NDC ``x = 2 (j + 0.5) / W - 1`` and ``y = 2 (i + 0.5) / H - 1`` of columns/rows ``px, py``."""
    x = (2 * px + 1).to(dtype) / width - 1.0
    y = (2 * py + 1).to(dtype) / height - 1.0
    return x, y
