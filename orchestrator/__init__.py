"""The orchestrator: ExecutionContext, regime detection, strategy selection and switching, ops API."""
