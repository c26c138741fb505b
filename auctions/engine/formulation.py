"""The winner-determination model of one sub-market, as numpy arrays and scipy sparse matrices.

Columns: one binary `z[p]` per **placement** p (bid x model x start slot x cluster when colocated)
and one integer `x[k]` per **source** k = (placement, offer): GPUs drawn from an offer that has the
placement's model (and cluster, if colocated) and covers its whole interval (rule 3).

Rows (all `A v <= b`):
- one per XOR group (a bid without a group is a group of one): sum of its placements' z <= 1;
- two per placement: sum_k x[k] <= gpus z[p] and min_gpus z[p] <= sum_k x[k];
- capacity per offer per **checkpoint**: the slots where some placement drawing from the offer
  starts. Usage of an offer is a step function that only rises at such slots, so checking them is
  exactly checking every slot.

Pruned before building: placements whose covering offers cannot supply `min_gpus` even alone, and
placements whose best welfare in isolation is <= 0 (they can never improve an optimum).
Every array is built in the canonical order (offers and bids by id, models and clusters by name),
so the same sub-market always gives the same model, whatever the order of the input file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .rounds import Round

if TYPE_CHECKING:
    import scipy.sparse as sp  # loaded where the matrices are built: only the cvxpy paths need them

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Structural reasons a bid has no placement at all (set before pricing; see docs/engine.md).
REASON_NO_OFFER = "no_offer"
REASON_BELOW_RESERVE = "limit_below_reserve"


@dataclass(frozen=True)
class Market:
    """One sub-market's model. Money is in cents; `value` is a source's welfare per GPU."""

    rnd: Round
    models: tuple[str, ...]
    clusters: tuple[str, ...]
    # offers (index = position in rnd.offers)
    o_gpus: IntArray
    o_start: IntArray
    o_end: IntArray
    o_reserve: IntArray
    o_model: IntArray
    o_cluster: IntArray
    # bids
    b_gpus: IntArray
    b_min: IntArray
    b_dur: IntArray
    b_limit: IntArray
    b_group: IntArray  # index of its XOR group (own group if none)
    b_pstart: IntArray  # placements of bid b are b_pstart[b] : b_pstart[b + 1]
    b_reason: tuple[str | None, ...]  # structural loser reason when it has no placement
    n_groups: int
    # placements
    p_bid: IntArray
    p_model: IntArray
    p_cluster: IntArray  # -1 when not colocated
    p_start: IntArray
    p_end: IntArray
    p_kstart: IntArray  # sources of placement p are p_kstart[p] : p_kstart[p + 1]
    p_best: FloatArray  # best welfare in isolation, cents
    # sources (sorted by margin, best first, within each placement)
    k_place: IntArray
    k_offer: IntArray
    k_margin: IntArray  # limit - reserve, cents per GPU-hour
    k_ub: IntArray  # min(bid gpus, offer gpus)
    k_value: FloatArray  # welfare of one GPU for the placement's duration, cents
    # capacity rows
    r_offer: IntArray
    r_slot: IntArray

    @property
    def n_places(self) -> int:
        return int(self.p_bid.size)

    @property
    def n_sources(self) -> int:
        return int(self.k_place.size)

    @property
    def n_cols(self) -> int:
        return self.n_places + self.n_sources

    def hours(self, slots: int) -> float:
        return slots * self.rnd.slot_minutes / 60.0


def _seg_cumsum_before(vals: IntArray, seg_start: IntArray, seg_id: IntArray) -> IntArray:
    """Exclusive cumulative sum of `vals` inside each segment (segments are contiguous)."""
    before = vals.cumsum() - vals  # np.cumsum's semantics without its Python wrapper (~1 us a call)
    out: IntArray = before - before[seg_start][seg_id]
    return out


def sorted_unique(keys: IntArray) -> IntArray:
    """`np.unique` of integers by sort and compare: the same array, without numpy 2's hash-based
    path (measured here: 1.9 s instead of 34 ms on 1.5M keys, 0.76 ms instead of 27 us on 3,000)."""
    a = keys.copy()
    a.sort()
    first = np.empty(a.size, dtype=bool)
    first[:1] = True
    np.not_equal(a[1:], a[:-1], out=first[1:])
    out: IntArray = a[first]
    return out


def fill(
    avail: IntArray,
    margin: IntArray,
    seg_start: IntArray,
    seg_id: IntArray,
    gpus: IntArray,
    min_gpus: IntArray,
) -> IntArray:
    """Greedy fill of each placement from its sources (already sorted best margin first).

    Positive-margin sources are used up to `gpus`; the others only as far as needed to reach
    `min_gpus`. `gpus` and `min_gpus` are per segment. Returns GPUs taken per source.
    """
    positive = margin > 0
    pos = np.where(positive, avail, 0)
    before = _seg_cumsum_before(pos, seg_start, seg_id)
    # np.minimum(np.maximum(..)) is np.clip without its Python wrapper (~4 us a call)
    take_pos: IntArray = np.minimum(np.maximum(gpus[seg_id] - before, 0), pos)
    if np.count_nonzero(positive) == positive.size:  # nothing left to reach min_gpus with
        return take_pos
    got = np.zeros(seg_start.size, dtype=np.int64)
    np.add.at(got, seg_id, take_pos)
    neg = np.where(positive, 0, avail)
    before_n = _seg_cumsum_before(neg, seg_start, seg_id)
    need = np.maximum(min_gpus - got, 0)
    take_neg = np.minimum(np.maximum(need[seg_id] - before_n, 0), neg)
    out: IntArray = take_pos + take_neg
    return out


def build_market(rnd: Round) -> Market:
    """Enumerate and prune placements and sources of a (sub-)round; build capacity checkpoints.

    All bids at once, with array operations (no Python loop of numpy calls per bid): every
    (bid, offer) pair that can serve the bid is expanded into one candidate source per start slot
    the offer covers; sorting the candidates by (bid, model and cluster key, start, offer by
    reserve then id) groups them into placements with their sources best margin first, the order
    the per-bid builder produced (`tests/engine/reference_build.py`, checked equal by
    `tests/engine/test_build.py`)."""
    offers, bids = rnd.offers, rnd.bids
    n_o, n_b = len(offers), len(bids)
    models = tuple(sorted({o.gpu_model for o in offers}))
    clusters = tuple(sorted({o.cluster for o in offers}))
    mi = {m: i for i, m in enumerate(models)}
    ci = {c: i for i, c in enumerate(clusters)}
    n_c = len(clusters)
    oa = np.array(
        [(o.gpus, o.start_slot, o.end_slot, o.reserve, mi[o.gpu_model], ci[o.cluster]) for o in offers],
        dtype=np.int64,
    ).reshape(n_o, 6)
    o_gpus, o_start, o_end, o_reserve, o_model, o_cluster = np.ascontiguousarray(oa.T)
    ba = np.array(
        [(b.gpus, b.min_gpus, b.duration, b.limit, b.earliest_start, b.latest_end, b.colocate) for b in bids],
        dtype=np.int64,
    ).reshape(n_b, 7)
    b_gpus, b_min, b_dur, b_limit, b_es, b_le, b_coloc = np.ascontiguousarray(ba.T)

    groups: dict[str, int] = {}
    b_group = np.array(
        [
            groups.setdefault(f"x:{b.xor_group}" if b.xor_group is not None else f"b:{b.id}", len(groups))
            for b in bids
        ],
        dtype=np.int64,
    ).reshape(n_b)
    common: dict[str, Any] = {
        "rnd": rnd,
        "models": models,
        "clusters": clusters,
        "o_gpus": o_gpus,
        "o_start": o_start,
        "o_end": o_end,
        "o_reserve": o_reserve,
        "o_model": o_model,
        "o_cluster": o_cluster,
        "b_gpus": b_gpus,
        "b_min": b_min,
        "b_dur": b_dur,
        "b_limit": b_limit,
        "b_group": b_group,
        "n_groups": len(groups),
    }

    mins = rnd.slot_minutes
    pb = po = None
    if n_o and n_b:
        # (bid, offer) pairs: the offer has one of the bid's models and covers `duration` slots of
        # its window; row-major, so sorted by bid then offer
        n_m1 = len(models) + 1
        wants = np.zeros(n_b * n_m1, dtype=bool)
        wants[[bi * n_m1 + mi[m] for bi, b in enumerate(bids) for m in b.gpu_models if m in mi]] = True
        lo_all = np.maximum.outer(b_es, o_start)
        hi_all = np.minimum.outer(b_le, o_end)
        hi_all -= b_dur[:, None]
        ok = hi_all >= lo_all
        ok &= wants.reshape(n_b, n_m1)[:, o_model]
        pb, po = ok.nonzero()
    if pb is None or po is None or not pb.size:
        # nothing can serve any bid (such as the part of offerless bids): no model
        e, ef = np.zeros(0, dtype=np.int64), np.zeros(0)
        return Market(
            **common,
            b_pstart=np.zeros(n_b + 1, dtype=np.int64),
            b_reason=(REASON_NO_OFFER,) * n_b,
            p_bid=e,
            p_model=e,
            p_cluster=e,
            p_start=e,
            p_end=e,
            p_kstart=np.zeros(1, dtype=np.int64),
            p_best=ef,
            k_place=e,
            k_offer=e,
            k_margin=e,
            k_ub=e,
            r_offer=e,
            r_slot=e,
            k_value=ef,
        )
    lo = lo_all[pb, po]
    # one candidate source per (pair, start slot): start = lo of its pair + its rank in the pair
    n_start = hi_all[pb, po] - lo + 1
    cum = np.add.accumulate(n_start)
    n_cand = int(cum[-1])
    pair = np.arange(pb.size, dtype=np.int64).repeat(n_start)
    c_start = np.arange(n_cand, dtype=np.int64) + (lo - cum + n_start).repeat(n_start)
    # placements are (bid, key, start), where the key is the model and, for a colocated bid, the
    # cluster
    n_key, stride = len(models) * (n_c + 1), rnd.slots + 1
    pair_key = (
        pb * n_key + o_model[po] * (n_c + 1) + np.where(b_coloc[pb] != 0, o_cluster[po], n_c)
    ) * stride
    place_key = pair_key[pair] + c_start
    rank = np.empty(n_o, dtype=np.int64)
    rank[o_reserve.argsort(kind="stable")] = np.arange(n_o)  # offers by (reserve, id)
    if n_b * n_key * stride * n_o < 2**62:
        order = (place_key * n_o + rank[po][pair]).argsort()
    else:  # pragma: no cover - a round far beyond the sample sizes
        order = np.lexsort((rank[po][pair], place_key))
    pair, c_start, place_key = pair[order], c_start[order], place_key[order]
    c_bid, c_offer = pb[pair], po[pair]
    new = np.empty(n_cand, dtype=bool)
    new[0] = True
    np.not_equal(place_key[1:], place_key[:-1], out=new[1:])
    seg_start = new.nonzero()[0]
    seg_id = np.add.accumulate(new, dtype=np.int64) - 1
    n_seg = int(seg_start.size)
    s_bid = c_bid[seg_start]
    s_min = b_min[s_bid]
    ub = np.minimum(o_gpus[c_offer], b_gpus[c_bid])
    margin = b_limit[c_bid] - o_reserve[c_offer]
    take = fill(ub, margin, seg_start, seg_id, b_gpus[s_bid], s_min)
    got = np.bincount(seg_id, weights=take, minlength=n_seg)
    val = np.bincount(seg_id, weights=take * margin, minlength=n_seg) * b_dur[s_bid] * mins / 60.0
    size_ok = got >= s_min
    keep = size_ok & (val > 0)
    has_size = np.zeros(n_b, dtype=bool)
    has_size[s_bid[size_ok]] = True
    has_keep = np.zeros(n_b, dtype=bool)
    has_keep[s_bid[keep]] = True
    reasons = [
        None if k else (REASON_BELOW_RESERVE if s else REASON_NO_OFFER)
        for k, s in zip(has_keep.tolist(), has_size.tolist(), strict=True)
    ]

    kept = keep.nonzero()[0]
    p_bid = s_bid[kept]
    p_first = seg_start[kept]
    p_offer = c_offer[p_first]  # every source of a placement has its model (and cluster)
    p_model = o_model[p_offer]
    p_cluster = np.where(b_coloc[p_bid] != 0, o_cluster[p_offer], -1)
    p_start = c_start[p_first]
    p_end = p_start + b_dur[p_bid]
    nsrc_all = np.bincount(seg_id, minlength=n_seg)[kept]
    b_pstart = np.zeros(n_b + 1, dtype=np.int64)
    np.add.accumulate(np.bincount(p_bid, minlength=n_b), out=b_pstart[1:])
    p_kstart = np.zeros(kept.size + 1, dtype=np.int64)
    np.add.accumulate(nsrc_all, out=p_kstart[1:])
    ksel = keep[seg_id]
    k_offer = c_offer[ksel]
    k_place = np.arange(p_bid.size, dtype=np.int64).repeat(nsrc_all)
    k_margin = margin[ksel]
    k_value: FloatArray = k_margin * b_dur[c_bid[ksel]] * (mins / 60.0)

    # capacity checkpoints: per offer, the distinct starts of placements drawing from it
    r_key = sorted_unique(k_offer * stride + c_start[ksel])
    r_offer = r_key // stride
    r_slot = r_key % stride

    return Market(
        **common,
        b_pstart=b_pstart,
        b_reason=tuple(reasons),
        p_bid=p_bid,
        p_model=p_model,
        p_cluster=p_cluster,
        p_start=p_start,
        p_end=p_end,
        p_kstart=p_kstart,
        p_best=val[kept],
        k_place=k_place,
        k_offer=k_offer,
        k_margin=k_margin,
        k_ub=ub[ksel],
        k_value=k_value,
        r_offer=r_offer,
        r_slot=r_slot,
    )


@dataclass(frozen=True)
class Matrices:
    """The model over v = [z (placements); x (sources); y (offer usage at checkpoints)].

    `a_link v <= b_link`: XOR groups and placement links. `a_flow v == 0`: y at a checkpoint is the
    previous checkpoint's usage plus the sources starting there minus the sources that ended since.
    `y <= cap` is the capacity constraint (kept as rows so that the LP gives its duals). Each source
    appears in two flow rows, not in every checkpoint it covers: 3-4x fewer non-zeros.
    """

    c: FloatArray  # objective (maximise), cents
    a_link: sp.csc_matrix
    b_link: FloatArray
    a_flow: sp.csc_matrix
    cap: FloatArray  # per y column
    lb: FloatArray
    ub: FloatArray
    n_z: int
    n_x: int

    @property
    def n_y(self) -> int:
        return int(self.cap.size)

    @property
    def nnz(self) -> int:
        return int(self.a_link.nnz + self.a_flow.nnz + self.cap.size)


_INT32_MAX = 2**31 - 1


def _index_dtype(*sizes: int) -> type[np.signedinteger[Any]]:
    """The index type scipy picks for these sizes (int32 when it fits), so that matrices made here
    are array for array what scipy's own COO conversion made."""
    return np.int32 if max(sizes, default=0) <= _INT32_MAX else np.int64


def column_starts(counts: IntArray, *sizes: int) -> IntArray:
    """CSC column starts for the given entries per column, in the index type scipy would pick."""
    indptr = np.zeros(counts.size + 1, dtype=_index_dtype(int(counts.size), *sizes))
    np.cumsum(counts, out=indptr[1:])
    return indptr


def csc_from_columns(data: FloatArray, indices: IntArray, counts: IntArray, n_rows: int) -> sp.csc_matrix:
    """A CSC matrix from entries already in canonical order (column by column, rows ascending, no
    duplicates) and the number of entries per column. Every matrix of the model has a fixed,
    small pattern per column, so it is written straight in this form: no COO round trip (~140 us
    of scipy overhead per matrix on tiny rounds, and a sort on large ones)."""
    import scipy.sparse as sp

    indptr = column_starts(counts, n_rows, int(indices.size))
    m = sp.csc_matrix(
        (data, indices.astype(indptr.dtype), indptr), shape=(n_rows, int(counts.size)), copy=False
    )
    m.has_sorted_indices = True
    return m


def link_columns(
    mk: Market, extra: IntArray | None = None
) -> tuple[FloatArray, IntArray, IntArray, IntArray]:
    """The XOR-group and placement-link rows, column by column over z then x: z[p] is in its
    group's row (1), its upper link row (-gpus) and its lower link row (min_gpus); x[k] in its
    placement's upper (1) and lower (-1) link rows (rows: groups, upper links, lower links).
    `extra[k]` more entries are left unfilled after x[k]'s two (rows below the link rows, such as
    `natural_model`'s capacity rows). Returns (data, row indices, entries per column, position of
    each x column's first extra entry)."""
    np_, nk, ng = mk.n_places, mk.n_sources, mk.n_groups
    pidx = np.arange(np_, dtype=np.int64)
    x_counts = 2 + (np.zeros(nk, dtype=np.int64) if extra is None else extra)
    counts = np.concatenate([np.full(np_, 3, dtype=np.int64), x_counts])
    x_at = 3 * np_ + np.cumsum(x_counts) - x_counts
    ind = np.empty(3 * np_ + int(x_counts.sum()), dtype=np.int64)
    dat = np.empty(ind.size)
    ind[0 : 3 * np_ : 3] = mk.b_group[mk.p_bid]
    ind[1 : 3 * np_ : 3] = ng + pidx
    ind[2 : 3 * np_ : 3] = ng + np_ + pidx
    dat[0 : 3 * np_ : 3] = 1.0
    dat[1 : 3 * np_ : 3] = -mk.b_gpus[mk.p_bid]
    dat[2 : 3 * np_ : 3] = mk.b_min[mk.p_bid]
    ind[x_at] = ng + mk.k_place
    dat[x_at] = 1.0
    ind[x_at + 1] = ng + np_ + mk.k_place
    dat[x_at + 1] = -1.0
    return dat, ind, counts, x_at + 2


def build_matrices(mk: Market) -> Matrices:
    """Assemble the sparse rows described in `Matrices`, written straight in CSC order (both
    consumers, cvxpy and HiGHS, take columns)."""
    np_, nk, nr = mk.n_places, mk.n_sources, int(mk.r_offer.size)
    n_link = mk.n_groups + 2 * np_
    dat, ind, counts, _ = link_columns(mk)
    a_link = csc_from_columns(dat, ind, np.concatenate([counts, np.zeros(nr, dtype=np.int64)]), n_link)
    b_link = np.concatenate([np.ones(mk.n_groups), np.zeros(2 * np_)])
    # flow rows: one per checkpoint (same index as its y column). x[k] is -1 in the row of its
    # start and +1 in the first checkpoint of its offer at or after its end (if there is one);
    # y[r] is +1 in row r and -1 in row r + 1 when that is the same offer's next checkpoint
    stride = mk.rnd.slots + 1
    r_key = mk.r_offer * stride + mk.r_slot  # sorted
    base = mk.k_offer * stride
    r_start = np.searchsorted(r_key, base + mk.p_start[mk.k_place])
    r_end = np.searchsorted(r_key, base + mk.p_end[mk.k_place])  # first checkpoint at/after the end
    ends = (r_end < nr) & (mk.r_offer[np.minimum(r_end, max(nr - 1, 0))] == mk.k_offer) if nr else r_end < 0
    ridx = np.arange(nr, dtype=np.int64)
    nxt = np.zeros(nr, dtype=bool)
    nxt[:-1] = mk.r_offer[1:] == mk.r_offer[:-1]
    x_counts = 1 + ends.astype(np.int64)
    y_counts = 1 + nxt.astype(np.int64)
    x_at = np.cumsum(x_counts) - x_counts
    y_at = int(x_counts.sum()) + np.cumsum(y_counts) - y_counts
    f_ind = np.empty(int(x_counts.sum() + y_counts.sum()), dtype=np.int64)
    f_dat = np.empty(f_ind.size)
    f_ind[x_at] = r_start
    f_dat[x_at] = -1.0
    f_ind[x_at[ends] + 1] = r_end[ends]
    f_dat[x_at[ends] + 1] = 1.0
    f_ind[y_at] = ridx
    f_dat[y_at] = 1.0
    f_ind[y_at[nxt] + 1] = ridx[nxt] + 1
    f_dat[y_at[nxt] + 1] = -1.0
    a_flow = csc_from_columns(
        f_dat, f_ind, np.concatenate([np.zeros(np_, dtype=np.int64), x_counts, y_counts]), nr
    )
    c = np.concatenate([np.zeros(np_), mk.k_value, np.zeros(nr)])
    lb = np.concatenate([np.zeros(np_ + nk), np.full(nr, -np.inf)])
    ub = np.concatenate([np.ones(np_), mk.k_ub.astype(float), np.full(nr, np.inf)])
    return Matrices(
        c=c,
        a_link=a_link,
        b_link=b_link,
        a_flow=a_flow,
        cap=mk.o_gpus[mk.r_offer].astype(float),
        lb=lb,
        ub=ub,
        n_z=np_,
        n_x=nk,
    )


def link_entries(mk: Market, ind: npt.NDArray[Any], dat: FloatArray, x_at: Any, row0: int) -> None:
    """Write the XOR-group and link rows (from row `row0`) into CSC arrays whose z columns come
    first, 3 entries each, and whose x[k] has its two link entries at `x_at[k]`, `x_at[k] + 1`:
    z[p] is in its group's row (1), its upper link row (-gpus) and its lower link row (min_gpus);
    x[k] in its placement's upper (1) and lower (-1) link rows. `dat` must hold 1.0 where nothing
    else is written. Shared by `flow_lp` and `solve.natural_model` (one pass per form, no
    intermediate arrays)."""
    np_, ng = mk.n_places, mk.n_groups
    z3, up, low = 3 * np_, row0 + ng, row0 + ng + np_
    pb = mk.p_bid
    ind[0:z3:3] = mk.b_group[pb] + row0
    ind[1:z3:3] = np.arange(up, up + np_)
    ind[2:z3:3] = np.arange(low, low + np_)
    dat[1:z3:3] = -mk.b_gpus[pb]
    dat[2:z3:3] = mk.b_min[pb]
    ind[x_at] = mk.k_place + up
    ind[x_at + 1] = mk.k_place + low
    dat[x_at + 1] = -1.0


@dataclass(frozen=True)
class FlowLP:
    """The flow form as the arrays HiGHS takes, rows and columns in the order of the LP that
    cvxpy's HiGHS interface loads from `Matrices` (`A = [a_flow; a_link]`, columns z, x, y):
    minimise `-c v` subject to `row_lower <= A v <= row_upper` (flow rows `== 0`, link rows
    `<= b_link`), `col_lower <= v <= col_upper` (`y <= cap` as a column bound). A in CSC
    (`a_start`, `a_index`, `a_value`). Built straight from the Market (`flow_lp`), without scipy;
    `matrices()` gives the `Matrices` of the same model for the cvxpy paths."""

    mk: Market | None  # None when made from `Matrices` (`solve.lp_of_matrices`)
    c: FloatArray  # objective (maximise), cents
    col_lower: FloatArray
    col_upper: FloatArray
    row_lower: FloatArray
    row_upper: FloatArray
    a_start: npt.NDArray[np.int32]
    a_index: npt.NDArray[np.int32]
    a_value: FloatArray
    n_z: int
    n_x: int
    n_y: int

    @property
    def num_col(self) -> int:
        return int(self.c.size)

    @property
    def num_row(self) -> int:
        return int(self.row_lower.size)

    @property
    def nnz(self) -> int:
        """Non-zeros of the flow form as `Matrices.nnz` counts them (the y bounds as entries)."""
        return int(self.a_index.size) + self.n_y

    def matrices(self) -> Matrices:
        """The same model as `Matrices` (scipy), for the cvxpy paths (MIP on the flow form, other
        solvers)."""
        if self.mk is None:  # pragma: no cover - made from Matrices, which the caller has
            raise ValueError("no Market to build the matrices from")
        return build_matrices(self.mk)

    def pass_to(self, h: Any) -> None:
        """Load the LP into `h` (a `highspy.Highs`) through highspy's array `passModel`."""
        pass_csc(
            h,
            cost=-self.c,
            col_lower=self.col_lower,
            col_upper=self.col_upper,
            row_lower=self.row_lower,
            row_upper=self.row_upper,
            a_start=self.a_start,
            a_index=self.a_index,
            a_value=self.a_value,
            integer=False,
        )


def pass_csc(
    h: Any,
    *,
    cost: FloatArray,
    col_lower: FloatArray,
    col_upper: FloatArray,
    row_lower: FloatArray,
    row_upper: FloatArray,
    a_start: npt.NDArray[np.int32],
    a_index: npt.NDArray[np.int32],
    a_value: FloatArray,
    integer: bool,
) -> None:
    """Load `min cost·v, row_lower <= A v <= row_upper, col_lower <= v <= col_upper` (A in CSC;
    every column integer, or every one continuous) into `h` (a `highspy.Highs`) through highspy's
    array overload of `passModel`: numpy buffers are copied as they are, where setting the fields
    of a `HighsLp` converts element by element (~40 ns each: 4.4 ms of medium-21's 6 ms natural
    model). HiGHS receives the same model either way (`tests/engine/test_build.py`)."""
    import highspy

    kind = int(highspy.HighsVarType.kInteger) if integer else int(highspy.HighsVarType.kContinuous)
    h.passModel(
        int(cost.size),
        int(row_lower.size),
        int(a_index.size),
        int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        cost,
        col_lower,
        col_upper,
        row_lower,
        row_upper,
        a_start,
        a_index,
        a_value,
        np.full(cost.size, kind, dtype=np.int32),
    )


def flow_lp(mk: Market) -> FlowLP:
    """The LP relaxation of the flow form in HiGHS's arrays, column by column with rows ascending:
    z[p]: its group row, upper and lower link rows (after the flow rows); x[k]: the flow row of its
    start (-1), the first checkpoint of its offer at or after its end (+1, if any), its upper (1) and
    lower (-1) link rows; y[r]: its flow row (1) and the next one when it is the same offer's (-1).
    The same arrays as `[a_flow; a_link]` from `build_matrices` (`tests/engine/test_lp.py`)."""
    np_, nk, nr, ng = mk.n_places, mk.n_sources, int(mk.r_offer.size), mk.n_groups
    n_link = ng + 2 * np_
    n = np_ + nk + nr
    kp = mk.k_place
    stride = mk.rnd.slots + 1
    r_key = mk.r_offer * stride + mk.r_slot  # sorted
    base = mk.k_offer * stride
    r_start = np.searchsorted(r_key, base + mk.p_start[kp])
    r_end = np.searchsorted(r_key, base + mk.p_end[kp])  # first checkpoint at/after the end
    ends = (r_end < nr) & (mk.r_offer[np.minimum(r_end, max(nr - 1, 0))] == mk.k_offer) if nr else r_end < 0
    nxt = np.zeros(nr, dtype=bool)
    np.equal(mk.r_offer[1:], mk.r_offer[:-1], out=nxt[:-1])
    counts = np.empty(n, dtype=np.int32)
    counts[:np_] = 3
    np.add(ends, 3, out=counts[np_ : np_ + nk])
    np.add(nxt, 1, out=counts[np_ + nk :])
    start = np.zeros(n + 1, dtype=np.int32)
    np.add.accumulate(counts, out=start[1:])
    ind = np.empty(int(start[-1]), dtype=np.int32)
    dat = np.ones(ind.size)
    x_at = start[np_ : np_ + nk]
    ind[x_at] = r_start
    dat[x_at] = -1.0
    ind[x_at[ends] + 1] = r_end[ends]
    link_entries(mk, ind, dat, x_at + 1 + ends, nr)
    y_at = start[np_ + nk : n]
    ind[y_at] = np.arange(nr)
    n_at = y_at[nxt] + 1
    ind[n_at] = ind[n_at - 1] + 1
    dat[n_at] = -1.0
    c = np.zeros(n)
    c[np_ : np_ + nk] = mk.k_value
    col_lower = np.zeros(n)
    col_lower[np_ + nk :] = -np.inf
    col_upper = np.ones(n)
    col_upper[np_ : np_ + nk] = mk.k_ub
    col_upper[np_ + nk :] = mk.o_gpus[mk.r_offer]
    row_lower = np.zeros(nr + n_link)
    row_lower[nr:] = -np.inf
    row_upper = np.zeros(nr + n_link)
    row_upper[nr : nr + ng] = 1.0
    return FlowLP(
        mk=mk,
        c=c,
        col_lower=col_lower,
        col_upper=col_upper,
        row_lower=row_lower,
        row_upper=row_upper,
        a_start=start,
        a_index=ind,
        a_value=dat,
        n_z=np_,
        n_x=nk,
        n_y=nr,
    )
