"""The queue: task names, the Redis transport both sides use, and the API's publisher.

The API publishes by task name (`names`), never importing worker code; the worker consumes
with the same transport (`transport`), the one place that knows how a queue is spelled in
Redis.
"""
