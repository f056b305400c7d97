"""The on-chain venue: a wallet that trades through a Uniswap-V2-style router, behind the Venue port.

* Symbols are `BASE/QUOTE` of configured token symbols (`web3.tokens`) or the chain's own coin
  (`web3.native_symbol`, ETH, routed as the router's WETH). Quantities are in the base token, so
  the market's step size is one base-token unit (10^-decimals).
* A market order is one router swap of the pair: a sell spends exactly `quantity` of the base
  (`swapExactTokensForTokens`, `swapExactETHForTokens`, `swapExactTokensForETH`) with
  amountOutMin = the router's quote less `web3.slippage_bps`; a buy receives exactly `quantity`
  (`swapTokensForExactTokens`, `swapETHForExactTokens`, `swapTokensForExactETH`) with amountInMax =
  the quote plus the slippage. A limit order (IOC or FOK only: a swap cannot rest) bounds the swap by
  its limit price instead. Stop orders are rejected. The deadline is the order's event time plus
  `web3.deadline_s` (or its `expire_at`, if sooner).
* ERC-20 input needs an allowance for the router: `web3.approval` "exact" approves each swap's
  amount just before it (an extra transaction each time, never more allowance than one swap
  needs), "unlimited" approves the maximum once per token. Swaps spending the same token go from
  approval to sending one at a time, so one swap's approval never overwrites another's.
* `place` sends the swap, reports `submitted` (venue order id = the transaction hash), waits for
  the receipt and reports the outcome in the same call: `filled` with one `OrderFilled` whose
  price is quote / base as the pair's `Swap` event reports them, whose fee is the gas paid in ETH
  (the swap's, plus its approval's) with the native symbol as the fee asset; or `rejected` with
  the revert reason and the gas paid. A swap the node says would revert, or the wallet cannot
  pay for, is rejected before it is signed (an "exact" approval sent for it is paid: the reasons
  say how much). No receipt within `web3.receipt_timeout_s` leaves the order `submitted`:
  `settle` waits again.
* Idempotency: the venue keeps client order id -> transaction hash, so placing the same client
  order id again sends nothing and returns no events. It is held in memory: after a restart,
  `resume` takes back a sent order from its `submitted` event (venue order id = the hash).
* `transfer` sends ETH or an ERC-20 to an address, idempotent by its transfer id.

Signing, nonces, fees and receipts are `execution.web3_chain`'s.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, localcontext
from typing import Any

import structlog
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.contract import AsyncContract
from web3.providers.async_base import AsyncBaseProvider

from config.errors import ConfigError, DomainError
from config.settings import Settings, Web3Config, reveal
from execution import contracts
from execution import order as orders
from execution.market import Market
from execution.order import OPEN, Order, OrderRequest, validate_request
from execution.venue import UnknownOrderError
from execution.web3_chain import (
    GasPrice,
    Mined,
    ReceiptTimeoutError,
    Sent,
    Signer,
    TransactionRefusedError,
    TransactionRevertedError,
    TxSender,
    revert_reason,
)
from topics.orders import OrderEvent, split_symbol

log = structlog.get_logger("cryptiq.execution.web3")

_BPS = Decimal(10_000)
_MATH = Context(prec=80)  # exact for any uint256 amount; results never depend on the caller's context
PRICE_PLACES = 18  # fill prices are quote/base rounded to this many decimal places
MAX_UINT256 = 2**256 - 1
_SWAP_TOPIC = AsyncWeb3.keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)").to_0x_hex()


@dataclass(frozen=True, slots=True)
class Token:
    """An asset the venue trades: an ERC-20 (`address`), or the chain's coin (`address` None)."""

    symbol: str
    address: str | None
    decimals: int

    @property
    def native(self) -> bool:
        return self.address is None

    def to_raw(self, amount: Decimal) -> int | None:
        """`amount` in the token's smallest unit, or None if it is finer than that."""
        with localcontext(_MATH):
            scaled = amount.scaleb(self.decimals)
            return int(scaled) if scaled == scaled.to_integral_value() else None

    def from_raw(self, raw: int) -> Decimal:
        with localcontext(_MATH):
            return Decimal(raw).scaleb(-self.decimals)


@dataclass(frozen=True, slots=True)
class TransferResult:
    """A transfer that landed."""

    transfer_id: str
    tx_hash: str
    asset: str
    to: str
    amount: Decimal
    fee: Decimal  # gas paid, in `fee_asset`
    fee_asset: str
    block_number: int


@dataclass(frozen=True, slots=True)
class _Swap:
    """One order as a router call."""

    function: str
    args: tuple[Any, ...]
    value: int  # wei sent with the call (ETH input)
    base: Token
    quote: Token
    pay: Token  # what the wallet spends
    pay_max: int  # the most of it the swap may take: the allowance it needs


@dataclass(slots=True)
class _InFlight:
    swap: _Swap
    sent: Sent
    extra_fee_wei: int  # gas of the approval sent for this swap


def _route(
    side: str, base: Token, quote: Token, *, base_raw: int, bound: int, tail: tuple[list[str], str, int]
) -> _Swap:
    """The router function for a sell (exact base in) or a buy (exact base out); `tail` is
    (path, recipient, deadline), the arguments every swap function ends with."""
    if side == "sell":
        if base.native:
            return _Swap("swapExactETHForTokens", (bound, *tail), base_raw, base, quote, base, base_raw)
        function = "swapExactTokensForETH" if quote.native else "swapExactTokensForTokens"
        return _Swap(function, (base_raw, bound, *tail), 0, base, quote, base, base_raw)
    if quote.native:
        return _Swap("swapETHForExactTokens", (base_raw, *tail), bound, base, quote, quote, bound)
    function = "swapTokensForExactETH" if base.native else "swapTokensForExactTokens"
    return _Swap(function, (base_raw, bound, *tail), 0, base, quote, quote, bound)


async def from_settings(settings: Settings, *, provider: AsyncBaseProvider | None = None) -> Web3Venue:
    """The venue of `settings.web3`: its signer, an RPC connection (`provider`, else an HTTP one to
    `web3.rpc_url`), the router and the configured tokens. ConfigError naming the key if one is
    missing or wrong."""
    config = settings.web3
    signer = Signer.from_config(config)
    if provider is None:
        url = reveal(config.rpc_url)
        if not url:
            raise ConfigError("web3.rpc_url is not set: set CRYPTIQ_WEB3_RPC_URL to the node's http(s) URL")
        if not url.startswith(("http://", "https://")):
            raise ConfigError("web3.rpc_url must be an http(s):// URL (websockets are not supported)")
        provider = AsyncHTTPProvider(url)
    return await Web3Venue.connect(AsyncWeb3(provider), signer, config)


class Web3Venue:
    """One wallet on one chain; implements `execution.venue.Venue`. Build it with `connect`."""

    def __init__(
        self, w3: AsyncWeb3[Any], sender: TxSender, config: Web3Config, *, tokens: dict[str, Token],
        router: AsyncContract | None, weth: str | None,
    ) -> None:
        self.w3 = w3
        self.sender = sender
        self.config = config
        self.exchange = config.exchange
        self._tokens = tokens
        self._router = router
        self._weth = weth
        self._orders: dict[str, Order] = {}  # every order placed, by client order id
        self._tx: dict[str, str] = {}  # client order id -> transaction hash of its swap
        self._inflight: dict[str, _InFlight] = {}  # sent, receipt not seen yet
        self._transfers: dict[str, TransferResult] = {}
        self._transfer_tx: dict[str, str] = {}  # transfer id -> transaction hash
        self._token0: dict[str, str] = {}  # pair address -> its token0
        self._allowance_locks: dict[str, asyncio.Lock] = {}  # ERC-20 address -> held while spending it

    @classmethod
    async def connect(cls, w3: AsyncWeb3[Any], signer: Signer, config: Web3Config) -> Web3Venue:
        """Check the chain id, read the router's WETH and each token's decimals."""
        chain_id = await w3.eth.chain_id
        if chain_id != config.chain_id:
            raise ConfigError(
                f"web3.chain_id is {config.chain_id} but the node serves chain {chain_id}: "
                "fix web3.chain_id or web3.rpc_url"
            )
        router = weth = None
        if config.router_address is not None:
            address = w3.to_checksum_address(config.router_address)
            if not await w3.eth.get_code(address):
                raise ConfigError(f"web3.router_address {address} has no contract on chain {chain_id}")
            router = w3.eth.contract(address=address, abi=contracts.abi("MiniRouter"))
            weth = str(await router.functions.WETH().call())
        tokens = {config.native_symbol: Token(config.native_symbol, None, 18)}
        for symbol, raw_address in sorted(config.tokens.items()):
            address = w3.to_checksum_address(raw_address)
            erc20 = w3.eth.contract(address=address, abi=contracts.abi("TestToken"))
            try:
                decimals = int(await erc20.functions.decimals().call())
            except Exception as exc:  # any failure here means the address is not an ERC-20
                raise ConfigError(
                    f"web3.tokens.{symbol} = {address} does not answer decimals() on chain {chain_id}: "
                    "check the address"
                ) from exc
            tokens[symbol] = Token(symbol, address, decimals)
        return cls(w3, TxSender(w3, signer, config), config, tokens=tokens, router=router, weth=weth)

    @property
    def address(self) -> str:
        """The wallet's address."""
        return self.sender.address

    def token(self, symbol: str) -> Token | None:
        return self._tokens.get(symbol)

    def tx_hash(self, client_order_id: str) -> str | None:
        """The transaction hash of an order's swap, once sent."""
        return self._tx.get(client_order_id)

    def market(self, symbol: str) -> Market | None:
        try:
            base_symbol, quote_symbol = split_symbol(symbol)
        except ValueError:
            return None
        base, quote = self._tokens.get(base_symbol), self._tokens.get(quote_symbol)
        if base is None or quote is None or base == quote:
            return None
        step = Decimal(1).scaleb(-base.decimals)
        return Market(
            self.exchange, symbol, tick_size=Decimal(1).scaleb(-quote.decimals), step_size=step,
            min_quantity=step, min_notional=Decimal(0),
        )

    async def place(self, order: Order, *, now: int) -> list[OrderEvent]:
        cid = order.client_order_id
        if cid in self._orders:
            return []
        if order.status != "new":
            raise DomainError(f"order {cid} is {order.status}: only a new order can be placed")
        self._orders[cid] = order  # before any await: a concurrent place of the same id sends nothing
        try:
            return await self._place(order, now)
        except BaseException:
            if self._orders.get(cid) is order:
                # Not sent as far as we know (a node or network failure, an approval without a
                # receipt): forget the order so that placing it again tries again.
                del self._orders[cid]
            raise

    async def _place(self, order: Order, now: int) -> list[OrderEvent]:
        cid = order.client_order_id
        reasons = self._check(order, now)
        swap: _Swap | None = None
        if not reasons:
            swap, reasons = await self._plan(order, now)
        if swap is None:
            return self._reject(order, now, reasons)
        approval_fee = 0
        try:
            # One swap of a token at a time from approval to sending: an "exact" approval sets the
            # allowance, so another swap's approval must not land between ours and our swap.
            async with self._spending(swap.pay):
                approval_fee = await self._approve(swap)
                sent = await self.sender.send(self._swap_tx(swap))
        except TransactionRefusedError as exc:
            paid = [f"gas paid for the approval: {self._fee(None, approval_fee)} {self.config.native_symbol}"]
            return self._reject(order, now, [exc.reason, *(paid if approval_fee else [])])
        except TransactionRevertedError as exc:
            return self._reject(order, now, [f"approval of {swap.pay.symbol} for the router failed: {exc}"])
        self._tx[cid] = sent.tx_hash
        self._inflight[cid] = _InFlight(swap, sent, approval_fee)
        submitted, events = orders.submit(order, now=now, venue_order_id=sent.tx_hash)
        self._orders[cid] = submitted
        log.info("swap_sent", client_order_id=cid, tx_hash=sent.tx_hash, function=swap.function)
        return events + await self.settle(cid, now=now)

    async def settle(
        self, client_order_id: str, *, now: int, timeout: float | None = None
    ) -> list[OrderEvent]:
        """Wait for the receipt of a submitted order's swap and report what it did: `filled` (and the
        `OrderFilled`) or `rejected` with the revert reason. Nothing if it has no receipt yet (within
        `timeout`, default `web3.receipt_timeout_s`) or is already settled."""
        current = self._known(client_order_id)
        flight = self._inflight.get(client_order_id)
        if flight is None:
            return []
        try:
            mined = await self.sender.wait(flight.sent.tx_hash, timeout)
        except ReceiptTimeoutError:
            log.warning("swap_receipt_pending", client_order_id=client_order_id, tx_hash=flight.sent.tx_hash)
            return []
        del self._inflight[client_order_id]
        at = max(now, mined.timestamp_ms)
        fee = self._fee(mined, flight.extra_fee_wei)
        if not mined.ok:
            reason = await self.sender.why_reverted(flight.sent, mined)
            changed, events = orders.reject(current, now=at, reasons=[
                f"swap {mined.tx_hash} reverted: {reason}",
                f"gas paid: {fee} {self.config.native_symbol}",
            ])
            self._orders[client_order_id] = changed
            log.warning("swap_reverted", client_order_id=client_order_id, tx_hash=mined.tx_hash,
                        reason=reason)
            return events
        base_raw, quote_raw = await self._swapped(mined, flight.swap)
        base_amount, quote_amount = flight.swap.base.from_raw(base_raw), flight.swap.quote.from_raw(quote_raw)
        if base_amount == current.remaining:  # as the order wrote it, without the token's trailing zeros
            base_amount = current.remaining
        with localcontext(_MATH):
            price = (quote_amount / base_amount).quantize(Decimal(1).scaleb(-PRICE_PLACES))
        changed, events = orders.fill(
            current, now=at, price=price, quantity=base_amount, fee=fee, fee_asset=self.config.native_symbol,
            liquidity="taker", trade_id=mined.tx_hash,
        )
        self._orders[client_order_id] = changed
        log.info("swap_filled", client_order_id=client_order_id, tx_hash=mined.tx_hash, price=str(price),
                 quantity=str(base_amount), fee=str(fee))
        return events

    async def resume(self, order: Order, *, now: int) -> list[OrderEvent]:
        """Take over an order an earlier process sent (`submitted`, its venue order id the swap's
        transaction hash, e.g. from the order store) and settle it: the events of how it ended,
        nothing if it is still pending or already known here. The gas of an "exact" approval the
        earlier process sent for it is not in the fee."""
        cid = order.client_order_id
        if cid in self._orders:
            return []
        if order.status != "submitted" or not order.venue_order_id:
            raise DomainError(f"order {cid} is {order.status}: only a sent (submitted) order can be resumed")
        tx = await self.w3.eth.get_transaction(order.venue_order_id)  # type: ignore[arg-type]
        if tx["from"] != self.address:
            raise DomainError(
                f"order {cid}: transaction {order.venue_order_id} was not sent by {self.address}"
            )
        base_symbol, quote_symbol = split_symbol(order.symbol)
        base, quote = self._asset(base_symbol), self._asset(quote_symbol)
        swap = _Swap("resumed", (), int(tx["value"]), base, quote, base if order.side == "sell" else quote, 0)
        price = GasPrice(0, int(tx.get("maxFeePerGas", 0)), int(tx.get("maxPriorityFeePerGas", 0)))
        call = {"from": tx["from"], "to": tx["to"], "value": int(tx["value"]), "data": tx["input"]}
        sent = Sent(order.venue_order_id, int(tx["nonce"]), int(tx["gas"]), price, call)
        self._orders[cid] = order
        self._tx[cid] = order.venue_order_id
        self._inflight[cid] = _InFlight(swap, sent, 0)
        return await self.settle(cid, now=now)

    async def cancel(
        self, client_order_id: str, *, now: int, reason: str = "cancel requested"
    ) -> list[OrderEvent]:
        current = self._known(client_order_id)
        if not current.is_open:
            return []
        raise DomainError(
            f"order {client_order_id} is a sent transaction ({self._tx.get(client_order_id)}): it cannot be "
            "cancelled; settle() reports how it ends"
        )

    async def modify(
        self, client_order_id: str, *, now: int, quantity: Decimal | None = None,
        limit_price: Decimal | None = None, stop_price: Decimal | None = None,
    ) -> list[OrderEvent]:
        self._known(client_order_id)
        raise DomainError(f"order {client_order_id}: an on-chain swap cannot be amended")

    async def fetch_order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return [
            o for o in self._orders.values() if o.status in OPEN and (symbol is None or o.symbol == symbol)
        ]

    async def fetch_balances(self) -> dict[str, Decimal]:
        """The wallet's balance of the chain's coin and of every configured token."""
        return {symbol: await self.balance(symbol) for symbol in sorted(self._tokens)}

    async def balance(self, symbol: str) -> Decimal:
        token = self._asset(symbol)
        if token.address is None:
            raw = await self.w3.eth.get_balance(self.address)  # type: ignore[arg-type]
        else:
            raw = await self._erc20(token.address).functions.balanceOf(self.address).call()
        return token.from_raw(int(raw))

    async def transfer(self, asset: str, to: str, amount: Decimal, *, transfer_id: str) -> TransferResult:
        """Send `amount` of `asset` (the native symbol or a configured token) to `to` and wait for it.

        The same `transfer_id` never sends twice: it returns the first transfer's result (or waits
        for its receipt again). DomainError if the asset, address or amount is wrong or the transfer
        reverts (TransactionRevertedError) or would revert (TransactionRefusedError);
        ReceiptTimeoutError if it was sent but no receipt came in time.
        """
        if transfer_id in self._transfers:
            return self._transfers[transfer_id]
        token = self._asset(asset)
        if not self.w3.is_address(to):
            raise DomainError(f"transfer {transfer_id}: {to!r} is not an address")
        recipient = self.w3.to_checksum_address(to)
        if not (amount.is_finite() and amount > 0):
            raise DomainError(f"transfer {transfer_id}: amount must be a positive number, got {amount}")
        raw = token.to_raw(amount)
        if raw is None:
            raise DomainError(
                f"transfer {transfer_id}: {amount} is finer than {asset}'s {token.decimals} decimals"
            )
        tx_hash = self._transfer_tx.get(transfer_id)
        sent: Sent | None = None
        if tx_hash is None:
            if token.address is None:
                tx: dict[str, Any] = {"to": recipient, "value": raw}
            else:
                data = self._erc20(token.address).encode_abi("transfer", args=[recipient, raw])
                tx = {"to": token.address, "data": data}
            sent = await self.sender.send(tx)
            tx_hash = self._transfer_tx[transfer_id] = sent.tx_hash
        mined = await self.sender.wait(tx_hash)
        if not mined.ok:
            reason = await self.sender.why_reverted(sent, mined) if sent is not None else "see the receipt"
            raise TransactionRevertedError(mined, reason)
        result = TransferResult(
            transfer_id=transfer_id, tx_hash=tx_hash, asset=asset, to=recipient, amount=amount,
            fee=mined.fee, fee_asset=self.config.native_symbol, block_number=mined.block_number,
        )
        self._transfers[transfer_id] = result
        log.info("transfer_landed", transfer_id=transfer_id, tx_hash=tx_hash, asset=asset, amount=str(amount))
        return result

    # -- helpers -------------------------------------------------------------------------------

    def _check(self, order: Order, now: int) -> list[str]:
        """Every reason to refuse `order` before asking the chain anything."""
        if order.exchange != self.exchange:
            return [f"sent to {order.exchange}, but this venue is {self.exchange}"]
        request = OrderRequest(
            decision_id=order.decision_id, exchange=order.exchange, symbol=order.symbol, side=order.side,
            order_type=order.order_type, quantity=order.quantity, limit_price=order.limit_price,
            stop_price=order.stop_price, time_in_force=order.time_in_force, expire_at=order.expire_at,
        )
        reasons = validate_request(request, self.market(order.symbol), now=now)
        if order.order_type in ("stop", "stop_limit"):
            reasons.append(f"{order.order_type} orders are not supported on-chain")
        if order.order_type == "limit" and order.time_in_force == "GTC":
            reasons.append("a swap fills at once or not at all: a limit order must be IOC or FOK, not GTC")
        if self._router is None:
            reasons.append("web3.router_address is not set: no router to swap through")
        return reasons

    async def _plan(self, order: Order, now: int) -> tuple[_Swap | None, list[str]]:
        """The router call that carries out `order`, with its bounds; or the reasons it cannot."""
        assert self._router is not None  # _check refused the order otherwise
        base_symbol, quote_symbol = split_symbol(order.symbol)
        base, quote = self._tokens[base_symbol], self._tokens[quote_symbol]
        if (base.native or quote.native) and self._weth is None:
            return None, ["the router reports no WETH: ETH pairs cannot be swapped"]
        base_raw = base.to_raw(order.quantity)
        assert base_raw is not None  # validate_request checked the step size
        base_addr, quote_addr = self._path_address(base), self._path_address(quote)
        deadline = now // 1000 + self.config.deadline_s
        if order.expire_at is not None:
            deadline = min(deadline, order.expire_at // 1000)
        sell = order.side == "sell"
        path = [base_addr, quote_addr] if sell else [quote_addr, base_addr]
        try:
            if sell:
                quoted = (await self._router.functions.getAmountsOut(base_raw, path).call())[-1]
            else:
                quoted = (await self._router.functions.getAmountsIn(base_raw, path).call())[0]
        except Exception as exc:  # a revert (no pair, no liquidity) is an answer; anything else is raised
            reason = revert_reason(exc)
            if reason is None:
                raise
            return None, [f"the router cannot quote {order.symbol}: {reason}"]
        bound = self._bound(order, quote, quoted)
        tail = (path, self.address, deadline)
        return _route(order.side, base, quote, base_raw=base_raw, bound=bound, tail=tail), []

    def _bound(self, order: Order, quote: Token, quoted: int) -> int:
        """The least the swap must give (sell) or the most it may take (buy), in the quote's units:
        from the limit price, else the router's quote less (plus) the slippage tolerance."""
        sell = order.side == "sell"
        with localcontext(_MATH):
            if order.order_type == "limit":  # never looser than the limit price
                assert order.limit_price is not None
                bound = (order.quantity * order.limit_price).scaleb(quote.decimals)
                return int(bound.to_integral_value(rounding=ROUND_CEILING if sell else ROUND_FLOOR))
            slip = self.config.slippage_bps / _BPS
            bound = Decimal(quoted) * (1 - slip if sell else 1 + slip)
            return int(bound.to_integral_value(rounding=ROUND_FLOOR if sell else ROUND_CEILING))

    def _swap_tx(self, swap: _Swap) -> dict[str, Any]:
        assert self._router is not None
        data = self._router.encode_abi(swap.function, args=list(swap.args))
        return {"to": self._router.address, "data": data, "value": swap.value}

    async def _approve(self, swap: _Swap) -> int:
        """Give the router the allowance `swap` needs; the gas it cost in wei (0 if none was sent)."""
        if swap.pay.address is None:
            return 0
        assert self._router is not None
        erc20 = self._erc20(swap.pay.address)
        if self.config.approval == "unlimited":
            allowance = await erc20.functions.allowance(self.address, self._router.address).call()
            if allowance >= swap.pay_max:
                return 0
            amount = MAX_UINT256
        else:  # "exact": set (not add) this swap's amount; the swap is sent right after it is mined
            amount = swap.pay_max
        data = erc20.encode_abi("approve", args=[self._router.address, amount])
        _, mined = await self.sender.transact({"to": swap.pay.address, "data": data})
        return mined.fee_wei

    async def _swapped(self, mined: Mined, swap: _Swap) -> tuple[int, int]:
        """(base, quote) amounts the pair's Swap event reports: what was actually traded."""
        base_addr = self._path_address(swap.base)
        for entry in mined.logs:
            topics = entry["topics"]
            if not topics or topics[0].to_0x_hex() != _SWAP_TOPIC:
                continue
            pair = self.w3.eth.contract(address=entry["address"], abi=contracts.abi("MiniPair"))
            event = pair.events.Swap().process_log(entry)["args"]
            token0 = self._token0.get(entry["address"])
            if token0 is None:
                token0 = self._token0[entry["address"]] = str(await pair.functions.token0().call())
            amount0 = event["amount0In"] + event["amount0Out"]
            amount1 = event["amount1In"] + event["amount1Out"]
            return (amount0, amount1) if token0 == base_addr else (amount1, amount0)
        raise DomainError(
            f"swap {mined.tx_hash} succeeded but its receipt has no Swap event: check the router"
        )

    def _spending(self, token: Token) -> AbstractAsyncContextManager[Any]:
        if token.address is None:
            return nullcontext()
        return self._allowance_locks.setdefault(token.address, asyncio.Lock())

    def _fee(self, mined: Mined | None, extra_wei: int) -> Decimal:
        """Gas paid for `mined` plus `extra_wei`, in the chain's coin."""
        native = self._tokens[self.config.native_symbol]
        return native.from_raw((mined.fee_wei if mined is not None else 0) + extra_wei)

    def _path_address(self, token: Token) -> str:
        address = token.address if token.address is not None else self._weth
        assert address is not None
        return address

    def _erc20(self, address: str) -> AsyncContract:
        return self.w3.eth.contract(address=address, abi=contracts.abi("TestToken"))  # type: ignore[arg-type]

    def _asset(self, symbol: str) -> Token:
        token = self._tokens.get(symbol)
        if token is None:
            known = ", ".join(sorted(self._tokens))
            raise DomainError(
                f"unknown asset {symbol!r} on {self.exchange}: add it to web3.tokens (known: {known})"
            )
        return token

    def _known(self, client_order_id: str) -> Order:
        try:
            return self._orders[client_order_id]
        except KeyError:
            raise UnknownOrderError(self.exchange, client_order_id) from None

    def _reject(self, order: Order, now: int, reasons: list[str]) -> list[OrderEvent]:
        rejected, events = orders.reject(order, now=now, reasons=reasons)
        self._orders[order.client_order_id] = rejected
        log.info("order_rejected", client_order_id=order.client_order_id, reasons=reasons)
        return events
