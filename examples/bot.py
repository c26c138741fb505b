"""An example Gridx bidding bot: buy a target amount of GPU-hours of one model under a budget.

Every round it
  1. reads its leases and logs what it won (new leases only), and stops once the target is met or
     the budget is spent;
  2. prices from the index: the last published mean for the model x `--factor`, capped at
     `--max-limit-cents` (or the cap itself while the index is empty);
  3. plans a book of bids for the GPU-hours still wanted, in chunks of `--gpus` x `--duration-hours`,
     at most `--max-bids` of them, that fits what is left of the budget (each bid's worst case is
     limit x GPUs x hours);
  4. reconciles that book with its open bids: identical ones stay, stale ones (other price or a
     window the market has moved past) are replaced atomically, extra ones are cancelled, missing
     ones are placed in one batch;
  5. sleeps until the round's cutoff has passed, then goes again.

    python examples/bot.py --base-url http://127.0.0.1:8000 --api-key gx_… \\
        --gpu-model H100-SXM-80GB --gpu-hours 64 --budget-cents 50000

It uses only gridx_client (no Django). Ctrl-C stops it; its open bids stay unless `--cancel-on-exit`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    from gridx_client import Bid, BidRequest, GridxClient, GridxError, Lease, Round
except ImportError:  # run from a checkout without installing: the package sits at the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gridx_client import Bid, BidRequest, GridxClient, GridxError, Lease, Round

log = logging.getLogger("gridx.bot")


@dataclass(frozen=True)
class Config:
    """What the bot wants; money in integer cents."""

    gpu_model: str
    gpu_hours: int
    budget_cents: int
    max_limit_cents: int = 400
    factor: float = 1.10
    gpus: int = 8
    duration_hours: int = 4
    window_hours: int = 24
    colocate: bool = True
    max_bids: int = 8  # a round's book holds at most this many bids


@dataclass
class StepResult:
    """What one pass did; `done` says the target or the budget is reached."""

    round: int | None = None
    limit_cents: int | None = None
    kept: list[int] = field(default_factory=list)
    placed: list[Bid] = field(default_factory=list)
    replaced: list[tuple[int, int]] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    new_leases: list[Lease] = field(default_factory=list)
    won_gpu_hours: float = 0.0
    spent_cents: int = 0
    done: bool = False


def _still_good(bid: Bid, request: BidRequest) -> bool:
    """An open bid serves a planned one if it asks the same at the same price and its window still
    holds the duration after the market's horizon start (older bids start earlier: that is fine)."""
    usable = bid.latest_end - max(bid.earliest_start, request.earliest_start)
    return (
        sorted(bid.gpu_models) == sorted(request.gpu_models)
        and (bid.gpus, bid.duration_hours, bid.limit_cents_per_gpu_hour)
        == (request.gpus, request.duration_hours, request.limit_cents_per_gpu_hour)
        and usable >= dt.timedelta(hours=request.duration_hours)
    )


class Bot:
    def __init__(self, client: GridxClient, config: Config) -> None:
        self.client = client
        self.config = config
        self._seen_leases: set[int] = set()

    # --- reading the market ---------------------------------------------------------------------

    def limit_cents(self, now: dt.datetime) -> int:
        """Last published mean price x factor, capped; the cap itself while nothing has cleared."""
        cfg = self.config
        points = self.client.prices(gpu_model=cfg.gpu_model, since=now - dt.timedelta(days=2))
        if not points:
            return cfg.max_limit_cents
        last = max(points, key=lambda p: p.bucket_start)
        latest = [p.mean_cents_per_gpu_hour for p in points if p.bucket_start == last.bucket_start]
        mean = sum(latest) / len(latest)
        # Rounded up to whole cents; the inner round drops float noise (200 x 1.1 = 220.00000000000003).
        return max(1, min(cfg.max_limit_cents, math.ceil(round(mean * cfg.factor, 6))))

    def _leases(self, result: StepResult) -> None:
        for lease in self.client.leases():
            if lease.gpu_model != self.config.gpu_model:
                continue
            result.won_gpu_hours += lease.gpu_hours
            result.spent_cents += lease.payment_cents
            if lease.id not in self._seen_leases:
                self._seen_leases.add(lease.id)
                result.new_leases.append(lease)
                log.info(
                    "won lease %s: %d x %s in %s, %s to %s, %d cents (%.2f c/GPU-h)",
                    lease.id,
                    lease.gpus,
                    lease.gpu_model,
                    lease.cluster_code,
                    f"{lease.start:%Y-%m-%d %H:%M}",
                    f"{lease.end:%H:%M}Z",
                    lease.payment_cents,
                    lease.cents_per_gpu_hour,
                )

    def _my_open_bids(self) -> list[Bid]:
        prefix = self.client.api_key_prefix
        return [
            b
            for b in self.client.bids(status="open")
            if b.api_key == prefix and self.config.gpu_model in b.gpu_models
        ]

    # --- planning -------------------------------------------------------------------------------

    def plan(self, round_: Round, limit: int, hours_wanted: float, budget_left: int) -> list[BidRequest]:
        """Bids for the GPU-hours still wanted, whose worst-case cost fits the budget left."""
        cfg = self.config
        assert round_.horizon_start is not None
        start = round_.horizon_start
        end = start + dt.timedelta(hours=max(cfg.window_hours, cfg.duration_hours))
        book: list[BidRequest] = []
        left = math.ceil(hours_wanted)
        while left > 0 and len(book) < cfg.max_bids:
            gpus = min(cfg.gpus, math.ceil(left / cfg.duration_hours))
            bid = BidRequest(
                gpu_models=[cfg.gpu_model],
                gpus=gpus,
                duration_hours=cfg.duration_hours,
                earliest_start=start,
                latest_end=end,
                limit_cents_per_gpu_hour=limit,
                colocate=cfg.colocate,
            )
            if bid.exposure_cents > budget_left:
                # A smaller bid may still fit what is left of the budget.
                affordable = budget_left // (limit * cfg.duration_hours)
                if affordable < 1:
                    break
                bid = dataclasses.replace(bid, gpus=min(gpus, affordable))
            book.append(bid)
            budget_left -= bid.exposure_cents
            left -= bid.gpus * bid.duration_hours
        return book

    # --- one pass -------------------------------------------------------------------------------

    def step(self, now: dt.datetime | None = None) -> StepResult:
        """Read, plan and reconcile once; the caller decides when to come back."""
        now = now or dt.datetime.now(dt.UTC)
        cfg = self.config
        result = StepResult()
        self._leases(result)
        hours_wanted = cfg.gpu_hours - result.won_gpu_hours
        budget_left = cfg.budget_cents - result.spent_cents
        mine = self._my_open_bids()
        if hours_wanted <= 0 or budget_left <= 0:
            result.done = True
            for bid in mine:
                self.client.cancel_bid(bid.id)
                result.cancelled.append(bid.id)
            log.info(
                "done: won %.1f of %d GPU-hours for %d of %d cents",
                result.won_gpu_hours,
                cfg.gpu_hours,
                result.spent_cents,
                cfg.budget_cents,
            )
            return result
        round_ = self.client.current_round()
        if round_ is None:
            log.info("no round open this moment; trying again shortly")
            return result
        result.round = round_.number
        result.limit_cents = limit = self.limit_cents(now)
        wanted = self.plan(round_, limit, hours_wanted, budget_left)
        if not wanted:
            # What is left of the budget cannot buy one GPU for one bid's hours at this price.
            result.done = True
        self._reconcile(mine, wanted, result)
        log.info(
            "round %d: limit %d c/GPU-h; %d kept, %d placed, %d replaced, %d cancelled; "
            "won %.1f/%d GPU-hours, spent %d/%d cents",
            round_.number,
            limit,
            len(result.kept),
            len(result.placed),
            len(result.replaced),
            len(result.cancelled),
            result.won_gpu_hours,
            cfg.gpu_hours,
            result.spent_cents,
            cfg.budget_cents,
        )
        return result

    def _reconcile(self, mine: list[Bid], wanted: list[BidRequest], result: StepResult) -> None:
        # Cancel and replace before placing: the new book is sized to the budget on its own, and
        # a key's exposure cap counts every open bid.
        stale = list(mine)
        missing: list[BidRequest] = []
        for request in wanted:
            same = next((b for b in stale if _still_good(b, request)), None)
            if same is not None:
                stale.remove(same)
                result.kept.append(same.id)
            else:
                missing.append(request)
        for bid in stale[len(missing) :]:
            self.client.cancel_bid(bid.id)
            result.cancelled.append(bid.id)
        for old, request in zip(stale, missing, strict=False):
            new = self.client.replace_bid(old.id, request).bid
            result.replaced.append((old.id, new.id))
        if rest := missing[len(stale) :]:
            result.placed.extend(self.client.place_bids(rest).bids)

    def run(self, *, poll_seconds: float = 10.0, max_rounds: int | None = None) -> StepResult:
        """Step once per round until done; transient API errors are logged and retried next poll."""
        rounds = 0
        last: StepResult = StepResult()
        while True:
            try:
                last = self.step()
            except GridxError as exc:
                log.warning("API error, retrying next poll: %s", exc)
                time.sleep(poll_seconds)
                continue
            if last.done:
                return last
            rounds += 1
            if max_rounds is not None and rounds >= max_rounds:
                return last
            self._wait_for_next_round(last.round, poll_seconds)

    def _wait_for_next_round(self, number: int | None, poll_seconds: float) -> None:
        while True:
            time.sleep(poll_seconds)
            current = self.client.current_round()
            if current is not None and current.number != number:
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", required=True, help="gx_… with scopes market:read,bids:write")
    parser.add_argument("--gpu-model", required=True)
    parser.add_argument("--gpu-hours", type=int, required=True, help="GPU-hours to buy in all")
    parser.add_argument("--budget-cents", type=int, required=True, help="most to spend in all")
    parser.add_argument("--max-limit-cents", type=int, default=400, help="highest price per GPU-hour")
    parser.add_argument("--factor", type=float, default=1.10, help="bid = last mean price x factor")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per bid")
    parser.add_argument("--duration-hours", type=int, default=4, help="hours per bid")
    parser.add_argument("--window-hours", type=int, default=24, help="how far from the horizon start")
    parser.add_argument("--max-bids", type=int, default=8, help="most open bids at a time")
    parser.add_argument("--poll-seconds", type=float, default=10.0)
    parser.add_argument("--max-rounds", type=int, default=None, help="stop after this many rounds")
    parser.add_argument("--cancel-on-exit", action="store_true", help="cancel open bids on Ctrl-C")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    config = Config(
        gpu_model=args.gpu_model,
        gpu_hours=args.gpu_hours,
        budget_cents=args.budget_cents,
        max_limit_cents=args.max_limit_cents,
        factor=args.factor,
        gpus=args.gpus,
        duration_hours=args.duration_hours,
        window_hours=args.window_hours,
        max_bids=args.max_bids,
    )
    with GridxClient(args.base_url, args.api_key, timeout=30, max_retries=5) as client:
        bot = Bot(client, config)
        try:
            bot.run(poll_seconds=args.poll_seconds, max_rounds=args.max_rounds)
        except KeyboardInterrupt:
            if args.cancel_on_exit:
                for bid in bot._my_open_bids():
                    client.cancel_bid(bid.id)
                log.info("stopped; open bids cancelled")
            else:
                log.info("stopped; open bids stay in the book")
    return 0


if __name__ == "__main__":
    sys.exit(main())
