"""Notifications: webhooks for the decisions a person must hear about (``canarystream notify``).

``events`` says what in a decision is worth telling, ``payloads`` renders it (Slack, JSON,
PagerDuty Events v2), ``config`` reads the routes file, ``limits`` holds the dedup window and
the rate limits, ``sender`` POSTs with retries, ``notifier`` ties them together without Kafka,
and ``service`` is the consumer group that feeds it.
"""
