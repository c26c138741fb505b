"""The model builders the engine used before they were vectorised (the per-bid `build_market`, the
COO-assembled `build_matrices` and `natural_model`), kept verbatim as a reference: `test_build.py`
checks that the engine's builders give exactly the same arrays, and `bench_build.py` times both in
the same process."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from auctions.engine.formulation import (
    REASON_BELOW_RESERVE,
    REASON_NO_OFFER,
    FloatArray,
    IntArray,
    Market,
    Matrices,
    fill,
)
from auctions.engine.rounds import Round


def build_market_per_bid(rnd: Round) -> Market:
    """Enumerate and prune placements and sources of a (sub-)round; build capacity checkpoints."""
    offers, bids = rnd.offers, rnd.bids
    models = tuple(sorted({o.gpu_model for o in offers}))
    clusters = tuple(sorted({o.cluster for o in offers}))
    mi = {m: i for i, m in enumerate(models)}
    ci = {c: i for i, c in enumerate(clusters)}
    o_gpus = np.array([o.gpus for o in offers], dtype=np.int64)
    o_start = np.array([o.start_slot for o in offers], dtype=np.int64)
    o_end = np.array([o.end_slot for o in offers], dtype=np.int64)
    o_reserve = np.array([o.reserve for o in offers], dtype=np.int64)
    o_model = np.array([mi[o.gpu_model] for o in offers], dtype=np.int64)
    o_cluster = np.array([ci[o.cluster] for o in offers], dtype=np.int64)
    # offers ordered by (reserve, id): a placement's sources come out best margin first
    cheap_order = np.lexsort((np.arange(len(offers)), o_reserve)) if offers else np.zeros(0, np.int64)

    groups: dict[str, int] = {}
    b_group = np.zeros(len(bids), dtype=np.int64)
    for i, b in enumerate(bids):
        key = f"x:{b.xor_group}" if b.xor_group is not None else f"b:{b.id}"
        b_group[i] = groups.setdefault(key, len(groups))

    mins = rnd.slot_minutes
    pl_bid: list[IntArray] = []
    pl_model: list[IntArray] = []
    pl_cluster: list[IntArray] = []
    pl_start: list[IntArray] = []
    pl_nsrc: list[IntArray] = []
    pl_best: list[FloatArray] = []
    src_offer: list[IntArray] = []
    b_pstart = np.zeros(len(bids) + 1, dtype=np.int64)
    reasons: list[str | None] = []
    n_places = 0
    for bi, b in enumerate(bids):
        reason: str | None = REASON_NO_OFFER
        d = b.duration
        starts = np.arange(b.earliest_start, b.latest_end - d + 1, dtype=np.int64)
        bm = [mi[m] for m in b.gpu_models if m in mi]
        if bm and starts.size:
            elig = cheap_order[np.isin(o_model[cheap_order], bm)]
            lo = np.maximum(o_start[elig], b.earliest_start)
            hi = np.minimum(o_end[elig], b.latest_end)
            elig = elig[hi - lo >= d]
        else:
            elig = np.zeros(0, dtype=np.int64)
        if elig.size:
            cover = (o_start[elig][None, :] <= starts[:, None]) & (
                starts[:, None] + d <= o_end[elig][None, :]
            )
            keys = o_model[elig] * (len(clusters) + 1) + (o_cluster[elig] if b.colocate else len(clusters))
            for key in np.unique(keys):
                cols = elig[keys == key]
                sub = cover[:, keys == key]
                rows = np.flatnonzero(sub.any(axis=1))
                if not rows.size:
                    continue
                r_idx, c_idx = np.nonzero(sub[rows])
                offs = cols[c_idx]
                nsrc = np.bincount(r_idx, minlength=rows.size).astype(np.int64)
                seg_start = np.concatenate(([0], np.cumsum(nsrc)[:-1])).astype(np.int64)
                ub = np.minimum(o_gpus[offs], b.gpus)
                margin = b.limit - o_reserve[offs]
                gp = np.full(rows.size, b.gpus, dtype=np.int64)
                mn = np.full(rows.size, b.min_gpus, dtype=np.int64)
                take = fill(ub, margin, seg_start, r_idx, gp, mn)
                got = np.bincount(r_idx, weights=take, minlength=rows.size)
                val = np.bincount(r_idx, weights=take * margin, minlength=rows.size) * d * mins / 60.0
                size_ok = got >= b.min_gpus
                if size_ok.any() and reason == REASON_NO_OFFER:
                    reason = REASON_BELOW_RESERVE
                keep = size_ok & (val > 0)
                if not keep.any():
                    continue
                reason = None
                ksel = keep[r_idx]
                pl_bid.append(np.full(int(keep.sum()), bi, dtype=np.int64))
                pl_model.append(np.full(int(keep.sum()), int(o_model[cols[0]]), dtype=np.int64))
                pl_cluster.append(
                    np.full(int(keep.sum()), int(o_cluster[cols[0]]) if b.colocate else -1, dtype=np.int64)
                )
                pl_start.append(starts[rows[keep]])
                pl_nsrc.append(nsrc[keep])
                pl_best.append(val[keep])
                src_offer.append(offs[ksel])
                n_places += int(keep.sum())
        reasons.append(reason)
        b_pstart[bi + 1] = n_places

    def cat(parts: list[IntArray]) -> IntArray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    p_bid = cat(pl_bid)
    p_model = cat(pl_model)
    p_cluster = cat(pl_cluster)
    p_start = cat(pl_start)
    b_gpus = np.array([b.gpus for b in bids], dtype=np.int64)
    b_min = np.array([b.min_gpus for b in bids], dtype=np.int64)
    b_dur = np.array([b.duration for b in bids], dtype=np.int64)
    b_limit = np.array([b.limit for b in bids], dtype=np.int64)
    p_end = p_start + b_dur[p_bid] if p_bid.size else np.zeros(0, dtype=np.int64)
    nsrc_all = cat(pl_nsrc)
    p_kstart = np.concatenate(([0], np.cumsum(nsrc_all))).astype(np.int64)
    k_offer = cat(src_offer)
    k_place = np.repeat(np.arange(p_bid.size, dtype=np.int64), nsrc_all)
    kb = p_bid[k_place]
    k_margin = b_limit[kb] - o_reserve[k_offer] if k_offer.size else np.zeros(0, dtype=np.int64)
    k_ub = np.minimum(b_gpus[kb], o_gpus[k_offer]) if k_offer.size else np.zeros(0, dtype=np.int64)
    k_value: FloatArray = (k_margin * b_dur[kb] * (mins / 60.0)).astype(np.float64)

    # capacity checkpoints: per offer, the distinct starts of placements drawing from it
    ks = p_start[k_place]
    pair = np.unique(k_offer * (rnd.slots + 1) + ks) if k_offer.size else np.zeros(0, dtype=np.int64)
    r_offer = pair // (rnd.slots + 1)
    r_slot = pair % (rnd.slots + 1)

    return Market(
        rnd=rnd,
        models=models,
        clusters=clusters,
        o_gpus=o_gpus,
        o_start=o_start,
        o_end=o_end,
        o_reserve=o_reserve,
        o_model=o_model,
        o_cluster=o_cluster,
        b_gpus=b_gpus,
        b_min=b_min,
        b_dur=b_dur,
        b_limit=b_limit,
        b_group=b_group,
        b_pstart=b_pstart,
        b_reason=tuple(reasons),
        n_groups=len(groups),
        p_bid=p_bid,
        p_model=p_model,
        p_cluster=p_cluster,
        p_start=p_start,
        p_end=p_end,
        p_kstart=p_kstart,
        p_best=np.concatenate(pl_best) if pl_best else np.zeros(0),
        k_place=k_place,
        k_offer=k_offer,
        k_margin=k_margin,
        k_ub=k_ub,
        k_value=k_value,
        r_offer=r_offer,
        r_slot=r_slot,
    )


def build_matrices_coo(mk: Market) -> Matrices:
    """Assemble the sparse rows described in `Matrices`."""
    np_, nk, nr = mk.n_places, mk.n_sources, int(mk.r_offer.size)
    n = np_ + nk + nr
    pidx = np.arange(np_, dtype=np.int64)
    kidx = np.arange(nk, dtype=np.int64)
    g = mk.b_group[mk.p_bid]
    # group rows, then "upper link" rows, then "lower link" rows
    rows = np.concatenate(
        [
            g,
            mk.n_groups + pidx,
            mk.n_groups + mk.k_place,
            mk.n_groups + np_ + pidx,
            mk.n_groups + np_ + mk.k_place,
        ]
    )
    cols = np.concatenate([pidx, pidx, np_ + kidx, pidx, np_ + kidx])
    vals = np.concatenate(
        [
            np.ones(np_),
            -mk.b_gpus[mk.p_bid].astype(float),
            np.ones(nk),
            mk.b_min[mk.p_bid].astype(float),
            -np.ones(nk),
        ]
    )
    a_link = sp.csr_matrix((vals, (rows, cols)), shape=(mk.n_groups + 2 * np_, n))
    b_link = np.concatenate([np.ones(mk.n_groups), np.zeros(2 * np_)])
    # flow rows: one per checkpoint (same index as its y column)
    stride = mk.rnd.slots + 1
    r_key = mk.r_offer * stride + mk.r_slot  # sorted
    base = mk.k_offer * stride
    r_start = np.searchsorted(r_key, base + mk.p_start[mk.k_place])
    r_end = np.searchsorted(r_key, base + mk.p_end[mk.k_place])  # first checkpoint at/after the end
    ends = (r_end < nr) & (mk.r_offer[np.minimum(r_end, max(nr - 1, 0))] == mk.k_offer) if nr else r_end < 0
    ridx = np.arange(nr, dtype=np.int64)
    first = np.ones(nr, dtype=bool)
    first[1:] = mk.r_offer[1:] != mk.r_offer[:-1]
    prev = ridx[~first]
    f_rows = np.concatenate([ridx, prev, r_start, r_end[ends]])
    f_cols = np.concatenate([np_ + nk + ridx, np_ + nk + prev - 1, np_ + kidx, np_ + kidx[ends]])
    f_vals = np.concatenate([np.ones(nr), -np.ones(prev.size), -np.ones(nk), np.ones(int(ends.sum()))])
    a_flow = sp.csr_matrix((f_vals, (f_rows, f_cols)), shape=(nr, n))
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


def natural_model_coo(mk: Market, cap: IntArray | None = None) -> tuple[Any, int]:
    """The natural formulation as a `highspy.HighsLp` (columns z then x, a capacity row per offer
    per slot, `cap[offer, slot]` GPUs when given, else the offer's); returns it and its number of
    non-zeros."""
    import highspy
    import scipy.sparse as sp

    np_, nk = mk.n_places, mk.n_sources
    n = np_ + nk
    pidx = np.arange(np_)
    kidx = np.arange(nk)
    g = mk.b_group[mk.p_bid]
    rows = [
        g,
        mk.n_groups + pidx,
        mk.n_groups + mk.k_place,
        mk.n_groups + np_ + pidx,
        mk.n_groups + np_ + mk.k_place,
    ]
    cols = [pidx, pidx, np_ + kidx, pidx, np_ + kidx]
    vals = [
        np.ones(np_),
        -mk.b_gpus[mk.p_bid].astype(float),
        np.ones(nk),
        mk.b_min[mk.p_bid].astype(float),
        -np.ones(nk),
    ]
    n_link = mk.n_groups + 2 * np_
    # capacity: one row per offer per slot, every slot a source covers
    dur = mk.p_end[mk.k_place] - mk.p_start[mk.k_place]
    kk = np.repeat(kidx, dur)
    off = np.arange(int(dur.sum())) - np.repeat(np.cumsum(dur) - dur, dur)
    slot = mk.p_start[mk.k_place][kk] + off
    crow = mk.k_offer[kk] * mk.rnd.slots + slot
    rows.append(n_link + crow)
    cols.append(np_ + kk)
    vals.append(np.ones(kk.size))
    n_rows = n_link + mk.o_gpus.size * mk.rnd.slots
    a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, n))
    caps = np.repeat(mk.o_gpus, mk.rnd.slots) if cap is None else np.asarray(cap).ravel()
    upper = np.concatenate([np.ones(mk.n_groups), np.zeros(2 * np_), caps])
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, n_rows
    lp.col_cost_ = -np.concatenate([np.zeros(np_), mk.k_value])
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.concatenate([np.ones(np_), mk.k_ub.astype(float)])
    lp.row_lower_ = np.full(n_rows, -inf)
    lp.row_upper_ = upper.astype(float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    return lp, int(a.nnz)
