"""What every test directory (and ``bench/``) shares: waiting, component processes, namespaced
names, Kafka helpers and the vendored contract samples.

- :mod:`tests.support.wait`: ``wait_until``
- :mod:`tests.support.procs`: ``ComponentProcess``
- :mod:`tests.support.names`: ``layout_for``, ``TestNames``
- :mod:`tests.support.kafka`: ``create_topics``, ``produce``, ``consume_all``, ``list_topics``
- :mod:`tests.support.samples`: ``load_samples``, ``sample_record`` (``tests/data/*.jsonl``)
"""
