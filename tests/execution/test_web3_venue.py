"""The on-chain venue end to end on eth-tester's in-process chain (py-evm): no network.

The module deploys two ERC-20s (TKA with 18 decimals, TKB with 6), WETH and the MiniRouter from
the committed artifacts, seeds a TKA/TKB pool and a WETH/TKB pool, and funds a wallet whose key
the venue signs with. Expected swap amounts are computed here from the pool reserves with the
constant-product formula (0.3% fee), independently of the router's own arithmetic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from pydantic import SecretStr
from web3 import AsyncWeb3
from web3.providers.eth_tester import AsyncEthereumTesterProvider

from config import Settings
from config.errors import ConfigError, DomainError
from config.settings import Web3Config
from execution import contracts
from execution.order import Order, client_order_id
from execution.venue import Venue
from execution.web3_chain import TransactionRefusedError
from execution.web3_venue import Web3Venue, from_settings
from topics.orders import OrderFilled, OrderUpdated

ETH = 10**18
TKA_UNIT = 10**18
TKB_UNIT = 10**6


class FrontRunnableProvider(AsyncEthereumTesterProvider):
    """eth-tester's provider, where a test can have another account's transaction land just before
    the next raw transaction the venue sends (after the venue's quote and gas estimate).

    eth-tester answers at once, without yielding to the event loop; here every request yields
    first, as a request over the network would, so concurrent sends really interleave."""

    before_next_send: Callable[[Any], Any] | None = None
    fail_next: str | None = None  # an RPC method whose next call fails as if the node were gone

    async def make_request(self, method: Any, params: Any) -> Any:
        await asyncio.sleep(0)
        if method == self.fail_next:
            self.fail_next = None
            raise ConnectionError(f"{method}: connection reset by the test")
        if method == "eth_sendRawTransaction" and self.before_next_send is not None:
            job, self.before_next_send = self.before_next_send, None
            job(self.ethereum_tester)
        return await super().make_request(method, params)


@dataclass
class Chain:
    provider: FrontRunnableProvider
    w3: AsyncWeb3[Any]
    deployer: str
    tka: Any
    tkb: Any
    weth: Any
    router: Any
    config: Web3Config

    async def fund(self, address: str, eth: int = 1_000, tka: int = 1_000, tkb: int = 100_000) -> None:
        sender = {"from": self.deployer}
        await self.send(self.w3.eth.send_transaction({**sender, "to": address, "value": eth * ETH}))
        await self.send(self.tka.functions.transfer(address, tka * TKA_UNIT).transact(sender))
        await self.send(self.tkb.functions.transfer(address, tkb * TKB_UNIT).transact(sender))

    async def send(self, pending: Any) -> Any:
        receipt = await self.w3.eth.wait_for_transaction_receipt(await pending)
        assert receipt["status"] == 1
        return receipt

    async def reserves(self, token_in: Any, token_out: Any) -> tuple[int, int]:
        """(reserve of token_in, reserve of token_out) of their pair."""
        pair_address = await self.router.functions.getPair(token_in.address, token_out.address).call()
        pair = self.w3.eth.contract(address=pair_address, abi=contracts.abi("MiniPair"))
        reserve0, reserve1, _ = await pair.functions.getReserves().call()
        token0 = await pair.functions.token0().call()
        return (reserve0, reserve1) if token0 == token_in.address else (reserve1, reserve0)

    async def now_ms(self) -> int:
        return int((await self.w3.eth.get_block("latest"))["timestamp"]) * 1000

    async def venue(self, **overrides: Any) -> tuple[Web3Venue, Any]:
        """A venue on a new funded wallet (its own nonces), with `overrides` on the config."""
        account = Account.create()
        await self.fund(account.address)
        config = self.config.model_copy(update={"private_key": SecretStr(account.key.hex()), **overrides})
        settings = Settings(web3=config)
        return await from_settings(settings, provider=self.provider), account


def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    return amount_in * 997 * reserve_out // (reserve_in * 1000 + amount_in * 997)


def amount_in(amount_out: int, reserve_in: int, reserve_out: int) -> int:
    return reserve_in * amount_out * 1000 // ((reserve_out - amount_out) * 997) + 1


async def deploy(w3: AsyncWeb3[Any], deployer: str, name: str, *args: Any) -> Any:
    artifact = contracts.artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx_hash = await factory.constructor(*args).transact({"from": deployer})
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash)
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


@pytest.fixture(scope="module")
async def chain() -> Chain:
    provider = FrontRunnableProvider()
    w3 = AsyncWeb3(provider)
    deployer = (await w3.eth.accounts)[0]
    weth = await deploy(w3, deployer, "WETH9")
    tka = await deploy(w3, deployer, "TestToken", "Token A", "TKA", 18, 10**9 * TKA_UNIT)
    tkb = await deploy(w3, deployer, "TestToken", "Token B", "TKB", 6, 10**12 * TKB_UNIT)
    router = await deploy(w3, deployer, "MiniRouter", weth.address)
    config = Web3Config(
        chain_id=await w3.eth.chain_id, router_address=router.address,
        tokens={"TKA": tka.address, "TKB": tkb.address},
    )
    made = Chain(provider, w3, deployer, tka, tkb, weth, router, config)
    deadline = (await made.now_ms()) // 1000 + 3600
    for token in (tka, tkb):
        await made.send(token.functions.approve(router.address, 2**255).transact({"from": deployer}))
    # TKA/TKB at 2 TKB per TKA; ETH/TKB at 2,000 TKB per ETH
    await made.send(router.functions.addLiquidity(
        tka.address, tkb.address, 10_000 * TKA_UNIT, 20_000 * TKB_UNIT, 0, 0, deployer, deadline
    ).transact({"from": deployer}))
    await made.send(router.functions.addLiquidityETH(
        tkb.address, 200_000 * TKB_UNIT, 0, 0, deployer, deadline
    ).transact({"from": deployer, "value": 100 * ETH}))
    return made


def new_order(
    venue: Web3Venue, decision: str, symbol: str, side: str, quantity: str, *, order_type: str = "market",
    limit_price: str | None = None, time_in_force: str = "IOC", exchange: str | None = None,
) -> Order:
    return Order(
        client_order_id=client_order_id(decision), decision_id=decision, exchange=exchange or venue.exchange,
        symbol=symbol, side=side, order_type=order_type, time_in_force=time_in_force,  # type: ignore[arg-type]
        quantity=Decimal(quantity), limit_price=None if limit_price is None else Decimal(limit_price),
        stop_price=Decimal(1) if order_type in ("stop", "stop_limit") else None, expire_at=None, status="new",
    )


async def tx_nonce(chain: Chain, tx_hash: str) -> int:
    return int((await chain.w3.eth.get_transaction(tx_hash))["nonce"])  # type: ignore[arg-type]


async def gas_paid(chain: Chain, address: str, start_block: int) -> int:
    """Wei the account paid for gas in the blocks after `start_block`."""
    paid = 0
    for number in range(start_block + 1, await chain.w3.eth.block_number + 1):
        block = await chain.w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"] == address:
                receipt = await chain.w3.eth.get_transaction_receipt(tx["hash"])
                paid += receipt["gasUsed"] * receipt["effectiveGasPrice"]
    return paid


# -- configuration --------------------------------------------------------------------------------


async def test_from_settings_names_the_missing_or_wrong_key(chain: Chain) -> None:
    with pytest.raises(ConfigError, match=r"web3\.private_key is not set"):
        await from_settings(Settings(web3=chain.config), provider=chain.provider)
    key = Account.create().key.hex()
    keyed = chain.config.model_copy(update={"private_key": SecretStr(key)})
    with pytest.raises(ConfigError, match=r"web3\.rpc_url is not set"):
        await from_settings(Settings(web3=keyed))
    with pytest.raises(ConfigError, match=r"web3\.chain_id is 1 but the node serves chain") as wrong:
        await from_settings(Settings(web3=keyed.model_copy(update={"chain_id": 1})), provider=chain.provider)
    assert key not in str(wrong.value)
    bad_key = "0x" + "zz" * 32
    with pytest.raises(ConfigError, match=r"web3\.private_key is not a valid private key") as invalid:
        await from_settings(Settings(web3=keyed.model_copy(update={"private_key": SecretStr(bad_key)})),
                            provider=chain.provider)
    assert bad_key not in str(invalid.value)
    venue = await from_settings(Settings(web3=keyed), provider=chain.provider)
    assert isinstance(venue, Venue)
    assert key not in repr(venue.sender.signer)
    assert venue.address == Account.from_key(key).address
    assert venue.market("TKA/TKB") is not None
    assert venue.market("ETH/TKB") is not None
    assert venue.market("XYZ/TKB") is None


# -- transfers and nonces -------------------------------------------------------------------------


async def test_eth_and_erc20_transfers_land_with_their_gas_as_fee(chain: Chain) -> None:
    venue, _ = await chain.venue()
    recipient = Account.create().address
    eth_before = await venue.balance("ETH")
    sent = await venue.transfer("ETH", recipient, Decimal("1.5"), transfer_id="t-eth")
    assert await chain.w3.eth.get_balance(recipient) == 3 * ETH // 2
    tx = await chain.w3.eth.get_transaction(sent.tx_hash)  # type: ignore[arg-type]
    assert tx["type"] == 2
    assert tx["gas"] == 25_200  # the estimate (21,000) x gas_margin 1.2
    parent = await chain.w3.eth.get_block(sent.block_number - 1)
    tip = min(await chain.w3.eth.max_priority_fee, 2 * 10**9)
    assert tx["maxPriorityFeePerGas"] == tip
    assert tx["maxFeePerGas"] == 2 * parent["baseFeePerGas"] + tip
    assert sent.fee > 0
    assert sent.fee_asset == "ETH"
    assert await venue.balance("ETH") == eth_before - Decimal("1.5") - sent.fee

    token = await venue.transfer("TKB", recipient, Decimal("12.345678"), transfer_id="t-tkb")
    assert await chain.tkb.functions.balanceOf(recipient).call() == 12_345_678
    assert await venue.balance("TKB") == Decimal(100_000) - Decimal("12.345678")
    assert await venue.balance("ETH") == eth_before - Decimal("1.5") - sent.fee - token.fee

    nonce = await venue.sender.next_nonce()
    again = await venue.transfer("ETH", recipient, Decimal("1.5"), transfer_id="t-eth")  # sends nothing
    assert again == sent
    assert await venue.sender.next_nonce() == nonce
    assert await chain.w3.eth.get_balance(recipient) == 3 * ETH // 2

    with pytest.raises(DomainError, match="unknown asset 'XYZ'"):
        await venue.transfer("XYZ", recipient, Decimal(1), transfer_id="t-x")
    with pytest.raises(DomainError, match="finer than TKB's 6 decimals"):
        await venue.transfer("TKB", recipient, Decimal("0.0000001"), transfer_id="t-fine")
    with pytest.raises(DomainError, match="is not an address"):
        await venue.transfer("ETH", "0x1234", Decimal(1), transfer_id="t-addr")
    with pytest.raises(TransactionRefusedError, match="would revert: TestToken: insufficient balance"):
        await venue.transfer("TKA", recipient, Decimal(10**6), transfer_id="t-much")
    with pytest.raises(TransactionRefusedError, match="cannot pay for it"):
        await venue.transfer("ETH", recipient, Decimal(10**6), transfer_id="t-much-eth")
    broke = new_order(venue, "broke", "ETH/TKB", "sell", "5000")
    [rejected] = await venue.place(broke, now=await chain.now_ms())
    assert rejected.status == "rejected"  # type: ignore[union-attr]
    assert "cannot pay for it" in rejected.reasons[0]  # type: ignore[union-attr]
    assert await venue.sender.next_nonce() == nonce


async def test_back_to_back_sends_take_consecutive_nonces_even_after_an_external_tx(chain: Chain) -> None:
    venue, account = await chain.venue()
    recipient = Account.create().address
    first = await venue.sender.next_nonce()
    assert first == 0
    results = await asyncio.gather(*(
        venue.transfer("ETH", recipient, Decimal(1), transfer_id=f"burst-{i}") for i in range(4)
    ))
    nonces = sorted([await tx_nonce(chain, r.tx_hash) for r in results])
    assert nonces == [0, 1, 2, 3]
    assert await chain.w3.eth.get_balance(recipient) == 4 * ETH

    # Another wallet with the same key sends one: the venue's counter (4) is now stale.
    external = account.sign_transaction({
        "to": recipient, "value": 1, "gas": 21_000, "nonce": 4, "chainId": chain.config.chain_id,
        "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9, "type": 2,
    })
    await chain.send(chain.w3.eth.send_raw_transaction(external.raw_transaction))
    assert await venue.sender.next_nonce() == 4  # it does not know yet
    after = await venue.transfer("TKB", recipient, Decimal(7), transfer_id="after-external")
    assert await tx_nonce(chain, after.tx_hash) == 5
    assert await chain.tkb.functions.balanceOf(recipient).call() == 7 * TKB_UNIT
    more = await asyncio.gather(
        venue.transfer("ETH", recipient, Decimal(1), transfer_id="tail-0"),
        venue.place(new_order(venue, "nonce-swap", "ETH/TKB", "sell", "0.5"), now=await chain.now_ms()),
    )
    assert more[1][-2].status == "filled"  # type: ignore[union-attr]
    assert sorted([await tx_nonce(chain, more[0].tx_hash), await tx_nonce(chain, venue.tx_hash(
        client_order_id("nonce-swap")) or "")]) == [6, 7]
    assert await chain.w3.eth.get_transaction_count(account.address) == 8


async def test_gas_above_the_fee_cap_refuses_to_send(chain: Chain) -> None:
    venue, _ = await chain.venue(max_fee_per_gas_gwei=Decimal("0.000000001"))  # 1 wei
    with pytest.raises(TransactionRefusedError, match=r"above web3\.max_fee_per_gas_gwei"):
        await venue.transfer("ETH", Account.create().address, Decimal(1), transfer_id="capped")
    order = new_order(venue, "capped-swap", "ETH/TKB", "sell", "1")
    events = await venue.place(order, now=await chain.now_ms())
    assert [(e.previous_status, e.status) for e in events] == [("new", "rejected")]  # type: ignore[union-attr]
    assert "max_fee_per_gas_gwei" in events[0].reasons[0]  # type: ignore[union-attr]
    assert await chain.w3.eth.get_transaction_count(venue.address) == 0

    cheap, _ = await chain.venue(max_priority_fee_gwei=Decimal("0.25"), max_fee_per_gas_gwei=Decimal(50))
    sent = await cheap.transfer("ETH", Account.create().address, Decimal(1), transfer_id="cheap")
    tx = await chain.w3.eth.get_transaction(sent.tx_hash)  # type: ignore[arg-type]
    assert tx["maxPriorityFeePerGas"] == 250_000_000
    parent = await chain.w3.eth.get_block(sent.block_number - 1)
    assert tx["maxFeePerGas"] == min(2 * parent["baseFeePerGas"] + 250_000_000, 50 * 10**9)


# -- swaps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "side", "quantity", "function"),
    [
        ("TKA/TKB", "sell", "10", "swapExactTokensForTokens"),
        ("TKA/TKB", "buy", "5", "swapTokensForExactTokens"),
        ("ETH/TKB", "sell", "1", "swapExactETHForTokens"),
        ("TKB/ETH", "buy", "150", "swapETHForExactTokens"),
        ("TKB/ETH", "sell", "300", "swapExactTokensForETH"),
        ("ETH/TKB", "buy", "0.25", "swapTokensForExactETH"),
    ],
)
async def test_market_swap_fills_at_the_constant_product_amounts(
    chain: Chain, symbol: str, side: str, quantity: str, function: str
) -> None:
    venue, _ = await chain.venue()
    base_symbol, quote_symbol = symbol.split("/")
    contract = {"TKA": chain.tka, "TKB": chain.tkb, "ETH": chain.weth}
    base, quote = contract[base_symbol], contract[quote_symbol]
    base_token, quote_token = venue.token(base_symbol), venue.token(quote_symbol)
    assert base_token is not None
    assert quote_token is not None
    base_raw = base_token.to_raw(Decimal(quantity))
    assert base_raw is not None
    if side == "sell":
        quote_raw = amount_out(base_raw, *await chain.reserves(base, quote))
    else:
        quote_raw = amount_in(base_raw, *await chain.reserves(quote, base))
    before = await venue.fetch_balances()
    start_block = await chain.w3.eth.block_number
    now = await chain.now_ms()
    order = new_order(venue, f"swap-{symbol}-{side}", symbol, side, quantity)

    events = await venue.place(order, now=now)

    updates = [e for e in events if isinstance(e, OrderUpdated)]
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert [(u.previous_status, u.status) for u in updates] == [("new", "submitted"), ("submitted", "filled")]
    tx_hash = venue.tx_hash(order.client_order_id)
    assert tx_hash is not None
    assert updates[0].venue_order_id == tx_hash
    tx = await chain.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    assert chain.router.decode_function_input(tx["input"])[0].fn_name == function
    [fill] = fills
    quote_amount = quote_token.from_raw(quote_raw)
    assert fill.quantity == Decimal(quantity)
    assert fill.price == (quote_amount / Decimal(quantity)).quantize(Decimal("1e-18"))
    assert fill.trade_id == tx_hash
    assert fill.leaves_quantity == 0
    assert fill.fee_asset == "ETH"
    assert fill.fee == Decimal(await gas_paid(chain, venue.address, start_block)) / ETH  # approval + swap
    assert fill.fee > 0
    assert fill.ts_event >= now

    after = await venue.fetch_balances()
    sign = 1 if side == "buy" else -1
    expected = dict(before)
    expected[base_symbol] += sign * Decimal(quantity)
    expected[quote_symbol] -= sign * quote_amount
    expected["ETH"] -= fill.fee
    assert after == expected
    assert (await venue.fetch_order(order.client_order_id)).status == "filled"  # type: ignore[union-attr]
    assert await venue.fetch_open_orders() == []


async def test_concurrent_swaps_spending_one_token_each_get_their_approval(chain: Chain) -> None:
    venue, _ = await chain.venue()
    now = await chain.now_ms()
    orders = [new_order(venue, f"together-{i}", "TKA/TKB", "sell", str(i + 1)) for i in range(3)]
    results = await asyncio.gather(*(venue.place(o, now=now) for o in orders))
    assert [r[-2].status for r in results] == ["filled"] * 3  # type: ignore[union-attr]
    assert await venue.balance("TKA") == Decimal(1_000 - 6)
    assert await chain.w3.eth.get_transaction_count(venue.address) == 6  # an approval before each swap
    assert await chain.tka.functions.allowance(venue.address, chain.router.address).call() == 0


async def test_unlimited_approval_is_given_once(chain: Chain) -> None:
    venue, _ = await chain.venue(approval="unlimited")
    first_block = await chain.w3.eth.block_number
    for i in range(2):
        events = await venue.place(new_order(venue, f"unlimited-{i}", "TKA/TKB", "sell", "1"),
                                   now=await chain.now_ms())
        assert events[-2].status == "filled"  # type: ignore[union-attr]
    assert await chain.w3.eth.get_transaction_count(venue.address) == 3  # one approval, two swaps
    assert await chain.w3.eth.block_number == first_block + 3


async def test_limit_swap_whose_minimum_cannot_be_met_is_rejected_before_sending(chain: Chain) -> None:
    venue, _ = await chain.venue()
    # The pool pays about 2,000 TKB per ETH: asking at least 3,000 makes amountOutMin unreachable.
    order = new_order(venue, "greedy", "ETH/TKB", "sell", "1", order_type="limit", limit_price="3000")
    events = await venue.place(order, now=await chain.now_ms())
    [rejected] = events
    assert isinstance(rejected, OrderUpdated)
    assert rejected.status == "rejected"
    assert rejected.reasons == ["the transaction would revert: UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"]
    assert await chain.w3.eth.get_transaction_count(venue.address) == 0
    assert venue.tx_hash(order.client_order_id) is None

    fair = new_order(venue, "fair", "ETH/TKB", "sell", "1", order_type="limit", limit_price="1900")
    assert (await venue.place(fair, now=await chain.now_ms()))[-2].status == "filled"  # type: ignore[union-attr]


async def test_swap_that_reverts_on_chain_is_rejected_with_the_reason(chain: Chain) -> None:
    """A front-runner's big sell lands between our quote and our swap: our amountOutMin (the quote
    less 0.5%) is out of reach when the swap is mined, so it reverts and its gas is paid."""
    venue, _ = await chain.venue()
    order = new_order(venue, "front-run", "ETH/TKB", "sell", "5")
    eth_before = await venue.balance("ETH")
    tkb_before = await venue.balance("TKB")
    deadline = (await chain.now_ms()) // 1000 + 600
    front_run = chain.router.encode_abi(
        "swapExactETHForTokens", args=[0, [chain.weth.address, chain.tkb.address], chain.deployer, deadline]
    )
    chain.provider.before_next_send = lambda tester: tester.send_transaction({
        "from": chain.deployer, "to": chain.router.address, "value": 20 * ETH, "gas": 300_000,
        "data": front_run,
    })

    events = await venue.place(order, now=await chain.now_ms())

    assert chain.provider.before_next_send is None  # the front-runner went first
    assert [(e.previous_status, e.status) for e in events] == [  # type: ignore[union-attr]
        ("new", "submitted"), ("submitted", "rejected")
    ]
    tx_hash = venue.tx_hash(order.client_order_id)
    receipt = await chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    assert receipt["status"] == 0
    gas = Decimal(receipt["gasUsed"] * receipt["effectiveGasPrice"]).scaleb(-18)
    assert events[-1].reasons == [  # type: ignore[union-attr]
        f"swap {tx_hash} reverted: UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT", f"gas paid: {gas} ETH",
    ]
    assert await venue.balance("ETH") == eth_before - gas  # the 5 ETH came back, the gas did not
    assert await venue.balance("TKB") == tkb_before
    assert (await venue.fetch_order(order.client_order_id)).status == "rejected"  # type: ignore[union-attr]


async def test_settle_reports_a_swap_whose_receipt_came_late(chain: Chain) -> None:
    venue, _ = await chain.venue(receipt_timeout_s=0.2)
    tester = chain.provider.ethereum_tester
    order = new_order(venue, "late", "ETH/TKB", "sell", "1")
    tester.disable_auto_mine_transactions()
    try:
        events = await venue.place(order, now=await chain.now_ms())
        assert [e.status for e in events] == ["submitted"]  # type: ignore[union-attr]
        open_orders = await venue.fetch_open_orders("ETH/TKB")
        assert [o.client_order_id for o in open_orders] == [order.client_order_id]
        with pytest.raises(DomainError, match="cannot be cancelled"):
            await venue.cancel(order.client_order_id, now=await chain.now_ms())
        tester.mine_blocks(1)
    finally:
        tester.enable_auto_mine_transactions()
    settled = await venue.settle(order.client_order_id, now=await chain.now_ms())
    assert [type(e).__name__ for e in settled] == ["OrderUpdated", "OrderFilled"]
    assert settled[0].status == "filled"  # type: ignore[union-attr]
    assert await venue.settle(order.client_order_id, now=await chain.now_ms()) == []
    assert await venue.fetch_open_orders() == []


async def test_a_restarted_venue_resumes_a_sent_swap_from_its_submitted_event(chain: Chain) -> None:
    venue, account = await chain.venue(receipt_timeout_s=0.2)
    tester = chain.provider.ethereum_tester
    order = new_order(venue, "resumed", "ETH/TKB", "sell", "2")
    tester.disable_auto_mine_transactions()
    try:
        [submitted] = await venue.place(order, now=await chain.now_ms())
        tester.mine_blocks(1)
    finally:
        tester.enable_auto_mine_transactions()
    assert isinstance(submitted, OrderUpdated)
    # A new process on the same key knows the order only from its last event.
    config = chain.config.model_copy(update={"private_key": SecretStr(account.key.hex())})
    restarted = await from_settings(Settings(web3=config), provider=chain.provider)
    events = await restarted.resume(Order.from_event(submitted), now=await chain.now_ms())
    updated, filled = events
    assert isinstance(updated, OrderUpdated)
    assert isinstance(filled, OrderFilled)
    assert updated.status == "filled"
    assert filled.trade_id == submitted.venue_order_id
    receipt = await chain.w3.eth.get_transaction_receipt(submitted.venue_order_id)  # type: ignore[arg-type]
    assert filled.fee == Decimal(receipt["gasUsed"] * receipt["effectiveGasPrice"]).scaleb(-18)
    assert filled.quantity == 2
    assert await restarted.resume(Order.from_event(submitted), now=await chain.now_ms()) == []
    assert await restarted.place(order, now=await chain.now_ms()) == []  # known: nothing sent
    assert await chain.w3.eth.get_transaction_count(account.address) == 1
    assert await venue.settle(order.client_order_id, now=await chain.now_ms()) == events


async def test_placing_the_same_client_order_id_again_sends_nothing(chain: Chain) -> None:
    venue, _ = await chain.venue()
    order = new_order(venue, "once", "ETH/TKB", "sell", "1")
    now = await chain.now_ms()
    events = await venue.place(order, now=now)
    assert events[-2].status == "filled"  # type: ignore[union-attr]
    nonce = await venue.sender.next_nonce()
    balances = await venue.fetch_balances()
    assert await venue.place(order, now=now) == []
    assert await asyncio.gather(venue.place(order, now=now), venue.place(order, now=now)) == [[], []]
    assert await venue.sender.next_nonce() == nonce
    assert await chain.w3.eth.get_transaction_count(venue.address) == nonce
    assert await venue.fetch_balances() == balances
    assert (await venue.fetch_order(order.client_order_id)).status == "filled"  # type: ignore[union-attr]

    bad = new_order(venue, "bad-once", "ETH/TKB", "sell", "0")
    assert (await venue.place(bad, now=now))[0].status == "rejected"  # type: ignore[union-attr]
    assert await venue.place(bad, now=now) == []


async def test_an_order_that_failed_before_sending_can_be_placed_again(chain: Chain) -> None:
    venue, _ = await chain.venue()
    order = new_order(venue, "retry", "ETH/TKB", "sell", "1")
    chain.provider.fail_next = "eth_estimateGas"
    with pytest.raises(ConnectionError):
        await venue.place(order, now=await chain.now_ms())
    assert await venue.fetch_order(order.client_order_id) is None
    assert await chain.w3.eth.get_transaction_count(venue.address) == 0
    events = await venue.place(order, now=await chain.now_ms())
    assert events[-2].status == "filled"  # type: ignore[union-attr]
    assert await chain.w3.eth.get_transaction_count(venue.address) == 1


@pytest.mark.parametrize(
    "case",
    [
        ("zero", "ETH/TKB", "0", {}, "quantity must be positive, got 0"),
        ("negative", "ETH/TKB", "-1", {}, "quantity must be positive, got -1"),
        ("nan", "ETH/TKB", "NaN", {}, "quantity must be a finite number, got NaN"),
        ("infinite", "TKA/TKB", "Infinity", {}, "quantity must be a finite number, got Infinity"),
        ("unknown-symbol", "XYZ/TKB", "1", {}, "unknown symbol XYZ/TKB on uniswap_v2"),
        ("too-fine", "TKB/ETH", "0.0000001", {}, "finer than the step size 0.000001"),
        ("stop", "ETH/TKB", "1", {"order_type": "stop"}, "stop orders are not supported on-chain"),
        ("gtc-limit", "ETH/TKB", "1", {"order_type": "limit", "limit_price": "1000", "time_in_force": "GTC"},
         "a limit order must be IOC or FOK"),
        ("elsewhere", "ETH/TKB", "1", {"exchange": "binance"},
         "sent to binance, but this venue is uniswap_v2"),
    ],
)
async def test_bad_orders_are_rejected_with_reasons_before_any_transaction(
    chain: Chain, case: tuple[str, str, str, dict[str, Any], str]
) -> None:
    decision, symbol, quantity, extra, reason = case
    venue, _ = await chain.venue()
    order = new_order(venue, decision, symbol, "sell", quantity, **extra)
    events = await venue.place(order, now=await chain.now_ms())
    [rejected] = events
    assert isinstance(rejected, OrderUpdated)
    assert rejected.status == "rejected"
    assert any(reason in r for r in rejected.reasons), rejected.reasons
    assert await chain.w3.eth.get_transaction_count(venue.address) == 0
