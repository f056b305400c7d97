"""Sending transactions from one key: signing, nonces, EIP-1559 fees, gas and receipts.

* `Signer` holds the private key from `web3.private_key` and signs locally with eth_account; the
  node only ever receives raw signed transactions (`send_raw_transaction`), never a request to
  sign for an unlocked account. Its repr shows the address, never the key.
* `TxSender` owns the account's nonce. The next nonce is a local counter, seeded from
  `get_transaction_count(address, "pending")`; fee look-up, gas estimate, signing and sending run
  under one asyncio lock, so concurrent sends get consecutive nonces and none is skipped. A node
  that answers "nonce too low" (another wallet used the key) re-seeds the counter and the send is
  tried once more; any other send failure forgets the counter, so the next send asks the chain.
* Fees are EIP-1559: priority fee = the node's suggestion capped at `web3.max_priority_fee_gwei`;
  max fee = 2 x the latest base fee + the priority fee, capped at `web3.max_fee_per_gas_gwei`. A
  base fee above that cap refuses to send (`TransactionRefusedError`) rather than leave a transaction
  stuck. Gas limit = the node's estimate x `web3.gas_margin`.
* A transaction the node says would revert, or that the account cannot pay for (at the gas
  estimate), is refused before it is signed: `TransactionRefusedError` with the revert reason or
  the node's words, no nonce used, no gas paid. One that reverts when
  mined is `TransactionRevertedError`; its reason is recovered by replaying the call on the block it
  was mined in. No receipt within the timeout is a `ReceiptTimeoutError` (retriable: wait again).

Runs on `AsyncWeb3` with any async provider: `AsyncHTTPProvider` in production and eth-tester's
`AsyncEthereumTesterProvider` in the tests, so both run the same code, without threads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

import structlog
from eth_account import Account
from eth_account.datastructures import SignedTransaction
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3
from web3.exceptions import TimeExhausted

from config.errors import ConfigError, DomainError, RetriableError
from config.settings import Web3Config, reveal

log = structlog.get_logger("cryptiq.execution.web3")

WEI_PER_GWEI = 10**9
# What nodes say when a nonce is already used (geth, erigon, anvil) or, in eth-tester, not the next one.
# ("already known" is not one: the node holds that very transaction, so it was sent.)
_NONCE_ERRORS = ("nonce too low", "invalid transaction nonce", "nonce too high")
# What nodes (geth: "insufficient funds for gas * price + value") and eth-tester say when the
# account cannot pay the value plus the gas.
_FUNDS_ERRORS = ("insufficient funds", "does not have enough balance")


class TransactionRefusedError(DomainError):
    """Nothing was sent: the transaction would revert, or the gas price is above the configured cap."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransactionRevertedError(DomainError):
    """The transaction was mined and reverted; its gas is paid."""

    def __init__(self, mined: Mined, reason: str) -> None:
        super().__init__(f"transaction {mined.tx_hash} reverted: {reason}")
        self.mined = mined
        self.reason = reason


class ReceiptTimeoutError(RetriableError):
    """The transaction was sent but no receipt came within the timeout: wait for it again."""

    def __init__(self, tx_hash: str, timeout: float) -> None:
        super().__init__(f"no receipt for {tx_hash} within {timeout:g}s: it may still be mined, wait again")
        self.tx_hash = tx_hash


class Signer:
    """The account's private key, used only to sign transactions locally."""

    def __init__(self, private_key: str) -> None:
        try:
            self._account: LocalAccount = Account.from_key(private_key)
        except (ValueError, TypeError):  # the message would echo the key: keep it out
            raise ConfigError(
                "web3.private_key is not a valid private key: expected 32 bytes as 64 hex digits"
            ) from None

    @classmethod
    def from_config(cls, config: Web3Config) -> Signer:
        key = reveal(config.private_key)
        if not key:
            raise ConfigError("web3.private_key is not set: set CRYPTIQ_WEB3_PRIVATE_KEY")
        return cls(key)

    @property
    def address(self) -> str:
        return str(self._account.address)

    def sign(self, tx: dict[str, Any]) -> SignedTransaction:
        return self._account.sign_transaction(tx)

    def __repr__(self) -> str:
        return f"Signer({self.address})"


@dataclass(frozen=True, slots=True)
class GasPrice:
    """EIP-1559 fee fields of one transaction, in wei."""

    base_fee: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


@dataclass(frozen=True, slots=True)
class Sent:
    """A signed transaction the node accepted."""

    tx_hash: str
    nonce: int
    gas_limit: int
    gas_price: GasPrice
    tx: dict[str, Any]  # what was signed, less the signature: replayed to find a revert reason


@dataclass(frozen=True, slots=True)
class Mined:
    """The receipt of a mined transaction, as much of it as the venue needs."""

    tx_hash: str
    ok: bool
    block_number: int
    timestamp_ms: int  # the block's time
    gas_used: int
    effective_gas_price: int
    logs: tuple[Any, ...]

    @property
    def fee_wei(self) -> int:
        return self.gas_used * self.effective_gas_price

    @property
    def fee(self) -> Decimal:
        """Gas paid, in the chain's own coin (ETH)."""
        return Decimal(self.fee_wei).scaleb(-18)


def revert_reason(exc: BaseException) -> str | None:
    """The reason if `exc` says the EVM reverted, else None.

    Nodes answer with a JSON-RPC error that web3 raises as `ContractLogicError`; eth-tester raises
    its own `TransactionFailed`. Both say "execution reverted[: reason]", and matching the message
    keeps eth-tester a test-only dependency.
    """
    text = " ".join(str(exc).split())
    marker = "execution reverted"
    at = text.lower().find(marker)
    if at < 0:
        return None
    reason = text[at + len(marker):].lstrip(" :").strip("'\"")
    return reason or "reverted without a reason"


def _is_nonce_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _NONCE_ERRORS)


def gwei_to_wei(gwei: Decimal) -> int:
    return int((gwei * WEI_PER_GWEI).to_integral_value(rounding="ROUND_FLOOR"))


class TxSender:
    """Signs and sends the account's transactions and waits for their receipts."""

    def __init__(self, w3: AsyncWeb3[Any], signer: Signer, config: Web3Config) -> None:
        self.w3 = w3
        self.signer = signer
        self.config = config
        self.chain_id = config.chain_id
        self._lock = asyncio.Lock()
        self._nonce: int | None = None  # the next nonce to use; None: ask the chain

    @property
    def address(self) -> str:
        return self.signer.address

    async def next_nonce(self) -> int:
        """The nonce the next transaction will use (seeds the counter from the chain if unset)."""
        async with self._lock:
            return await self._seeded_nonce()

    async def resync_nonce(self) -> int:
        """Forget the local counter and take the chain's pending transaction count."""
        async with self._lock:
            self._nonce = None
            return await self._seeded_nonce()

    async def gas_price(self) -> GasPrice:
        """EIP-1559 fees for a transaction now, within the configured caps (else TransactionRefusedError)."""
        block = await self.w3.eth.get_block("latest")
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:
            raise TransactionRefusedError("the chain reports no base fee: only EIP-1559 chains are supported")
        cap = gwei_to_wei(self.config.max_fee_per_gas_gwei)
        if base_fee > cap:
            raise TransactionRefusedError(
                f"base fee {Decimal(base_fee).scaleb(-9)} gwei is above web3.max_fee_per_gas_gwei "
                f"({self.config.max_fee_per_gas_gwei}): wait for cheaper gas or raise the cap"
            )
        suggested = await self.w3.eth.max_priority_fee
        tip = min(int(suggested), gwei_to_wei(self.config.max_priority_fee_gwei))
        max_fee = min(2 * base_fee + tip, cap)
        return GasPrice(
            base_fee=base_fee, max_fee_per_gas=max_fee, max_priority_fee_per_gas=min(tip, max_fee - base_fee)
        )

    async def send(self, tx: dict[str, Any]) -> Sent:
        """Estimate, price, sign and send `tx` ({to, value, data}) with the next nonce.

        TransactionRefusedError (nothing sent) if it would revert or gas is above the cap.
        """
        call = {"from": self.address, "chainId": self.chain_id, "value": 0, **tx}
        async with self._lock:
            price = await self.gas_price()
            gas_limit = await self._estimate(call)
            unsigned = {
                key: value for key, value in call.items() if key != "from"
            } | {
                "type": 2, "gas": gas_limit, "maxFeePerGas": price.max_fee_per_gas,
                "maxPriorityFeePerGas": price.max_priority_fee_per_gas,
            }
            for attempt in (1, 2):
                unsigned["nonce"] = await self._seeded_nonce()
                signed = self.signer.sign(unsigned)
                try:
                    await self.w3.eth.send_raw_transaction(signed.raw_transaction)
                # Any failure: the node may or may not hold the transaction, so the counter is
                # forgotten; a stale nonce is re-seeded and tried once more, anything else is raised.
                except Exception as exc:
                    self._nonce = None
                    if attempt == 1 and _is_nonce_error(exc):
                        log.warning("nonce_resynced", address=self.address, tried=unsigned["nonce"],
                                    error=" ".join(str(exc).split())[:200])
                        continue
                    raise
                self._nonce = unsigned["nonce"] + 1
                tx_hash = signed.hash.to_0x_hex()
                log.info("transaction_sent", tx_hash=tx_hash, nonce=unsigned["nonce"], gas=gas_limit,
                         max_fee_per_gas=price.max_fee_per_gas)
                return Sent(tx_hash=tx_hash, nonce=unsigned["nonce"], gas_limit=gas_limit, gas_price=price,
                            tx=call)
        raise AssertionError("unreachable: the second attempt returns or raises")  # pragma: no cover

    async def wait(self, tx_hash: str, timeout: float | None = None) -> Mined:
        """The receipt of `tx_hash` (ReceiptTimeoutError if none within `timeout` seconds)."""
        limit = self.config.receipt_timeout_s if timeout is None else timeout
        try:
            receipt = await self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=limit, poll_latency=min(1.0, limit / 10)  # type: ignore[arg-type]
            )
        except TimeExhausted:
            raise ReceiptTimeoutError(tx_hash, limit) from None
        block = await self.w3.eth.get_block(receipt["blockNumber"])
        return Mined(
            tx_hash=tx_hash, ok=receipt["status"] == 1, block_number=receipt["blockNumber"],
            timestamp_ms=int(block["timestamp"]) * 1000, gas_used=receipt["gasUsed"],
            effective_gas_price=receipt["effectiveGasPrice"], logs=tuple(receipt["logs"]),
        )

    async def why_reverted(self, sent: Sent, mined: Mined) -> str:
        """The revert reason of a failed transaction: its call replayed on the block it was mined in."""
        if mined.gas_used >= sent.gas_limit:
            return f"out of gas (used all {sent.gas_limit})"
        call = {key: sent.tx[key] for key in ("from", "to", "value", "data") if key in sent.tx}
        try:
            await self.w3.eth.call(call, block_identifier=mined.block_number)  # type: ignore[arg-type]
        except Exception as exc:  # only a revert is an answer here; anything else is raised
            reason = revert_reason(exc)
            if reason is None:
                raise
            return reason
        return "reverted on-chain; its call succeeds when replayed, so no reason could be recovered"

    async def transact(self, tx: dict[str, Any], timeout: float | None = None) -> tuple[Sent, Mined]:
        """Send `tx` and wait for it; TransactionRevertedError (with the reason) if it reverted."""
        sent = await self.send(tx)
        mined = await self.wait(sent.tx_hash, timeout)
        if not mined.ok:
            raise TransactionRevertedError(mined, await self.why_reverted(sent, mined))
        return sent, mined

    async def _seeded_nonce(self) -> int:
        if self._nonce is None:
            self._nonce = await self.w3.eth.get_transaction_count(self.address, "pending")  # type: ignore[arg-type]
            log.info("nonce_seeded", address=self.address, nonce=self._nonce)
        return self._nonce

    async def _estimate(self, call: dict[str, Any]) -> int:
        try:
            estimate = await self.w3.eth.estimate_gas(call)  # type: ignore[arg-type]
        except Exception as exc:  # a revert or a lack of funds is an answer; anything else is raised
            reason = revert_reason(exc)
            if reason is not None:
                raise TransactionRefusedError(f"the transaction would revert: {reason}") from None
            text = " ".join(str(exc).split())
            if any(marker in text.lower() for marker in _FUNDS_ERRORS):
                raise TransactionRefusedError(f"the account cannot pay for it: {text[:200]}") from None
            raise
        return int((Decimal(estimate) * self.config.gas_margin).to_integral_value(rounding=ROUND_CEILING))
