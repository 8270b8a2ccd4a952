"""A message the worker cannot decode is moved aside, never fatal (issue #22).

kombu's Redis transport decodes each message's JSON envelope before Celery sees it, and an
entry that is not one ended the worker (`Unrecoverable error: JSONDecodeError`; BRPOP had
popped it, so it was lost, and each such entry cost one worker) or, for JSON of another
shape, made the consumer drop its broker connection, which cancels the running jobs
(`KeyError('properties')`; repeated, "Frequent restarts detected"). A valid
envelope without what Celery's task protocol reads unguarded (`headers['id']`, a body of
three parts) did the same one layer up. So there are two guards, each at the one place that
layer decodes:

- `Channel`, the worker's transport channel: every list it consumes is read by BRPOP (or RPOP
  in `_get`), and broadcasts (the pidbox) arrive through `_deliver_fanout_message`. Before a
  message is handed on, `check_envelope` does what kombu's consumer callback and its ack
  emulation will do with it (build the Message, decoding the body; read the delivery tag and
  info). `_brpop_read` and `_get` are kombu 5.7's own, with that one change: kombu calls
  `loads()` inline there, so no smaller override can see the raw bytes (the lock pins kombu;
  tests/e2e/test_malformed_messages.py fails if a new kombu moves the decoding elsewhere).
- `Consumer`, Celery's consumer: its task handler's own errors about a message's content
  (KeyError, TypeError, ValueError...) are caught around it; broker errors still propagate.

Either way the raw bytes (for the second guard: the envelope as kombu decoded it, re-encoded)
go to the deployment's dead-letter list (Settings.malformed_list_name, kept to its newest
MALFORMED_KEEP entries), `modelcert_malformed_messages_total` counts them and one log line
says where and why; the message is acknowledged, and the worker goes on consuming.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from queue import Empty
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from vine import promise

from app.queue import transport as broker
from worker import metrics

log = logging.getLogger(__name__)
TRANSPORT = "worker.malformed:Transport"
CONSUMER = "worker.malformed:Consumer"
MALFORMED_KEEP = 10_000  # the dead-letter list's bound: a flood must not fill Redis
# What Celery's task handler raises about a message's content (a missing header, a body that
# is not [args, kwargs, embed], a header of the wrong type). Broker errors are none of these.
CONTENT_ERRORS = (LookupError, TypeError, ValueError, AttributeError)


def check_envelope(channel: Any, payload: Any) -> None:
    """Raise unless kombu can take `payload`: its consumer callback builds a Message from it
    (decoding the body) and its ack emulation stores the delivery tag and info."""
    channel.Message(payload, channel=channel)
    properties = payload["properties"]
    info = properties["delivery_info"]
    if not all(
        isinstance(v, str)
        for v in (properties["delivery_tag"], info["exchange"], info["routing_key"])
    ):
        raise TypeError("the delivery tag, exchange and routing key must be strings")


def move_aside(
    client: Any, key: str | None, raw: bytes, queue: str, reason: str, error: BaseException
) -> None:
    """Keep `raw` in the dead-letter list, count it and log it; never raises."""
    metrics.MALFORMED_MESSAGES.labels(reason).inc()
    kept = False
    if key is not None:
        try:
            client.pipeline().lpush(key, raw).ltrim(key, 0, MALFORMED_KEEP - 1).execute()
            kept = True
        except Exception:  # noqa: BLE001 - the broker's own errors reach the next BRPOP
            log.warning("malformed_message_not_kept", exc_info=True)
    log.error(
        "malformed_message_moved_aside",
        extra={
            "queue": queue,
            "reason": reason,
            "error": f"{type(error).__name__}: {error}"[:300],
            "bytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "dead_letter_list": key if kept else None,
        },
    )


class Channel(broker.Channel):
    malformed_key: str | None = None  # the transport option of that name
    from_transport_options = (*broker.Channel.from_transport_options, "malformed_key")
    # kombu's own members that the copies below use; its stubs (celery-types) leave out the
    # channel's private API.
    connection_errors: tuple[type[BaseException], ...]
    _queue_cycle: Any
    _flush_brpop_reauth: Callable[[], None]
    _q_for_pri: Callable[[str, int], str]
    _maybe_update_queues_expire: Callable[[Any, str], None]

    def _decoded(self, raw: bytes, queue: str) -> Any | None:
        """The envelope in `raw`, or None once it has been moved aside."""
        try:
            payload = loads(bytes_to_str(raw))
        except Exception as exc:  # noqa: BLE001 - any undecodable bytes
            self._move_aside(raw, queue, "not_json", exc)
            return None
        try:
            check_envelope(self, payload)
        except Exception as exc:  # noqa: BLE001 - any shape kombu cannot take
            self._move_aside(raw, queue, "not_an_envelope", exc)
            return None
        return payload

    def _move_aside(self, raw: bytes, queue: str, reason: str, error: BaseException) -> None:
        with self.conn_or_acquire() as client:
            move_aside(client, self.malformed_key, raw, queue, reason, error)

    def _brpop_read(self, **options: Any) -> bool:
        # kombu 5.7's Channel._brpop_read; only the decoding differs (see the module's doc).
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if dest__item:
                dest, item = dest__item
                dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
                self._queue_cycle.rotate(dest)
                payload = self._decoded(item, dest)
                if payload is not None:
                    self.connection._deliver(payload, dest)
                return True
            raise Empty()
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        # kombu 5.7's Channel._get; a malformed entry is moved aside and the next one read.
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                while item := client.rpop(self._q_for_pri(queue, pri)):
                    self._maybe_update_queues_expire(client, queue)
                    payload = self._decoded(item, queue)
                    if payload is not None:
                        return payload
            self._maybe_update_queues_expire(client, queue)
            raise Empty()

    def _deliver_fanout_message(self, message: Any, exchange: str) -> bool:
        # Broadcasts (the pidbox): kombu already drops what is not JSON, with a warning.
        try:
            check_envelope(self, message)
        except Exception as exc:  # noqa: BLE001 - any shape kombu cannot take
            self._move_aside(dumps(message).encode(), exchange, "not_an_envelope", exc)
            return True
        # kombu's own method, which its stubs leave out (see above).
        return bool(super()._deliver_fanout_message(message, exchange))  # type: ignore[misc]


class Transport(broker.Transport):
    Channel = Channel


class Consumer(CeleryConsumer):
    """Celery's consumer, its task handler guarded against messages it cannot read."""

    # Set by Celery's Consumer.__init__ from the transport; its stubs do not declare them.
    connection_errors: tuple[type[BaseException], ...]
    channel_errors: tuple[type[BaseException], ...]

    def create_task_handler(self, promise: Any = promise) -> Any:
        handle = super().create_task_handler(promise)
        # kombu lists KeyError among the Redis transport's connection errors (for its poller's
        # own lookups); raised by the task handler, it is about the message.
        broker_errors = tuple(
            e
            for e in (*self.connection_errors, *self.channel_errors)
            if not issubclass(e, CONTENT_ERRORS)
        )

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except CONTENT_ERRORS as exc:
                if isinstance(exc, broker_errors):
                    raise
                self._move_aside(message, exc)
                return None

        return on_task_received

    def _move_aside(self, message: Any, error: BaseException) -> None:
        raw = getattr(message, "_raw", None)
        body = dumps(raw).encode() if raw is not None else bytes(message.body or b"")
        queue = str((message.delivery_info or {}).get("routing_key") or "?")
        channel = message.channel
        if isinstance(channel, Channel):
            channel._move_aside(body, queue, "not_a_task", error)
        else:  # not expected: the worker's transport is this module's
            move_aside(None, None, body, queue, "not_a_task", error)
        if not message.acknowledged:
            message.ack()
