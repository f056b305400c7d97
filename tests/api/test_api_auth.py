"""Access control of the ops API: logins, roles, the TOTP step, audit rows and the commands on Kafka."""

from __future__ import annotations

import json
import uuid

from apitools import PASSWORD, ApiUnderTest, bearer

from busio import collect, end_offsets
from memory.audit import AuditTrail
from topics.registry import CONTROL_COMMANDS, RISK_CONTROL

KILL = {"engaged": True, "reason": "exchange incident"}


async def test_reads_need_a_token_and_a_viewer_can_read(api: ApiUnderTest) -> None:
    async with api.client() as client:
        anonymous = await client.get("/state")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        forged = await client.get("/state", headers=bearer("not.a.token"))
        assert forged.status_code == 401
        token = await api.token("vera")
        for path in ("/state", "/agents", "/regimes", "/strategies", "/positions", "/decisions", "/alerts"):
            response = await client.get(path, headers=bearer(token))
            assert response.status_code == 200, (path, response.text)
        me = (await client.get("/me", headers=bearer(token))).json()
        assert (me["name"], me["role"]) == ("vera", "viewer")


async def test_a_wrong_password_is_refused(api: ApiUnderTest) -> None:
    async with api.client() as client:
        wrong = await client.post("/auth/token", data={"username": "vera", "password": "not it at all"})
        unknown = await client.post("/auth/token", data={"username": "nobody", "password": PASSWORD})
    assert wrong.status_code == 401
    assert unknown.status_code == 401
    assert "access_token" not in wrong.text


async def test_a_viewer_cannot_engage_the_kill_switch(api: ApiUnderTest) -> None:
    token = await api.token("vera")
    async with api.client() as client:
        response = await client.post("/commands/kill-switch", headers=bearer(token),
                                     json={**KILL, "totp": api.code("vera")})
    assert response.status_code == 403
    assert "operator" in response.json()["detail"]


async def test_an_operator_needs_the_right_totp_code_and_the_action_is_audited_and_published(
    api: ApiUnderTest,
) -> None:
    token = await api.token("otto")
    start = await end_offsets(api.kafka, RISK_CONTROL.name)
    trail = AuditTrail(api.engine)
    async with api.client() as client:
        missing = await client.post("/commands/kill-switch", headers=bearer(token), json=KILL)
        assert missing.status_code == 422  # the code is a required field
        wrong_code = str((int(api.code("otto")) + 1) % 1_000_000).zfill(6)
        wrong = await client.post("/commands/kill-switch", headers=bearer(token),
                                  json={**KILL, "totp": wrong_code})
        assert wrong.status_code == 403
        assert "TOTP" in wrong.json()["detail"]
        refused = await trail.recent(actor="otto", action="kill_switch.refused")
        assert refused
        assert refused[0].detail["why"] == "wrong TOTP code"

        right = await client.post("/commands/kill-switch", headers=bearer(token),
                                  json={**KILL, "totp": api.code("otto")})
    assert right.status_code == 200, right.text
    accepted = right.json()
    assert (accepted["topic"], accepted["key"]) == ("risk.control", "kill_switch")

    rows = await trail.recent(actor="otto", action="kill_switch")
    assert [row.id for row in rows] == [accepted["audit_id"]]
    assert rows[0].detail["engaged"] is True
    assert rows[0].detail["event_id"] == accepted["event_id"]

    records = await collect(api.kafka, RISK_CONTROL.name, start=start,
                            until=lambda got: any(r.key == b"kill_switch" for r in got))
    events = [e for e in (json.loads(r.value) for r in records if r.key == b"kill_switch")
              if e["payload"]["actor"] == "otto"]  # one event, published once
    assert [e["event_id"] for e in events] == [accepted["event_id"]]
    assert events[0]["type"] == "KillSwitchChanged"
    assert events[0]["payload"]["engaged"] is True
    assert events[0]["payload"]["actor"] == "otto"
    assert events[0]["payload"]["reason"] == "exchange incident"


async def test_a_totp_code_authorises_one_action_only(api: ApiUnderTest) -> None:
    token = await api.token("otto")
    release = {"engaged": False, "reason": "drill over"}
    async with api.client() as client:
        code = api.next_code("otto")
        kill = "/commands/kill-switch"
        first = await client.post(kill, headers=bearer(token), json={**release, "totp": code})
        again = await client.post(kill, headers=bearer(token), json={**release, "totp": code})
        fresh = api.next_code("otto")
        later = await client.post(kill, headers=bearer(token), json={**release, "totp": fresh})
    assert first.status_code == 200, first.text
    assert again.status_code == 403
    assert "used already" in again.json()["detail"]
    assert later.status_code == 200, later.text
    refused = await AuditTrail(api.engine).recent(actor="otto", action="kill_switch.refused")
    assert refused[0].detail["why"] == "TOTP code used before"


async def test_strategy_switch_and_agent_pause_go_to_control_commands(api: ApiUnderTest) -> None:
    token = await api.token("ada")  # an admin may do what an operator may
    # Names no agent of this test session uses: agents read control.commands and would obey.
    tag = uuid.uuid4().hex[:8].upper()
    stream, agent = f"binance:PIN{tag}/USDT:1h", f"technical-{tag.lower()}"
    start = await end_offsets(api.kafka, CONTROL_COMMANDS.name)
    async with api.client() as client:
        unknown = await client.post("/commands/strategy", headers=bearer(token), json={
            "stream": stream, "strategy": "no_such_strategy", "reason": "x",
            "totp": api.code("ada"),
        })
        assert unknown.status_code == 422
        switched = await client.post("/commands/strategy", headers=bearer(token), json={
            "stream": stream, "strategy": "sma_cross", "params": {"fast": 5, "slow": 20},
            "reason": "trend day", "totp": api.code("ada"),
        })
        assert switched.status_code == 200, switched.text
        pause = {"paused": True, "reason": "model retrain", "totp": api.next_code("ada")}
        paused = await client.post(f"/commands/agents/{agent}/pause", headers=bearer(token), json=pause)
        assert paused.status_code == 200, paused.text

    records = await collect(api.kafka, CONTROL_COMMANDS.name, start=start, until=lambda got: len(got) >= 2)
    by_type = {json.loads(r.value)["type"]: (r.key, json.loads(r.value)) for r in records}
    key, override = by_type["StrategyOverridden"]
    assert key == stream.encode()
    assert override["payload"]["strategy"] == "sma_cross"
    assert override["payload"]["params"] == {"fast": 5, "slow": 20}
    key, pause = by_type["AgentPauseChanged"]
    assert key == agent.encode()
    assert (pause["payload"]["agent"], pause["payload"]["paused"]) == (agent, True)

    actions = {row.action for row in await AuditTrail(api.engine).recent(actor="ada")}
    assert {"strategy_switch", "agent_pause"} <= actions


async def test_only_an_admin_reads_the_audit_trail(api: ApiUnderTest) -> None:
    async with api.client() as client:
        as_operator = await client.get("/audit", headers=bearer(await api.token("otto")))
        as_admin = await client.get("/audit", headers=bearer(await api.token("ada")))
    assert as_operator.status_code == 403
    assert as_admin.status_code == 200
    assert all({"ts", "actor", "action"} <= set(row) for row in as_admin.json())


async def test_tokens_expire(api: ApiUnderTest) -> None:
    token = await api.token("vera")
    async with api.client() as client:
        assert (await client.get("/me", headers=bearer(token))).status_code == 200
        api.clock.advance(api.settings.api.token_ttl_s + 1)
        try:
            expired = await client.get("/me", headers=bearer(token))
        finally:
            api.clock.advance(-(api.settings.api.token_ttl_s + 1))
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]


async def test_failed_logins_are_rate_limited_per_user(api: ApiUnderTest) -> None:
    limit = api.settings.api.login_attempts
    async with api.client() as client:
        for _ in range(limit):
            response = await client.post("/auth/token", data={"username": "otto", "password": "guess-guess"})
            assert response.status_code == 401
        # Now even the right password is refused until the window passes.
        blocked = await client.post("/auth/token", data={"username": "otto", "password": PASSWORD})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
        other_user = await client.post("/auth/token", data={"username": "ada", "password": PASSWORD})
        assert other_user.status_code == 200
        api.clock.advance(api.settings.api.login_window_s + 1)
        try:
            after = await client.post("/auth/token", data={"username": "otto", "password": PASSWORD})
        finally:
            api.clock.advance(-(api.settings.api.login_window_s + 1))
    assert after.status_code == 200
    locked = await AuditTrail(api.engine).recent(actor="otto", action="login.locked")
    assert len(locked) == 1
