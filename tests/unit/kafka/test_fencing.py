import pytest
from aiokafka.producer import sender

from streams.kafka import fencing
from streams.kafka.fencing import CONCURRENT_TRANSACTIONS_RETRY_S, PartitionWriters


def test_partition_writers_retry_a_concurrent_transaction_sooner_than_aiokafka(monkeypatch):
    monkeypatch.setattr(sender, "BACKOFF_OVERRIDE", 0.02)

    PartitionWriters("localhost:9092", "worker")

    assert sender.BACKOFF_OVERRIDE == CONCURRENT_TRANSACTIONS_RETRY_S < 0.02


def test_an_aiokafka_without_the_retry_setting_is_refused_by_name(monkeypatch):
    monkeypatch.delattr(sender, "BACKOFF_OVERRIDE")

    with pytest.raises(RuntimeError, match="BACKOFF_OVERRIDE"):
        fencing.shorten_concurrent_transactions_retry()
