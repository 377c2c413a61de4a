"""A RabbitMQ client for the tests (pika from PyPI): declare a queue, publish, get,
consume and ack, then declare a queue that does not exist (passive), which the broker
answers by closing the channel with 404.

    python amqp_peer.py PORT
"""
import sys

import pika

port = int(sys.argv[1])
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest")))
ch = conn.channel()
ch.queue_declare("kshark-q")
for i in (1, 2):
    ch.basic_publish("", "kshark-q", f"order {i}".encode(), pika.BasicProperties(content_type="text/plain"))
method, props, body = ch.basic_get("kshark-q", auto_ack=True)
assert body == b"order 1", body
got = []


def on_message(c, m, p, b):
    got.append(b)
    c.basic_ack(m.delivery_tag)
    c.stop_consuming()


ch.basic_consume("kshark-q", on_message)
ch.start_consuming()
assert got == [b"order 2"], got
try:
    ch.queue_declare("missing", passive=True)
except pika.exceptions.ChannelClosedByBroker as e:
    assert e.reply_code == 404
else:
    raise SystemExit("declaring a missing queue passively should fail")
conn.close()
