"""The payout application: a batch of facts in, payout decisions out.

`handle(facts, documents_for, policy, now)` applies a batch (pages of transactions, payouts
observed, Prima's answers, re-match and release requests) in order, each to its Payout, then lets
every Payout the batch touched decide, with the documents of the orders behind its transactions
(`documents_for(order ids)`, read once for the batch: the sales-documents read model), and saves
every changed Payout in one transaction together with the notification log (the outbox the relay
reads). A redelivered batch changes nothing: each Payout ignores pages, reads and outcomes it has
recorded, and records matches and decisions only when they change.

The Payouts a batch leaves are kept in memory for the next batch (a few, the most recently used:
`kept`), so a payout read in many pages is not loaded again from the event store for every page
(each load replays every page recorded before it: quadratic in the pages). A kept Payout is
brought up to date with the events stored after its version (one query, normally empty: the
payout decider is their only writer, but after a rebalance another instance may have written),
and is dropped when a batch that touched it fails (its save refused as a version conflict, or
anything else): the retry loads it from the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import project_aggregate
from eventsourcing.persistence import JSONTranscoder

from domain.payouts.domainmodel import Payout, PayoutPolicy, PayoutState
from domain.payouts.values import (
    VALUE_TYPES,
    JournalOutcome,
    JournalPostedByPrima,
    OrderDocument,
    PayoutFact,
    PayoutObserved,
    PayoutReleaseRequested,
    RematchRequested,
    TransactionsRead,
)
from domain.shared.application import BatchApplication, UnitOfWork
from domain.shared.transcoding import register_values

DocumentsFor = Callable[[set[int]], Mapping[int, OrderDocument]]
KEPT_PAYOUTS = 8  # Payouts kept in memory between batches (a shop pays out about once a day)


@dataclass
class HandleResult:
    journals_requested: list[int] = field(default_factory=list)  # payout ids
    held: list[tuple[int, str]] = field(default_factory=list)  # (payout id, reason)
    posted_after: list[float] = field(default_factory=list)  # seconds from paid seen to journal posted
    matches_changed: int = 0
    releases: list[tuple[int, str]] = field(default_factory=list)  # (payout, state after)
    refused_releases: list[int] = field(default_factory=list)
    saved: int = 0


class PayoutApplication(BatchApplication):
    name = "payouts"

    def __init__(self, *args: Any, kept: int = KEPT_PAYOUTS, **kwargs: Any) -> None:
        """`kept`: how many Payouts stay in memory between batches (0: every batch loads its
        Payouts from the event store)."""
        super().__init__(*args, **kwargs)
        self.kept_limit = kept
        self.kept: OrderedDict[UUID, Payout] = OrderedDict()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_values(transcoder, *VALUE_TYPES)

    def handle(self, facts: Sequence[PayoutFact], documents_for: DocumentsFor, policy: PayoutPolicy,
               now: datetime) -> HandleResult:
        ids = list(dict.fromkeys(Payout.create_id(f.payout_id) for f in facts))
        try:
            return self._handle(ids, facts, documents_for, policy, now)
        except BaseException:
            for aggregate_id in ids:  # maybe changed in memory and not saved: loaded again next time
                self.kept.pop(aggregate_id, None)
            raise

    def _handle(self, ids: list[UUID], facts: Sequence[PayoutFact], documents_for: DocumentsFor,
                policy: PayoutPolicy, now: datetime) -> HandleResult:
        result = HandleResult()
        uow = self.unit_of_work()
        self._load_kept(uow, ids)
        uow.preload(ids)
        touched: dict[int, Payout] = {}
        before: dict[int, tuple[PayoutState, tuple | None]] = {}
        for fact in facts:
            if fact.payout_id not in before:
                existing = cast("Payout | None", uow.get(Payout.create_id(fact.payout_id)))
                before[fact.payout_id] = (existing.state, existing.hold) if existing else (PayoutState.READING, None)
            payout = self._apply(uow, fact, result)
            if payout is not None:
                touched.setdefault(payout.payout_id, payout)
        needed: set[int] = set()
        for payout in touched.values():
            needed |= payout.documents_needed()
        documents = documents_for(needed) if needed else {}
        for payout_id, payout in touched.items():
            changed = len(payout.pending_events)
            payout.decide(policy, documents, now)  # matches again too (a re-match request only touches it)
            result.matches_changed += sum(len(e.matches) for e in payout.pending_events[changed:]
                                          if type(e).__name__ == "TransactionsMatched")
            state, hold = before[payout_id]
            if payout.state is PayoutState.JOURNAL_REQUESTED and state is not PayoutState.JOURNAL_REQUESTED:
                result.journals_requested.append(payout_id)
            if payout.hold is not None and payout.hold != hold:
                result.held.append((payout_id, payout.hold[0]))
        result.saved = uow.commit()
        self._keep(cast(Payout, p) for p in uow.loaded.values() if p is not None)
        return result

    def _load_kept(self, uow: UnitOfWork, ids: Iterable[UUID]) -> None:
        """Put the kept Payouts among `ids` into the unit of work, each brought up to date with
        the events stored after its version."""
        kept = {i: self.kept[i] for i in ids if i in self.kept}
        if not kept:
            return
        newer = self._events_after({i: p.version for i, p in kept.items()}, dict.fromkeys(kept))
        for aggregate_id, payout in kept.items():
            stored = newer.get(aggregate_id, [])
            self.load_stats.events += len(stored)
            uow.add(cast(Payout, project_aggregate(payout, [self.mapper.to_domain_event(e) for e in stored])))

    def _keep(self, payouts: Iterable[Payout]) -> None:
        """Keep the batch's Payouts (saved: no pending events) as the most recently used."""
        if self.kept_limit <= 0:
            return
        for payout in payouts:
            self.kept[payout.id] = payout
            self.kept.move_to_end(payout.id)
        while len(self.kept) > self.kept_limit:
            self.kept.popitem(last=False)

    def _apply(self, uow: UnitOfWork, fact: PayoutFact, result: HandleResult) -> Payout | None:
        aggregate_id = Payout.create_id(fact.payout_id)
        payout = cast("Payout | None", uow.get(aggregate_id))
        if isinstance(fact, (TransactionsRead, PayoutObserved)):
            if payout is None:
                payout = cast(Payout, uow.add(Payout.open(fact.payout_id)))
            if isinstance(fact, TransactionsRead):
                payout.record_transactions(fact)
            else:
                payout.observe(fact)
            return payout
        if payout is None:
            if isinstance(fact, PayoutReleaseRequested):
                result.refused_releases.append(fact.payout_id)
            return None  # an outcome or a request about a payout never seen
        if isinstance(fact, PayoutReleaseRequested):
            if payout.release(fact.released_by):
                result.releases.append((fact.payout_id, str(payout.state)))
            else:
                result.refused_releases.append(fact.payout_id)
        elif isinstance(fact, RematchRequested):
            pass  # decided (matched again) below, with the batch's documents
        elif (payout.record_outcome(cast(JournalOutcome, fact)) and isinstance(fact, JournalPostedByPrima)
              and payout.reversal is None and payout.paid_observed_at is not None):
            result.posted_after.append((fact.occurred_at - payout.paid_observed_at).total_seconds())
        return payout

    def find_payout(self, payout_id: int) -> Payout | None:
        return cast("Payout | None", self.find(Payout.create_id(payout_id)))
