"""The model registry on the session's real Postgres, in a fresh database: versions, look-ups, files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.technical.model import DecisionModel, load_model, save_model
from memory.model_registry import ModelRegistry


async def test_versions_count_up_per_name_and_latest_is_the_newest(engine: AsyncEngine) -> None:
    registry = ModelRegistry(engine)
    assert await registry.latest("technical") is None
    digest = "ab" * 32
    first = await registry.register("technical", path="/m/1.joblib", sha256=digest,
                                    params={"horizon": 24, "fee": 0.001}, metrics={"accuracy": 0.51})
    second = await registry.register("technical", path="/m/2.joblib", sha256=digest,
                                     params={"horizon": 12}, metrics={"accuracy": 0.52, "folds": [{"n": 1}]})
    other = await registry.register("sentiment", path="/m/s.joblib", sha256=digest, params={}, metrics={})
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert await registry.latest("technical") == second
    assert await registry.get("technical", 1) == first
    assert await registry.get("technical", 3) is None
    assert [record.version for record in await registry.versions("technical")] == [1, 2]
    assert second.metrics == {"accuracy": 0.52, "folds": [{"n": 1}]}  # JSONB keeps the structure
    assert second.created_at.tzinfo is not None


async def test_concurrent_registrations_get_distinct_versions(engine: AsyncEngine) -> None:
    registry = ModelRegistry(engine)
    records = await asyncio.gather(*(
        registry.register("race", path=f"/m/{i}", sha256="cd" * 32, params={}, metrics={}) for i in range(4)
    ))
    assert sorted(record.version for record in records) == [1, 2, 3, 4]


async def test_a_registered_model_file_loads_back_and_answers_the_same(
    engine: AsyncEngine, model: DecisionModel, tmp_path: Path,
) -> None:
    path, digest = save_model(model, tmp_path)
    registry = ModelRegistry(engine)
    record = await registry.register("roundtrip", path=str(path), sha256=digest, params=model.params,
                                     metrics={"accuracy": 0.5})
    latest = await registry.latest("roundtrip")
    assert latest is not None
    assert latest.params["horizon"] == model.params["horizon"]
    loaded = load_model(latest.path, latest.sha256, latest.version)
    assert loaded.version == record.version == 1
    rows = [[50.0, 0.001, 0.0, 0.002, 0.001, -0.003, 0.4, 0.05, 0.01, 25.0, 40.0, 45.0, 0.008, -0.5,
             1.2, 0.001, 0.002, -0.01]]
    assert [loaded.predict(row) for row in rows] == [model.predict(row) for row in rows]
