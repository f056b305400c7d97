"""Agent memory: live state in Redis (or memory, in tests) and history in Postgres."""
