"""The Payout aggregate: one per Shopify payout, deciding its one summary journal in Prima.

It takes what reads of Shopify said (pages of balance transactions, then the payout itself with
how many transactions the read listed), Prima's answers to its journal, and operators' requests.
Once a read is complete and the payout is paid (or in transit, by configuration), it checks that
the transactions add up (domain/payouts/checks.py), matches each to its Prima document
(matching.py) and records JournalRequested with the journal (journal.py): the command leaves
through the event store's notification log, never by a direct call. A payout that does not add
up is held, with the difference named, and never journalled until a read that adds up. A
journal once requested is never replaced; a payout that fails or is cancelled after it was
posted gets a reversing journal. Charges a posted journal carried on the unmatched-charges
clearing account (their orders unknown after the grace) are moved off it, once matched, by
reclassification journals (ReclassificationRequested): one at a time, each charge once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.payouts.accounts import AccountMapping
from domain.payouts.checks import (
    Problem,
    completeness_problem,
    payout_problem,
    transactions_digest,
)
from domain.payouts.clearing import ClearingAccounts
from domain.payouts.journal import (
    build_journal,
    charges_in_clearing,
    reclassification,
    reversal,
)
from domain.payouts.matching import MATCHED, UNMATCHED, match_payout, order_ids
from domain.payouts.split import splittable
from domain.payouts.values import (
    CANCELED,
    FAILED,
    PAID,
    BalanceTransaction,
    JournalOutcome,
    JournalParkedByGateway,
    JournalPostedByPrima,
    JournalRequest,
    Match,
    OrderDocument,
    PayoutHeader,
    PayoutObserved,
    TransactionsRead,
)

PAYOUT_NAMESPACE = uuid5(NAMESPACE_URL, "https://shopify-prima/payouts")
MATCHES_PER_EVENT = 500  # an event (and the message relayed for it) stays well under Kafka's 1 MB


class PayoutState(StrEnum):
    READING = "reading"  # transactions arriving; no complete read of the payout yet
    AWAITING_PAID = "awaiting_paid"  # read and adding up, not paid (nor failed) yet
    HELD = "held"  # an exception: does not add up, incomplete, an unknown type, another currency
    JOURNAL_REQUESTED = "journal_requested"
    JOURNALLED = "journalled"  # Prima posted the journal
    JOURNAL_FAILED = "journal_failed"  # Prima refused it, or the gateway parked it
    FAILED = "failed"  # Shopify: the payout failed or was cancelled before any journal
    REVERSAL_REQUESTED = "reversal_requested"
    REVERSED = "reversed"


@dataclass(frozen=True)
class PayoutPolicy:
    """Configuration the decisions take (settings.payout_accounts, payout_journal_on)."""

    accounts: AccountMapping = field(default_factory=AccountMapping)
    journal_on: frozenset[str] = frozenset({PAID})
    # how long a payout waits for the orders of charges whose amounts are not known yet before its
    # journal carries them on the clearing account (settings.payout_documents_grace_seconds)
    documents_grace: timedelta = timedelta(hours=1)
    # which gateways pay out through Shopify payouts (settings.payout_clearing_accounts): a charge
    # for an order also paid through another one is matched though below the order's total
    clearing: ClearingAccounts = field(default_factory=ClearingAccounts)


class Payout(Aggregate):
    @staticmethod
    def create_id(payout_id: int) -> UUID:
        return uuid5(PAYOUT_NAMESPACE, str(payout_id))

    # -- events -------------------------------------------------------------------------------

    @event("PayoutOpened")
    def __init__(self, payout_id: int) -> None:
        self.payout_id = payout_id
        self.transactions: dict[int, BalanceTransaction] = {}
        self.read_id: UUID | None = None  # the read whose pages are being collected
        self.read_ids: set[int] = set()  # the transactions that read listed so far
        # earlier reads, left for a later one (ended, or abandoned: the ingest stopped mid-read);
        # their pages or end delivered again (a batch redelivered across two reads) change nothing
        self.reads_left: set[UUID] = set()
        self.pages: set[int] = set()
        self.reading = False
        self.header: PayoutHeader | None = None
        self.listed: tuple[UUID, int, str] | None = None  # (read, count, digest) of the latest read ended
        self.paid_observed_at: datetime | None = None
        self.first_observed_at: datetime | None = None  # when a read of it first ended
        self.hold: tuple[str, str, Decimal | None] | None = None  # (reason, detail, difference)
        self.matches: dict[int, Match] = {}
        self.command: JournalRequest | None = None
        self.commands_issued = 0
        self.journal_number: str | None = None
        self.failure: tuple[str, str] | None = None  # (rejected | parked, reason)
        self.failed_status: str | None = None
        self.reversal: JournalRequest | None = None
        self.reversals_issued = 0
        self.reversal_number: str | None = None
        self.clearing: tuple[int, ...] = ()  # the charges the journal carried on the clearing account
        self.reclassifications: list[JournalRequest] = []  # requested, in order
        self.reclassifications_issued = 0  # counts every one ever requested (n of its idempotency key)
        self.reclassified: dict[int, UUID] = {}  # charge -> the reclassification that moves it
        self.reclassification_numbers: dict[UUID, str] = {}  # posted: command -> Prima's journal number

    @event("TransactionsRead")
    def _transactions_read(self, read_id: UUID, page: int, ids: tuple[int, ...],
                           transactions: tuple[BalanceTransaction, ...]) -> None:
        if read_id != self.read_id:
            self._leave_reads_before(read_id)
            self.read_id, self.read_ids, self.pages = read_id, set(), set()
            self.reading = True  # a read in progress: nothing is decided until it ends
        self.pages.add(page)
        self.read_ids.update(ids)
        for t in transactions:
            self.transactions[t.transaction_id] = t

    @event("PayoutObserved")
    def _observed(self, read_id: UUID, header: PayoutHeader, transaction_count: int, transactions_digest: str,
                  observed_at: datetime) -> None:
        self._leave_reads_before(read_id)
        self.header = header
        self.listed = (read_id, transaction_count, transactions_digest)
        self.reading = False
        if self.first_observed_at is None:
            self.first_observed_at = observed_at
        if header.status == PAID and self.paid_observed_at is None:
            self.paid_observed_at = observed_at

    @event("PayoutHeld")
    def _held(self, reason: str, detail: str, difference: Decimal | None) -> None:
        self.hold = (reason, detail, difference)

    @event("HoldResolved")
    def _hold_resolved(self) -> None:
        self.hold = None

    @event("TransactionsMatched")
    def _matched(self, matches: tuple[Match, ...]) -> None:
        for match in matches:
            self.matches[match.transaction_id] = match

    @event("JournalRequested")
    def _journal_requested(self, request: JournalRequest, clearing: tuple[int, ...] = ()) -> None:
        self.command = request
        self.clearing = tuple(clearing)
        self.commands_issued += 1
        self.hold = None
        self.failure = None

    @event("JournalPosted")
    def _journal_posted(self, command_id: UUID, journal_number: str, occurred_at: datetime) -> None:
        self.journal_number = journal_number
        self.failure = None

    @event("JournalRejected")
    def _journal_rejected(self, command_id: UUID, status_code: int, code: str, reason: str) -> None:
        self.failure = ("rejected", f"{code}: {reason}")

    @event("JournalParked")
    def _journal_parked(self, command_id: UUID, attempts: int, reason: str) -> None:
        self.failure = ("parked", reason)

    @event("PayoutFailed")
    def _payout_failed(self, status: str) -> None:
        self.failed_status = status

    @event("ReversalRequested")
    def _reversal_requested(self, request: JournalRequest) -> None:
        self.reversal = request
        self.reversals_issued += 1
        self.failure = None

    @event("ReversalPosted")
    def _reversal_posted(self, command_id: UUID, journal_number: str, occurred_at: datetime) -> None:
        self.reversal_number = journal_number
        self.failure = None

    @event("ReclassificationRequested")
    def _reclassification_requested(self, request: JournalRequest, charge_ids: tuple[int, ...]) -> None:
        if all(r.command_id != request.command_id for r in self.reclassifications):
            self.reclassifications.append(request)  # a parked one sent again is the same request
            self.reclassifications_issued += 1
        for charge in charge_ids:
            self.reclassified[charge] = request.command_id
        self.failure = None

    @event("ReclassificationPosted")
    def _reclassification_posted(self, command_id: UUID, journal_number: str, occurred_at: datetime) -> None:
        self.reclassification_numbers[command_id] = journal_number
        self.failure = None

    @event("PayoutReleased")
    def _released(self, released_by: str, previous_state: str) -> None:
        """An operator asked for the payout to be decided again (its cause fixed)."""
        if self.failure is not None and self.failure[0] == "rejected":
            self.failure = None
            outstanding = self.outstanding_reclassification
            if self.reversal is not None and self.reversal_number is None:
                self.reversal = None  # decided again below
            elif outstanding is not None:  # refused: its charges are reclassified again, in a new one
                self.reclassifications.remove(outstanding)
                self.reclassified = {c: k for c, k in self.reclassified.items() if k != outstanding.command_id}
            elif self.journal_number is None:
                self.command = None
        self.hold = None

    def _leave_reads_before(self, read_id: UUID) -> None:
        """`read_id` is the read now: the one whose pages were collected and the one that ended
        last, if others, are left (applied by the events, so a replay rebuilds it)."""
        for earlier in (self.read_id, self.listed[0] if self.listed is not None else None):
            if earlier is not None and earlier != read_id:
                self.reads_left.add(earlier)
        self.reads_left.discard(read_id)

    # -- what it is now -------------------------------------------------------------------------

    @property
    def state(self) -> PayoutState:
        if self.reversal_number is not None:
            return PayoutState.REVERSED
        if self.failure is not None:
            return PayoutState.JOURNAL_FAILED
        if self.reversal is not None:
            return PayoutState.REVERSAL_REQUESTED
        if self.journal_number is not None:
            return PayoutState.JOURNALLED
        if self.command is not None:
            return PayoutState.JOURNAL_REQUESTED
        if self.hold is not None:
            return PayoutState.HELD
        if self.failed_status is not None:
            return PayoutState.FAILED
        if self.header is None:
            return PayoutState.READING
        return PayoutState.AWAITING_PAID

    def current_transactions(self) -> list[BalanceTransaction]:
        """The transactions of the latest read (the ones decided on)."""
        return [self.transactions[i] for i in sorted(self.read_ids)]

    @property
    def outstanding_reclassification(self) -> JournalRequest | None:
        """The reclassification requested and not posted yet (there is at most one)."""
        return next((r for r in self.reclassifications if r.command_id not in self.reclassification_numbers), None)

    @property
    def unmatched(self) -> int:
        return sum(1 for m in self.matches.values() if m.status == UNMATCHED)

    @property
    def read_ended(self) -> bool:
        """A read of it has ended and no new one is in progress: what it decides on."""
        return self.header is not None and self.listed is not None and not self.reading

    def documents_needed(self) -> set[int]:
        """The orders behind its transactions; none while a read is in progress (it decides
        nothing then, so a payout read in many pages asks for its documents once)."""
        return order_ids(self.current_transactions()) if self.read_ended else set()

    # -- facts ----------------------------------------------------------------------------------

    @classmethod
    def open(cls, payout_id: int) -> Payout:
        return cls(payout_id=payout_id)

    def record_transactions(self, fact: TransactionsRead) -> bool:
        """Record a page of a read; a page already recorded, or of a read left for a later one
        (a redelivery), changes nothing."""
        if fact.read_id == self.read_id and fact.page in self.pages:
            return False
        if fact.read_id in self.reads_left:
            return False
        changed = tuple(t for t in fact.transactions if self.transactions.get(t.transaction_id) != t)
        self._transactions_read(read_id=fact.read_id, page=fact.page,
                                ids=tuple(t.transaction_id for t in fact.transactions), transactions=changed)
        return True

    def observe(self, fact: PayoutObserved) -> bool:
        """Record the end of a read; the same read's end again, or the end of a read left for a
        later one (a redelivery), changes nothing."""
        if (self.listed is not None and self.listed[0] == fact.read_id) or fact.read_id in self.reads_left:
            return False
        self._observed(read_id=fact.read_id, header=fact.header, transaction_count=fact.transaction_count,
                       transactions_digest=fact.transactions_digest, observed_at=fact.observed_at)
        return True

    def record_outcome(self, outcome: JournalOutcome) -> bool:
        """Prima's answer to the current journal (or reversal) command; anything else is ignored."""
        if self.reversal is not None and outcome.command_id == self.reversal.command_id:
            if self.reversal_number is not None:
                return False
            if isinstance(outcome, JournalPostedByPrima):
                self._reversal_posted(command_id=outcome.command_id, journal_number=outcome.journal_number,
                                      occurred_at=outcome.occurred_at)
                return True
            return self._failed(outcome)
        outstanding = self.outstanding_reclassification
        if outstanding is not None and outcome.command_id == outstanding.command_id:
            if isinstance(outcome, JournalPostedByPrima):
                self._reclassification_posted(command_id=outcome.command_id, journal_number=outcome.journal_number,
                                              occurred_at=outcome.occurred_at)
                return True
            return self._failed(outcome)
        if self.command is None or outcome.command_id != self.command.command_id or self.journal_number is not None:
            return False  # not ours, or posted already: a repeated outcome changes nothing
        if isinstance(outcome, JournalPostedByPrima):
            self._journal_posted(command_id=outcome.command_id, journal_number=outcome.journal_number,
                                 occurred_at=outcome.occurred_at)
            return True
        return self._failed(outcome)

    def _failed(self, outcome: JournalOutcome) -> bool:
        if self.failure is not None and not (self.failure[0] == "parked" and not isinstance(
                outcome, JournalParkedByGateway)):
            return False  # failed already: a second failure adds nothing, but a parked one may be refused
        if isinstance(outcome, JournalParkedByGateway):
            self._journal_parked(command_id=outcome.command_id, attempts=outcome.attempts, reason=outcome.reason)
        else:
            self._journal_rejected(command_id=outcome.command_id, status_code=outcome.status_code, code=outcome.code,
                                   reason=outcome.reason)
        return True

    def release(self, released_by: str) -> bool:
        """Decide a held payout, or one whose journal failed, again (the caller then decides)."""
        if self.state not in (PayoutState.HELD, PayoutState.JOURNAL_FAILED):
            return False
        parked = self.failure is not None and self.failure[0] == "parked"
        previous = self.state
        self._released(released_by=released_by, previous_state=str(previous))
        if parked:  # Prima may hold it already: the same command again, never a second journal
            outstanding = self.outstanding_reclassification
            if self.reversal is not None and self.reversal_number is None:
                self._reversal_requested(request=self.reversal)
            elif outstanding is not None:
                self._reclassification_requested(request=outstanding, charge_ids=tuple(
                    c for c, k in self.reclassified.items() if k == outstanding.command_id))
            elif self.command is not None:
                self._journal_requested(request=self.command, clearing=self.clearing)
        return True

    # -- decisions ------------------------------------------------------------------------------

    def decide(self, policy: PayoutPolicy, documents: Mapping[int, OrderDocument], now: datetime) -> None:
        if not self.read_ended:
            return  # no read has ended yet, or a new one is in progress
        assert self.header is not None and self.listed is not None
        header = self.header
        read, count, digest = self.listed
        transactions = self.current_transactions() if read == self.read_id else []
        problem = completeness_problem(len(transactions), transactions_digest(t.transaction_id for t in transactions),
                                       count, digest)
        if problem is None:
            problem = payout_problem(header, transactions)
            self._record_matches(match_payout(transactions, documents, policy.clearing))
        if self.command is not None:  # a journal stands: never replaced
            if header.status in (FAILED, CANCELED) and self.journal_number is not None and self.reversal is None:
                self._reverse(now)
            elif header.status not in (FAILED, CANCELED):
                self._reclassify(policy, documents, now)
            return
        if problem is not None:
            self._hold_once(problem)
            return
        if self.hold is not None:
            self._hold_resolved()
        if header.status in (FAILED, CANCELED):
            if self.failed_status != header.status:
                self._payout_failed(status=header.status)
            return
        if header.status not in policy.journal_on:
            return
        waiting_since = self.first_observed_at or now
        clearing = charges_in_clearing(header, transactions, documents)
        if clearing and now < waiting_since + policy.documents_grace:
            return  # their orders may be on their way: matched again by the sweep, then journalled in full
        journal = build_journal(header, transactions, policy.accounts, documents)
        command_id = uuid5(self.id, f"post-journal/{self.commands_issued + 1}")
        self._journal_requested(request=JournalRequest(
            command_id=command_id, idempotency_key=f"shopify-prima:post-journal:{self.payout_id}",
            payout_id=self.payout_id, issued_at=now, journal=journal),
            clearing=tuple(clearing))

    def reclassifiable(self, documents: Mapping[int, OrderDocument]) -> list[BalanceTransaction]:
        """The charges the posted journal carried on the clearing account that are matched now,
        with their order's parts known, and not in a reclassification yet."""
        found = []
        for charge_id in self.clearing:
            t = self.transactions.get(charge_id)
            match = self.matches.get(charge_id)
            if t is None or charge_id in self.reclassified or match is None or match.status != MATCHED:
                continue
            document = documents.get(t.order_id) if t.order_id is not None else None
            if splittable(document):
                found.append(t)
        return found

    def _reclassify(self, policy: PayoutPolicy, documents: Mapping[int, OrderDocument], now: datetime) -> None:
        """A posted journal is never changed: charges it carried on the clearing account and
        matched since are moved off it by one more journal (one outstanding at a time; each
        charge once)."""
        if (self.journal_number is None or self.reversal is not None or self.failure is not None
                or self.outstanding_reclassification is not None):
            return
        charges = self.reclassifiable(documents)
        if not charges:
            return
        number = self.reclassifications_issued + 1
        journal = reclassification(self.payout_id, number, self.journal_number, charges, policy.accounts,
                                   documents, now)
        self._reclassification_requested(request=JournalRequest(
            command_id=uuid5(self.id, f"reclassify-journal/{number}"),
            idempotency_key=f"shopify-prima:reclassify-journal:{self.payout_id}:{number}",
            payout_id=self.payout_id, issued_at=now, journal=journal),
            charge_ids=tuple(t.transaction_id for t in charges))

    def _reverse(self, now: datetime) -> None:
        assert self.command is not None and self.journal_number is not None
        if self.outstanding_reclassification is not None:
            return  # reversed once Prima answers it (a refusal: once released), so it is undone too
        posted = [r.journal for r in self.reclassifications if r.command_id in self.reclassification_numbers]
        journal = reversal(self.command.journal, self.journal_number, now, posted)
        command_id = uuid5(self.id, f"reverse-journal/{self.reversals_issued + 1}")
        self._reversal_requested(request=JournalRequest(
            command_id=command_id, idempotency_key=f"shopify-prima:reverse-journal:{self.payout_id}",
            payout_id=self.payout_id, issued_at=now, journal=journal))

    def _hold_once(self, problem: Problem) -> None:
        if self.hold is not None and self.hold[0] == str(problem.reason) and self.hold[1] == problem.detail:
            return
        self._held(reason=str(problem.reason), detail=problem.detail, difference=problem.difference)

    def _record_matches(self, matches: Iterable[Match]) -> int:
        changed = tuple(m for m in matches if self.matches.get(m.transaction_id) != m)
        for start in range(0, len(changed), MATCHES_PER_EVENT):
            self._matched(matches=changed[start:start + MATCHES_PER_EVENT])
        return len(changed)
