"""Multi-hop paths through the composition task's knowledge graph: counted, listed and sampled.

Every entity heads exactly ``d`` atomic facts, stored contiguously: row ``h * d + j`` is the
``j``-th fact of head ``h``, with tail ``tails[row]``. A path of ``m`` hops is ``m`` rows, each
hop starting where the previous one ended (``row[j+1] // d == tails[row[j]]``). Its *pattern*
says which hops are OOD (a tuple of ``m`` booleans); a path has a pattern when every hop's
``is_ood`` equals it. Paths are identified by the mixed-radix number
``id = row[0] * d**(m-1) + sum_j col[j] * d**(m-1-j)`` (``col[j] = row[j] - tails[row[j-1]] * d``
for ``j >= 1``), which for two hops is the composition generator's ``i * d + j``; ids ascend in
the order :func:`enumerate_paths` lists paths.

The number of paths of a pattern is exact and cheap (a product of adjacency-count matrices,
computed backwards as vectors): ``1ᵀ A_{o_1} A_{o_2} ... A_{o_m} 1`` where ``A_ID[u, v]`` and
``A_OOD[u, v]`` count the ID and OOD facts from ``u`` to ``v``. Listing every path is linear in
their number; above :data:`ENUMERATE_LIMIT` (e.g. four hops at paper scale: 2000 · 20⁴ = 320M
paths) :func:`draw_paths` samples instead, hop by hop, each edge weighted by the number of ways
to complete the path from it, which is uniform over the pattern's paths; distinct paths are kept
in the order first drawn, so a prefix of the result is a uniformly random subset.
"""

import numpy as np

#: Above this many paths of a pattern, :func:`draw_paths` samples rather than lists them.
ENUMERATE_LIMIT = 2_000_000

Pattern = tuple[bool, ...]


def _allowed(is_ood: np.ndarray, pattern: Pattern) -> list[np.ndarray]:
    return [is_ood == o for o in pattern]


def completions(tails: np.ndarray, is_ood: np.ndarray, d: int, pattern: Pattern) -> list:
    """``w[j][row]``: how many paths of ``pattern`` have ``row`` as their hop ``j`` and their
    earlier hops left free (so ``w[0].sum()`` counts the pattern's paths)."""
    n = len(tails) // d
    c = np.ones(n, dtype=np.int64)
    w: list = [None] * len(pattern)
    for j in reversed(range(len(pattern))):
        w[j] = np.where(is_ood == pattern[j], c[tails], 0)
        c = w[j].reshape(n, d).sum(1)
    return w


def count_paths(tails: np.ndarray, is_ood: np.ndarray, d: int, pattern: Pattern) -> int:
    """The number of paths of ``pattern`` (exact)."""
    return int(completions(tails, is_ood, d, pattern)[0].sum())


def enumerate_paths(tails: np.ndarray, is_ood: np.ndarray, d: int, pattern: Pattern) -> np.ndarray:
    """Every path of ``pattern`` as rows ``[n_paths, m]`` of atomic-fact indices, by ascending
    path id."""
    allowed = _allowed(is_ood, pattern)
    paths = np.flatnonzero(allowed[0])[:, None]
    for j in range(1, len(pattern)):
        cand = tails[paths[:, -1]][:, None] * d + np.arange(d)
        src, col = np.nonzero(allowed[j][cand])
        paths = np.concatenate([paths[src], cand[src, col][:, None]], axis=1)
    return paths


def path_ids(tails: np.ndarray, d: int, paths: np.ndarray) -> np.ndarray:
    """The mixed-radix id of each path (see the module docstring)."""
    ids = paths[:, 0].astype(np.int64)
    for j in range(1, paths.shape[1]):
        ids = ids * d + (paths[:, j] - tails[paths[:, j - 1]] * d)
    return ids


def _sample(w: list, tails: np.ndarray, d: int, size: int, rng) -> np.ndarray:
    """``size`` paths drawn independently and uniformly from the paths ``w`` counts."""
    rows = [rng.choice(len(w[0]), size=size, p=w[0] / w[0].sum())]
    for j in range(1, len(w)):
        base = tails[rows[-1]] * d
        cum = np.cumsum(w[j][base[:, None] + np.arange(d)], axis=1)
        u = rng.random(size) * cum[:, -1]
        rows.append(base + (cum <= u[:, None]).sum(1))
    return np.stack(rows, axis=1)


def draw_paths(
    tails: np.ndarray, is_ood: np.ndarray, d: int, pattern: Pattern, n: int, rng
) -> np.ndarray:
    """``min(n, total)`` distinct paths of ``pattern``, a uniformly random subset in uniformly
    random order (rows ``[k, m]``): listed and permuted up to :data:`ENUMERATE_LIMIT` paths,
    sampled above it."""
    w = completions(tails, is_ood, d, pattern)
    total = int(w[0].sum())
    if total <= ENUMERATE_LIMIT:
        paths = enumerate_paths(tails, is_ood, d, pattern)
        return paths[rng.permutation(total)[:n]]
    n = min(n, total)
    drawn = np.empty((0, len(pattern)), dtype=np.int64)
    while True:
        drawn = np.concatenate([drawn, _sample(w, tails, d, max(2 * (n - len(drawn)), 64), rng)])
        _, first = np.unique(path_ids(tails, d, drawn), return_index=True)
        drawn = drawn[np.sort(first)]  # distinct, in the order first drawn
        if len(drawn) >= n:
            return drawn[:n]


__all__ = [
    "ENUMERATE_LIMIT",
    "completions",
    "count_paths",
    "draw_paths",
    "enumerate_paths",
    "path_ids",
]
