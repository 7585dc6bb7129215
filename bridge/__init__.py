"""Bridge worker pool: per-group derived Kafka topics into NATS JetStream, exactly once.

Run one worker with ``ofa-serving bridge``; run several for a pool (they share one Kafka
consumer group and a group-singleton assignor).
"""
