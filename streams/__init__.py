"""Stream logic: the event contract, per-user state, the batch pipeline and its Kafka shell."""
