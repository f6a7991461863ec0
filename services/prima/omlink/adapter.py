"""The OM link adapter of the Prima port: the commands and reads the integration makes, said in
Prima's own interface (SOAP, one XML document each way; contracts/prima/omlink/README.md).

- `create_sales_order`: a CreateSalesOrder as a NewOrder. The OrderNumber is the channel prefix
  plus the Shopify order id (domain/orders/prima_codes.py), the same for every attempt and every
  command about the order, so it is the idempotency key Prima knows the order by. Prima never
  gets a second order:
  - before sending again an order whose answer was lost (a later attempt, or a first attempt the
    caller says may have reached Prima: a parked command re-driven, an operator's retry), the
    adapter asks OrderStatus; if Prima holds the order, that is the outcome (`adopted`);
  - a NewOrder Prima refuses is looked up too: if Prima holds the order (it refused a repeated
    OrderNumber: a command redelivered after its answer was lost), it is adopted, never rejected.
  A refusal otherwise is `PrimaRejected` naming Prima's RequestError; an order the mapping
  cannot express (a SKU, shipping method or payment gateway with no Prima code, a code the
  encoding cannot carry) is `PrimaRejected` naming what is missing, before anything is sent.
  While Prima is unavailable, attempts are retried with exponential backoff and jitter, then
  `PrimaUnavailable` is raised with the number of attempts (the gateway parks the command).
- `order_status`: Prima's status of one order (None when Prima does not know it), read again
  while Prima is unavailable.
- `availability`: a full ProductAvailableToSell pass, one page per configured product range
  (bounded: one range's answer in memory at a time), each row named by its Shopify SKU through
  the SKU matrix; rows the mapping cannot name are listed with the reason, never dropped.

Prima's statuses become the port's (`port_status`): Despatched -> despatched, Part Despatched ->
picking (the warehouse has it: past the amendment cut-off), Cancelled -> cancelled, anything else
(an order Prima holds and has not shipped) -> open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self, TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from contracts.prima.sales_orders import CreateSalesOrder, PrimaSalesOrderCreated
from domain.catalog.matrix import PrimaItemCode, SkuNotMapped
from domain.orders.prima_codes import CodeNotMapped
from services.prima.client import (
    PrimaBadResponse,
    PrimaError,
    PrimaRejected,
    PrimaUnavailable,
)
from services.prima.omlink.config import OmLinkConfig, ProductRange
from services.prima.omlink.documents import (
    Answer,
    BadAnswer,
    NotEncodable,
    NotSendable,
    OrderStatusAnswer,
    Payment,
    availability_request,
    new_order_request,
    order_status_request,
    read_answer,
    read_availability,
    read_order_status,
    value,
)
from services.prima.omlink.soap import OmLinkSoap

REFUSED = 422  # the port's status code for a refusal OM link answers inside a 200 (RequestStatus="ERROR")
PORT_STATUSES = {"despatched": "despatched", "part despatched": "picking", "cancelled": "cancelled"}
T = TypeVar("T")


def port_status(prima_status: str) -> str:
    return PORT_STATUSES.get(" ".join(prima_status.split()).casefold(), "open")


@dataclass(frozen=True)
class AvailabilityPage:
    product_range: ProductRange
    warehouse: str
    levels: dict[str, int]  # Shopify SKU -> available to sell
    unmapped: tuple[tuple[PrimaItemCode, str], ...]  # Prima items the SKU mapping cannot name, and why


class OmLinkAdapter:
    def __init__(self, config: OmLinkConfig, soap: OmLinkSoap | None = None) -> None:
        self.config = config
        self.soap = soap or OmLinkSoap(config)

    async def aclose(self) -> None:
        await self.soap.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def order_number(self, shopify_order_id: int) -> str:
        return self.config.order_codes.order_number(shopify_order_id)

    # one request, and retries

    async def _ask(self, document: str) -> Answer:
        text = await self.soap.call(document)
        try:
            return read_answer(text)
        except BadAnswer as exc:
            raise PrimaBadResponse(str(exc)) from exc

    async def _retrying(self, attempt: Callable[[int], Awaitable[T]], *, once: bool = False) -> T:
        """`attempt(n)` until it does not raise PrimaUnavailable, at most max_attempts times
        (`once`: one attempt, for a caller whose schedule is the retry: a parked command's re-drive)."""
        c = self.config
        n = 0
        try:
            async for retrying in AsyncRetrying(
                stop=stop_after_attempt(1 if once else c.max_attempts),
                wait=wait_exponential_jitter(multiplier=c.backoff_initial_seconds, max=c.backoff_max_seconds,
                                             jitter=c.backoff_initial_seconds),
                retry=retry_if_exception_type(PrimaUnavailable), reraise=True,
            ):
                with retrying:
                    n += 1
                    return await attempt(n)
        except PrimaError as exc:
            exc.attempts = n
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")

    # reads

    async def _status_once(self, order_number: str) -> OrderStatusAnswer | None:
        answer = await self._ask(order_status_request(order_number, encoding=self.config.encoding))
        try:
            return read_order_status(answer, order_number)
        except BadAnswer as exc:
            raise PrimaBadResponse(str(exc)) from exc

    async def order_status(self, order_number: str) -> OrderStatusAnswer | None:
        """Prima's status of the order; None when Prima does not know it (it answered ERROR)."""
        return await self._retrying(lambda _: self._status_once(order_number))

    async def availability(self) -> AsyncIterator[AvailabilityPage]:
        """One full pass over the configured product ranges, a page per range."""
        for product_range in self.config.availability_ranges:
            document = availability_request(product_range.product_from, product_range.product_to,
                                            encoding=self.config.encoding)
            answer = await self._retrying(lambda _, d=document: self._ask(d))
            try:
                rows = read_availability(answer)
            except BadAnswer as exc:
                raise PrimaBadResponse(str(exc)) from exc
            yield self._page(product_range, rows)

    def _page(self, product_range: ProductRange, rows: list) -> AvailabilityPage:
        levels: dict[str, int] = {}
        unmapped: list[tuple[PrimaItemCode, str]] = []
        seen: set[PrimaItemCode] = set()
        for row in rows:
            if not product_range.holds(row.item.product):
                raise PrimaBadResponse(f"ProductAvailableToSell for {product_range} answered {row.item}, outside it")
            if row.item in seen:
                raise PrimaBadResponse(f"ProductAvailableToSell for {product_range} answered {row.item} twice")
            seen.add(row.item)
            try:
                levels[self.config.sku_matrix.sku(row.item)] = row.available
            except SkuNotMapped as exc:
                unmapped.append((row.item, exc.reason))
        return AvailabilityPage(product_range, self.config.availability_warehouse, levels, tuple(unmapped))

    # commands

    def new_order(self, command: CreateSalesOrder, payments: Sequence[Payment]) -> str:
        """The NewOrder document; PrimaRejected (nothing sent) when the order cannot be expressed."""
        c = self.config
        try:
            return new_order_request(command, payments, codes=c.order_codes, matrix=c.sku_matrix,
                                     warehouse=c.line_warehouse, encoding=c.encoding)
        except SkuNotMapped as exc:
            raise PrimaRejected(REFUSED, "unmapped_sku", str(exc)) from exc
        except CodeNotMapped as exc:
            raise PrimaRejected(REFUSED, f"unmapped_{exc.what.replace(' ', '_')}", str(exc)) from exc
        except NotEncodable as exc:
            raise PrimaRejected(REFUSED, "not_encodable", str(exc)) from exc
        except (NotSendable, ValueError) as exc:
            raise PrimaRejected(REFUSED, "not_sendable", str(exc)) from exc

    async def probe(self) -> None:
        """One cheap request, no retries: raises PrimaUnavailable while Prima does not answer (any
        answer, an ERROR for an order it does not know included, means it is there)."""
        try:
            await self._ask(order_status_request("PROBE", encoding=self.config.encoding))
        except (PrimaRejected, PrimaBadResponse):
            pass

    async def create_sales_order(self, command: CreateSalesOrder, payments: Sequence[Payment], *,
                                 may_have_reached_prima: bool = False, once: bool = False) -> PrimaSalesOrderCreated:
        document = self.new_order(command, payments)
        number = self.order_number(command.shopify_order_id)

        def created(status: str, *, adopted: bool) -> PrimaSalesOrderCreated:
            return PrimaSalesOrderCreated(
                command_id=command.command_id, shopify_order_id=command.shopify_order_id,
                sales_order_number=number, status=port_status(status), adopted=adopted,
                occurred_at=datetime.now(UTC))

        async def attempt(n: int) -> PrimaSalesOrderCreated:
            # an earlier send may have reached Prima (its answer lost): ask before sending again
            if (n > 1 or may_have_reached_prima) and (held := await self._status_once(number)) is not None:
                return created(held.status, adopted=True)
            answer = await self._ask(document)
            if answer.ok:
                status = value(answer.data, "OrderStatus") if answer.data is not None else None
                return created(status or "open", adopted=False)
            if (held := await self._status_once(number)) is not None:  # refused as a repeat: it is there
                return created(held.status, adopted=True)
            raise PrimaRejected(REFUSED, "request_error", answer.error or "Prima answered ERROR without a RequestError")

        return await self._retrying(attempt, once=once)
