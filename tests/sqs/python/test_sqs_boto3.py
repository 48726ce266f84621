"""Debian's boto3 (1.26, botocore 1.29: the Query protocol, form-encoded requests and XML
answers) against a real spoold on 127.0.0.1 port 0 with a fresh data directory. Expected
values come from ../../../../shared/sqs-reference.md (what AWS itself does), never from
what spoold happens to answer.

usage: /usr/bin/python3 test_sqs_boto3.py --spoold PATH [--spool PATH] [unittest args]

Run it with Debian's /usr/bin/python3: a newer boto3 elsewhere on the machine speaks the
JSON protocol instead, which is a different suite.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

ARGS = None
ACCOUNT = "000000000000"
REGION = "us-east-1"
SQS_NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"

# Nothing here may wait unboundedly: every poll loop gives up after this long.
LOOP_LIMIT_S = 15.0


class Spoold:
    """A child spoold; start waits for its startup line and reads both bound addresses."""

    def __init__(self, binary, data_dir, extra_args=()):
        self.proc = subprocess.Popen(
            [binary, "--data-dir", data_dir, "--grpc-listen", "127.0.0.1:0",
             "--http-listen", "127.0.0.1:0"] + list(extra_args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = []
        self.grpc = None
        self.http = None
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.output.append(line)
                if "spoold ready:" in line:
                    grpc = re.search(r"grpc=(\S+)", line)
                    http = re.search(r"http=(\S+)", line)
                    self.grpc = grpc.group(1) if grpc else None
                    self.http = http.group(1) if http else None
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=pump, daemon=True)
        self.reader.start()
        if not ready.wait(30) or self.http is None:
            self.stop()
            raise RuntimeError("spoold did not start:\n" + "".join(self.output))
        self.endpoint = "http://" + self.http

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode


def make_client(endpoint, key="x", secret="x", region=REGION):
    # No retries: a retried error would hide the first answer and slow a failing run down.
    # The read timeout has to outlast the longest long poll (20 s).
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=40)
    return boto3.session.Session().client(
        "sqs", endpoint_url=endpoint, region_name=region, aws_access_key_id=key,
        aws_secret_access_key=secret, config=config)


_counter = [0]
_counter_lock = threading.Lock()


def unique(stem):
    # One data directory serves the whole module, and the 60 s delete/purge rules make names
    # single-use, so every test gets names nobody else has used.
    with _counter_lock:
        _counter[0] += 1
        return "%s-%d" % (stem, _counter[0])


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def md5_of_attributes(attributes):
    """The MD5OfMessageAttributes digest, written from the algorithm in sqs-reference §5.4."""

    def field(raw):
        return struct.pack(">I", len(raw)) + raw

    out = b""
    for name in sorted(attributes, key=lambda n: n.encode("utf-8")):
        value = attributes[name]
        out += field(name.encode("utf-8"))
        out += field(value["DataType"].encode("utf-8"))
        if "StringValue" in value:
            out += b"\x01" + field(value["StringValue"].encode("utf-8"))
        else:
            raw = value["BinaryValue"]
            if isinstance(raw, str):
                raw = raw.encode("utf-8")
            out += b"\x02" + field(bytes(raw))
    return hashlib.md5(out).hexdigest()


def now_ms():
    return int(time.time() * 1000)


def raw_request(endpoint, params, method="POST", path="/"):
    """An unsigned Query request, for wire details boto3 cannot produce."""
    data = urllib.parse.urlencode(params)
    if method == "GET":
        request = urllib.request.Request(endpoint + path + "?" + data, method="GET")
    else:
        request = urllib.request.Request(
            endpoint + path, data=data.encode("utf-8"), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


DAEMON = None
TMP = None


def setUpModule():
    global DAEMON, TMP
    TMP = tempfile.mkdtemp(prefix="spool-sqs-py-")
    DAEMON = Spoold(ARGS.spoold, os.path.join(TMP, "data"))


def tearDownModule():
    code = DAEMON.stop() if DAEMON else 0
    shutil.rmtree(TMP, ignore_errors=True)
    assert code == 0, "spoold exited with %s:\n%s" % (code, "".join(DAEMON.output[-50:]))


class SqsTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.endpoint = DAEMON.endpoint
        cls.sqs = make_client(cls.endpoint)

    @classmethod
    def tearDownClass(cls):
        cls.sqs.close()

    # Helpers ---------------------------------------------------------------------------------

    def queue_url_for(self, name):
        return "%s/%s/%s" % (self.endpoint, ACCOUNT, name)

    def arn_for(self, name):
        return "arn:aws:sqs:%s:%s:%s" % (REGION, ACCOUNT, name)

    def create(self, stem, attributes=None, tags=None, fifo=False):
        name = unique(stem) + (".fifo" if fifo else "")
        attributes = dict(attributes or {})
        if fifo:
            attributes.setdefault("FifoQueue", "true")
        kwargs = {"QueueName": name}
        if attributes:
            kwargs["Attributes"] = attributes
        if tags:
            kwargs["tags"] = tags
        url = self.sqs.create_queue(**kwargs)["QueueUrl"]
        return name, url

    def attributes(self, url, names=("All",)):
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names)).get(
            "Attributes", {})

    def receive(self, url, **kwargs):
        kwargs.setdefault("WaitTimeSeconds", 0)
        return self.sqs.receive_message(QueueUrl=url, **kwargs).get("Messages", [])

    def drain(self, url, count, **kwargs):
        """Receives and deletes until `count` messages came or the loop limit passed."""
        got = []
        deadline = time.monotonic() + LOOP_LIMIT_S
        kwargs.setdefault("MaxNumberOfMessages", 10)
        kwargs.setdefault("WaitTimeSeconds", 1)
        while len(got) < count and time.monotonic() < deadline:
            for message in self.receive(url, **kwargs):
                got.append(message)
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return got

    def wait_for_attribute(self, url, name, expected):
        """AWS counts are eventually consistent; give a local broker a few seconds too."""
        deadline = time.monotonic() + 5
        value = None
        while time.monotonic() < deadline:
            value = self.attributes(url, [name]).get(name)
            if value == expected:
                return
            time.sleep(0.1)
        self.assertEqual(value, expected, "attribute %s" % name)

    def assertError(self, ctx, code, status=None):
        error = ctx.exception.response.get("Error", {})
        self.assertEqual(error.get("Code"), code, "whole error: %r" % (ctx.exception.response,))
        if status is not None:
            self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], status,
                             "HTTP status of %s" % code)


class QueueManagementTest(SqsTestCase):
    def test_create_returns_the_advertised_url_and_is_idempotent(self):
        name = unique("create")
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        self.assertEqual(url, self.queue_url_for(name))
        self.assertEqual(self.sqs.create_queue(QueueName=name)["QueueUrl"], url)

        name2 = unique("create-attrs")
        attrs = {"VisibilityTimeout": "40", "DelaySeconds": "3"}
        url2 = self.sqs.create_queue(QueueName=name2, Attributes=attrs)["QueueUrl"]
        self.assertEqual(self.sqs.create_queue(QueueName=name2, Attributes=attrs)["QueueUrl"], url2)
        # A subset whose values match is still "the same queue".
        self.assertEqual(self.sqs.create_queue(
            QueueName=name2, Attributes={"VisibilityTimeout": "40"})["QueueUrl"], url2)
        self.assertEqual(self.sqs.create_queue(QueueName=name2)["QueueUrl"], url2)

        with self.assertRaises(ClientError) as ctx:
            self.sqs.create_queue(QueueName=name2, Attributes={"VisibilityTimeout": "41"})
        self.assertError(ctx, "QueueAlreadyExists", 400)
        self.assertEqual(self.attributes(url2, ["VisibilityTimeout"])["VisibilityTimeout"], "40")

    def test_get_queue_url(self):
        name, url = self.create("geturl")
        self.assertEqual(self.sqs.get_queue_url(QueueName=name)["QueueUrl"], url)
        self.assertEqual(self.sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=ACCOUNT)[
            "QueueUrl"], url)

    def test_queue_url_may_be_a_bare_name_or_carry_another_host(self):
        # Clients and proxies rewrite hosts; AWS accepted a bare name as QueueUrl as well.
        name, url = self.create("anyhost", {"VisibilityTimeout": "17"})
        other_host = "http://sqs.elsewhere.example:4444/%s/%s" % (ACCOUNT, name)
        self.assertEqual(self.attributes(other_host, ["VisibilityTimeout"])["VisibilityTimeout"], "17")
        self.assertEqual(self.attributes(name, ["VisibilityTimeout"])["VisibilityTimeout"], "17")

    def test_list_queues_with_prefix_and_pagination(self):
        prefix = unique("lst")
        urls = sorted(self.sqs.create_queue(QueueName="%s-%d" % (prefix, i))["QueueUrl"]
                      for i in range(5))
        self.create(prefix.replace("lst", "lsu"))  # a near miss the prefix must exclude

        listed = self.sqs.list_queues(QueueNamePrefix=prefix)
        self.assertEqual(sorted(listed.get("QueueUrls", [])), urls)
        self.assertNotIn("NextToken", listed, "no NextToken without MaxResults")

        self.assertEqual(self.sqs.list_queues(QueueNamePrefix=prefix + "-nothing").get(
            "QueueUrls", []), [])

        everything = self.sqs.list_queues().get("QueueUrls", [])
        for url in urls:
            self.assertIn(url, everything)

        pages = []
        token = None
        for _ in range(10):
            kwargs = {"QueueNamePrefix": prefix, "MaxResults": 2}
            if token:
                kwargs["NextToken"] = token
            page = self.sqs.list_queues(**kwargs)
            pages.append(page.get("QueueUrls", []))
            token = page.get("NextToken")
            if not token:
                break
        self.assertIsNone(token, "pagination did not end within 10 pages")
        self.assertTrue(all(len(p) <= 2 for p in pages), pages)
        seen = [u for p in pages for u in p]
        self.assertEqual(sorted(seen), urls, "every queue exactly once across pages")
        self.assertEqual(len(pages), 3, pages)

    def test_attributes_of_a_new_standard_queue(self):
        before = int(time.time())
        name, url = self.create("defaults")
        after = int(time.time())
        attrs = self.attributes(url)
        self.assertEqual(set(attrs), {
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "DelaySeconds",
            "LastModifiedTimestamp", "MaximumMessageSize", "MessageRetentionPeriod", "QueueArn",
            "ReceiveMessageWaitTimeSeconds", "SqsManagedSseEnabled", "VisibilityTimeout"})
        self.assertEqual(attrs["ApproximateNumberOfMessages"], "0")
        self.assertEqual(attrs["ApproximateNumberOfMessagesNotVisible"], "0")
        self.assertEqual(attrs["ApproximateNumberOfMessagesDelayed"], "0")
        self.assertEqual(attrs["DelaySeconds"], "0")
        self.assertEqual(attrs["MaximumMessageSize"], "1048576")
        self.assertEqual(attrs["MessageRetentionPeriod"], "345600")
        self.assertEqual(attrs["ReceiveMessageWaitTimeSeconds"], "0")
        self.assertEqual(attrs["SqsManagedSseEnabled"], "true")
        self.assertEqual(attrs["VisibilityTimeout"], "30")
        self.assertEqual(attrs["QueueArn"], self.arn_for(name))
        # Epoch seconds, not milliseconds.
        self.assertTrue(before - 2 <= int(attrs["CreatedTimestamp"]) <= after + 2, attrs)
        self.assertTrue(before - 2 <= int(attrs["LastModifiedTimestamp"]) <= after + 2, attrs)

        only = self.attributes(url, ["VisibilityTimeout", "QueueArn"])
        self.assertEqual(only, {"VisibilityTimeout": "30", "QueueArn": self.arn_for(name)})
        self.assertEqual(self.sqs.get_queue_attributes(QueueUrl=url).get("Attributes", {}), {},
                         "no names asked, none returned")

    def test_attributes_of_a_new_fifo_queue(self):
        name, url = self.create("fifodefaults", fifo=True)
        attrs = self.attributes(url)
        self.assertEqual(set(attrs), {
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "DelaySeconds",
            "LastModifiedTimestamp", "MaximumMessageSize", "MessageRetentionPeriod", "QueueArn",
            "ReceiveMessageWaitTimeSeconds", "SqsManagedSseEnabled", "VisibilityTimeout",
            "ContentBasedDeduplication", "DeduplicationScope", "FifoQueue", "FifoThroughputLimit"})
        self.assertEqual(attrs["FifoQueue"], "true")
        self.assertEqual(attrs["ContentBasedDeduplication"], "false")
        self.assertEqual(attrs["DeduplicationScope"], "queue")
        self.assertEqual(attrs["FifoThroughputLimit"], "perQueue")
        self.assertEqual(attrs["VisibilityTimeout"], "30")
        self.assertEqual(attrs["MaximumMessageSize"], "1048576")
        self.assertEqual(attrs["MessageRetentionPeriod"], "345600")
        self.assertEqual(attrs["DelaySeconds"], "0")
        self.assertEqual(attrs["ReceiveMessageWaitTimeSeconds"], "0")
        self.assertEqual(attrs["QueueArn"], self.arn_for(name))
        self.assertTrue(url.endswith("/%s/%s" % (ACCOUNT, name)))

    def test_set_queue_attributes(self):
        _, url = self.create("setattrs")
        created = int(self.attributes(url, ["CreatedTimestamp"])["CreatedTimestamp"])
        changes = {"VisibilityTimeout": "45", "DelaySeconds": "7", "MaximumMessageSize": "2048",
                   "MessageRetentionPeriod": "3600", "ReceiveMessageWaitTimeSeconds": "4"}
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes=changes)
        attrs = self.attributes(url)
        for key, value in changes.items():
            self.assertEqual(attrs[key], value, key)
        self.assertGreaterEqual(int(attrs["LastModifiedTimestamp"]), created)

        fifo_name, fifo_url = self.create("setattrs", fifo=True)
        self.sqs.set_queue_attributes(QueueUrl=fifo_url, Attributes={
            "ContentBasedDeduplication": "true", "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId", "FifoQueue": "true"})
        attrs = self.attributes(fifo_url)
        self.assertEqual(attrs["ContentBasedDeduplication"], "true")
        self.assertEqual(attrs["DeduplicationScope"], "messageGroup")
        self.assertEqual(attrs["FifoThroughputLimit"], "perMessageGroupId")
        self.assertEqual(attrs["FifoQueue"], "true")

    def test_delete_queue(self):
        name, url = self.create("del")
        self.sqs.send_message(QueueUrl=url, MessageBody="left behind")
        self.sqs.delete_queue(QueueUrl=url)
        with self.assertRaises(ClientError) as ctx:
            self.sqs.get_queue_url(QueueName=name)
        self.assertError(ctx, "AWS.SimpleQueueService.NonExistentQueue", 400)
        with self.assertRaises(ClientError) as ctx:
            self.sqs.send_message(QueueUrl=url, MessageBody="too late")
        self.assertError(ctx, "AWS.SimpleQueueService.NonExistentQueue", 400)
        self.assertNotIn(url, self.sqs.list_queues(QueueNamePrefix=name).get("QueueUrls", []))

    def test_purge_queue(self):
        _, url = self.create("purge")
        for i in range(3):
            self.sqs.send_message(QueueUrl=url, MessageBody="m%d" % i)
        in_flight = self.receive(url, VisibilityTimeout=30)
        self.assertEqual(len(in_flight), 1)
        self.sqs.purge_queue(QueueUrl=url)
        self.wait_for_attribute(url, "ApproximateNumberOfMessages", "0")
        self.wait_for_attribute(url, "ApproximateNumberOfMessagesNotVisible", "0")
        self.assertEqual(self.receive(url, MaxNumberOfMessages=10, WaitTimeSeconds=1), [])

        with self.assertRaises(ClientError) as ctx:
            self.sqs.purge_queue(QueueUrl=url)
        self.assertError(ctx, "AWS.SimpleQueueService.PurgeQueueInProgress", 403)

        # The queue still works after a purge.
        self.sqs.send_message(QueueUrl=url, MessageBody="after")
        self.assertEqual([m["Body"] for m in self.drain(url, 1)], ["after"])

    def test_tags(self):
        _, url = self.create("tags", tags={"team": "a", "env": "test"})
        self.assertEqual(self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {}),
                         {"team": "a", "env": "test"})
        self.sqs.tag_queue(QueueUrl=url, Tags={"team": "b", "cost": "42", "empty": ""})
        self.assertEqual(self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {}),
                         {"team": "b", "env": "test", "cost": "42", "empty": ""})
        self.sqs.untag_queue(QueueUrl=url, TagKeys=["env", "never-set"])
        self.assertEqual(self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {}),
                         {"team": "b", "cost": "42", "empty": ""})
        self.sqs.untag_queue(QueueUrl=url, TagKeys=["team", "cost", "empty"])
        self.assertEqual(self.sqs.list_queue_tags(QueueUrl=url).get("Tags", {}), {})

        _, bare = self.create("notags")
        self.assertEqual(self.sqs.list_queue_tags(QueueUrl=bare).get("Tags", {}), {})

    def test_add_and_remove_permission_through_the_policy_attribute(self):
        name, url = self.create("perm")
        self.assertNotIn("Policy", self.attributes(url))
        self.sqs.add_permission(QueueUrl=url, Label="senders", AWSAccountIds=["111122223333"],
                                Actions=["SendMessage", "ReceiveMessage"])
        self.sqs.add_permission(QueueUrl=url, Label="everything", AWSAccountIds=["444455556666"],
                                Actions=["*"])
        policy = json.loads(self.attributes(url, ["Policy"])["Policy"])
        self.assertEqual(policy["Version"], "2008-10-17")
        self.assertEqual(policy["Id"], self.arn_for(name) + "/SQSDefaultPolicy")
        statements = {s["Sid"]: s for s in policy["Statement"]}
        self.assertEqual(set(statements), {"senders", "everything"})
        senders = statements["senders"]
        self.assertEqual(senders["Effect"], "Allow")
        actions = senders["Action"] if isinstance(senders["Action"], list) else [senders["Action"]]
        self.assertEqual(sorted(actions), ["SQS:ReceiveMessage", "SQS:SendMessage"])
        self.assertEqual(senders["Resource"], self.arn_for(name))
        self.assertIn("111122223333", json.dumps(senders["Principal"]))

        with self.assertRaises(ClientError) as ctx:
            self.sqs.add_permission(QueueUrl=url, Label="senders", AWSAccountIds=["111122223333"],
                                    Actions=["SendMessage"])
        self.assertError(ctx, "InvalidParameterValue", 400)

        self.sqs.remove_permission(QueueUrl=url, Label="senders")
        remaining = self.attributes(url, ["Policy"]).get("Policy")
        self.assertIsNotNone(remaining)
        self.assertEqual([s["Sid"] for s in json.loads(remaining)["Statement"]], ["everything"])
        self.sqs.remove_permission(QueueUrl=url, Label="everything")
        remaining = self.attributes(url, ["Policy"]).get("Policy")
        if remaining:
            self.assertEqual(json.loads(remaining).get("Statement", []), [])


class StandardMessagingTest(SqsTestCase):
    def test_published_md5_vectors(self):
        # Guards the independent implementation above before it judges the server.
        self.assertEqual(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592")
        self.assertEqual(md5_hex(b"message-1"), "3d6b824fd8c1520e9a047d21fee6fb1f")
        one = {"attribName1": {"DataType": "String", "StringValue": "attribValue 1"}}
        two = {"customNumberTypeAttrib": {"DataType": "Number.float",
                                          "StringValue": "4563442423554324324264524243.32543234"}}
        three = {"binaryAttribute": {"DataType": "Binary", "BinaryValue": b"Hello binary world!"}}
        self.assertEqual(md5_of_attributes(one), "19e27d4e946b072f3f58da80d94fd778")
        self.assertEqual(md5_of_attributes(two), "9fe1b90bbd9965bdf77bac517c7d2495")
        self.assertEqual(md5_of_attributes(three), "31a92b15d92f8db860eda32aceb656c3")
        self.assertEqual(md5_of_attributes({**one, **two, **three}),
                         "c932db14a896c663f83c260297d594ff")
        self.assertEqual(md5_of_attributes(
            {"MyAttribute": {"DataType": "String", "StringValue": "foobar"}}),
            "adb59cd4678ea5a855436b949cd07ab6")

    def test_round_trip_with_message_attributes_and_md5s(self):
        _, url = self.create("roundtrip")
        body = 'héllo <wörld> & "friends" \'✓\' 😀\ttab\nnewline'
        attributes = {
            "s": {"DataType": "String", "StringValue": "a string & <xml> ✓"},
            "n": {"DataType": "Number", "StringValue": "-12.5e3"},
            "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff binary"},
            "count": {"DataType": "Number.int", "StringValue": "7"},
            "label.x": {"DataType": "String.custom", "StringValue": "custom string type"},
        }
        sent_before = now_ms()
        sent = self.sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
        sent_after = now_ms()
        self.assertEqual(sent["MD5OfMessageBody"], md5_hex(body.encode("utf-8")))
        self.assertEqual(sent["MD5OfMessageAttributes"], md5_of_attributes(attributes))
        self.assertTrue(sent["MessageId"])
        self.assertNotIn("SequenceNumber", sent)

        messages = self.receive(url, WaitTimeSeconds=2, AttributeNames=["All"],
                                MessageAttributeNames=["All"])
        self.assertEqual(len(messages), 1)
        message = messages[0]
        received_after = now_ms()
        self.assertEqual(message["MessageId"], sent["MessageId"])
        self.assertEqual(message["Body"], body)
        self.assertEqual(message["MD5OfBody"], md5_hex(body.encode("utf-8")))
        self.assertEqual(message["MessageAttributes"], attributes)
        self.assertEqual(message["MD5OfMessageAttributes"], md5_of_attributes(attributes))
        self.assertTrue(message["ReceiptHandle"])

        system = message["Attributes"]
        self.assertEqual(system["ApproximateReceiveCount"], "1")
        sent_ts = int(system["SentTimestamp"])
        first_ts = int(system["ApproximateFirstReceiveTimestamp"])
        # Milliseconds since the epoch; one second of slack for rounding between clocks.
        self.assertTrue(sent_before - 1000 <= sent_ts <= sent_after + 1000, system)
        self.assertTrue(sent_ts <= first_ts <= received_after + 1000, system)
        for value in system.values():
            self.assertIsInstance(value, str)

        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        self.assertEqual(self.receive(url, WaitTimeSeconds=1), [])

    def test_body_with_carriage_return_round_trips_byte_exact(self):
        # #xD is an allowed body character; XML parsers fold a raw CR into LF, so it must be
        # escaped on the wire (real SQS sends &#xD;).
        _, url = self.create("crbody")
        body = "line one\r\nline two\rend"
        sent = self.sqs.send_message(QueueUrl=url, MessageBody=body)
        self.assertEqual(sent["MD5OfMessageBody"], md5_hex(body.encode("utf-8")))
        message = self.receive(url, WaitTimeSeconds=2)[0]
        self.assertEqual(message["Body"], body)
        self.assertEqual(message["MD5OfBody"], md5_hex(body.encode("utf-8")))

    def test_only_requested_attributes_are_returned(self):
        _, url = self.create("selected")
        attributes = {
            "a.one": {"DataType": "String", "StringValue": "1"},
            "a.two": {"DataType": "Number", "StringValue": "2"},
            "b": {"DataType": "Binary", "BinaryValue": b"\x02"},
        }
        for _ in range(3):
            self.sqs.send_message(QueueUrl=url, MessageBody="sel", MessageAttributes=attributes)

        bare = self.receive(url, WaitTimeSeconds=2, VisibilityTimeout=30)[0]
        self.assertNotIn("MessageAttributes", bare)
        self.assertNotIn("Attributes", bare)

        exact = self.receive(url, WaitTimeSeconds=2, VisibilityTimeout=30,
                             MessageAttributeNames=["b"], AttributeNames=["SentTimestamp"])[0]
        self.assertEqual(exact["MessageAttributes"], {"b": attributes["b"]})
        self.assertEqual(exact["MD5OfMessageAttributes"], md5_of_attributes({"b": attributes["b"]}))
        self.assertEqual(set(exact["Attributes"]), {"SentTimestamp"})

        prefixed = self.receive(url, WaitTimeSeconds=2, VisibilityTimeout=30,
                                MessageAttributeNames=["a.*"])[0]
        wanted = {k: v for k, v in attributes.items() if k.startswith("a.")}
        self.assertEqual(prefixed["MessageAttributes"], wanted)
        self.assertEqual(prefixed["MD5OfMessageAttributes"], md5_of_attributes(wanted))

    def test_largest_message_is_accepted(self):
        _, url = self.create("big")
        body = "x" * 1048576
        sent = self.sqs.send_message(QueueUrl=url, MessageBody=body)
        self.assertEqual(sent["MD5OfMessageBody"], md5_hex(body.encode("ascii")))
        message = self.receive(url, WaitTimeSeconds=2)[0]
        self.assertEqual(len(message["Body"]), 1048576)
        self.assertEqual(message["MD5OfBody"], sent["MD5OfMessageBody"])

    def test_visibility_timeout_and_change_message_visibility(self):
        _, url = self.create("vis", {"VisibilityTimeout": "30"})
        self.sqs.send_message(QueueUrl=url, MessageBody="v")

        first = self.receive(url, VisibilityTimeout=2, AttributeNames=["ApproximateReceiveCount"])
        self.assertEqual(len(first), 1)
        self.assertEqual(first[0]["Attributes"]["ApproximateReceiveCount"], "1")
        self.assertEqual(self.receive(url), [], "hidden while in flight")
        self.wait_for_attribute(url, "ApproximateNumberOfMessagesNotVisible", "1")

        # The receive's own VisibilityTimeout (2 s) lapses: the message comes back.
        started = time.monotonic()
        second = self.receive(url, WaitTimeSeconds=5, AttributeNames=["ApproximateReceiveCount"])
        self.assertEqual(len(second), 1, "the message did not come back after its visibility")
        self.assertLess(time.monotonic() - started, 4.5)
        self.assertEqual(second[0]["Attributes"]["ApproximateReceiveCount"], "2")
        self.assertNotEqual(second[0]["ReceiptHandle"], first[0]["ReceiptHandle"])
        # The queue default (30 s) applies now: the message stays hidden.
        self.assertEqual(self.receive(url, WaitTimeSeconds=1), [])

        self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second[0]["ReceiptHandle"],
                                           VisibilityTimeout=0)
        third = self.receive(url, AttributeNames=["ApproximateReceiveCount"])
        self.assertEqual(len(third), 1, "ChangeMessageVisibility 0 did not make it visible now")
        self.assertEqual(third[0]["Attributes"]["ApproximateReceiveCount"], "3")

        # Extending keeps it hidden past its original timeout.
        self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=third[0]["ReceiptHandle"],
                                           VisibilityTimeout=1)
        self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=third[0]["ReceiptHandle"],
                                           VisibilityTimeout=30)
        self.assertEqual(self.receive(url, WaitTimeSeconds=2), [])

        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=third[0]["ReceiptHandle"])
        # Deleting twice with the same handle succeeds.
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=third[0]["ReceiptHandle"])
        self.wait_for_attribute(url, "ApproximateNumberOfMessages", "0")
        self.wait_for_attribute(url, "ApproximateNumberOfMessagesNotVisible", "0")

    def test_receive_with_visibility_zero_leaves_the_message_visible(self):
        _, url = self.create("vis0")
        self.sqs.send_message(QueueUrl=url, MessageBody="peek")
        self.assertEqual(len(self.receive(url, WaitTimeSeconds=2, VisibilityTimeout=0)), 1)
        again = self.receive(url, AttributeNames=["ApproximateReceiveCount"])
        self.assertEqual(len(again), 1)
        self.assertEqual(again[0]["Attributes"]["ApproximateReceiveCount"], "2")

    def test_long_poll_is_woken_by_a_send_and_does_not_block_others(self):
        _, url = self.create("longpoll")
        sender = make_client(self.endpoint)
        other = make_client(self.endpoint)
        timings = {}

        def send_later():
            time.sleep(1.0)
            # Other requests are answered while the long poll waits.
            started = time.monotonic()
            other.list_queues(QueueNamePrefix="nothing-has-this-prefix")
            timings["list"] = time.monotonic() - started
            sender.send_message(QueueUrl=url, MessageBody="wake up")

        thread = threading.Thread(target=send_later)
        started = time.monotonic()
        thread.start()
        try:
            messages = self.receive(url, WaitTimeSeconds=5)
        finally:
            thread.join(20)
            sender.close()
            other.close()
        elapsed = time.monotonic() - started
        self.assertEqual([m["Body"] for m in messages], ["wake up"])
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 3.5, "the long poll was not woken by the send")
        # Well under the poll's 5 s, with room for a loaded machine.
        self.assertLess(timings.get("list", 99), 2.5, "a long poll blocked another request")

    def test_long_poll_on_an_empty_queue_waits_then_returns_nothing(self):
        _, url = self.create("emptypoll")
        started = time.monotonic()
        response = self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)
        elapsed = time.monotonic() - started
        self.assertNotIn("Messages", response)
        self.assertGreaterEqual(elapsed, 1.8)
        self.assertLess(elapsed, 4.5)

        # The queue's ReceiveMessageWaitTimeSeconds is the default wait.
        _, waiting = self.create("emptypoll", {"ReceiveMessageWaitTimeSeconds": "2"})
        started = time.monotonic()
        response = self.sqs.receive_message(QueueUrl=waiting)
        elapsed = time.monotonic() - started
        self.assertNotIn("Messages", response)
        self.assertGreaterEqual(elapsed, 1.8)
        self.assertLess(elapsed, 4.5)

    def test_send_batch_with_partial_failures(self):
        _, url = self.create("sendbatch", {"MaximumMessageSize": "1024"})
        attrs = {"k": {"DataType": "String", "StringValue": "v"}}
        response = self.sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": "ok-1", "MessageBody": "first"},
            {"Id": "too_big", "MessageBody": "y" * 1025},
            {"Id": "ok-2", "MessageBody": "second", "MessageAttributes": attrs},
            {"Id": "bad_chars", "MessageBody": "bell \x07 is not allowed"},
            {"Id": "ok-3", "MessageBody": "third", "DelaySeconds": 0},
        ])
        successful = {e["Id"]: e for e in response.get("Successful", [])}
        failed = {e["Id"]: e for e in response.get("Failed", [])}
        self.assertEqual(set(successful), {"ok-1", "ok-2", "ok-3"})
        self.assertEqual(set(failed), {"too_big", "bad_chars"})
        self.assertEqual(failed["too_big"]["Code"], "InvalidParameterValue")
        self.assertTrue(failed["too_big"]["SenderFault"])
        self.assertEqual(failed["bad_chars"]["Code"], "InvalidMessageContents")
        self.assertTrue(failed["bad_chars"]["SenderFault"])
        self.assertEqual(successful["ok-1"]["MD5OfMessageBody"], md5_hex(b"first"))
        self.assertEqual(successful["ok-2"]["MD5OfMessageAttributes"], md5_of_attributes(attrs))
        self.assertNotIn("MD5OfMessageAttributes", successful["ok-1"])
        self.assertEqual(len({e["MessageId"] for e in successful.values()}), 3)

        got = self.drain(url, 3)
        self.assertEqual(sorted(m["Body"] for m in got), ["first", "second", "third"])
        self.assertEqual(self.receive(url, WaitTimeSeconds=1), [])

    def test_delete_and_change_visibility_batches_with_partial_failures(self):
        _, url = self.create("delbatch")
        self.sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": "m%d" % i, "MessageBody": "body %d" % i} for i in range(4)])
        received = []
        deadline = time.monotonic() + LOOP_LIMIT_S
        while len(received) < 4 and time.monotonic() < deadline:
            received += self.receive(url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     VisibilityTimeout=30)
        self.assertEqual(len(received), 4)

        changed = self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": "c0", "ReceiptHandle": received[0]["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "cbad", "ReceiptHandle": "garbage", "VisibilityTimeout": 0},
        ])
        self.assertEqual([e["Id"] for e in changed.get("Successful", [])], ["c0"])
        self.assertEqual([(e["Id"], e["Code"]) for e in changed.get("Failed", [])],
                         [("cbad", "ReceiptHandleIsInvalid")])
        back = self.receive(url, WaitTimeSeconds=2, VisibilityTimeout=30)
        self.assertEqual([m["Body"] for m in back], [received[0]["Body"]])
        received[0] = back[0]

        deleted = self.sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": "d%d" % i, "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)
        ] + [{"Id": "dbad", "ReceiptHandle": "garbage"}])
        self.assertEqual(sorted(e["Id"] for e in deleted.get("Successful", [])),
                         ["d0", "d1", "d2", "d3"])
        failed = deleted.get("Failed", [])
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["Id"], "dbad")
        self.assertEqual(failed[0]["Code"], "ReceiptHandleIsInvalid")
        self.assertTrue(failed[0]["SenderFault"])
        self.wait_for_attribute(url, "ApproximateNumberOfMessagesNotVisible", "0")
        self.wait_for_attribute(url, "ApproximateNumberOfMessages", "0")

    def test_delay_queue_hides_new_messages(self):
        _, url = self.create("delayq", {"DelaySeconds": "3"})
        self.sqs.send_message(QueueUrl=url, MessageBody="later")
        self.assertEqual(self.receive(url), [])
        self.wait_for_attribute(url, "ApproximateNumberOfMessagesDelayed", "1")
        self.assertEqual(self.attributes(url, ["ApproximateNumberOfMessages"])[
            "ApproximateNumberOfMessages"], "0")
        # The long poll has to be woken when the delay ends, not only by sends.
        started = time.monotonic()
        messages = self.receive(url, WaitTimeSeconds=6)
        elapsed = time.monotonic() - started
        self.assertEqual([m["Body"] for m in messages], ["later"])
        self.assertLess(elapsed, 5)

    def test_per_message_delay_on_a_standard_queue(self):
        _, url = self.create("delaymsg")
        self.sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=2)
        self.sqs.send_message(QueueUrl=url, MessageBody="now")
        self.assertEqual([m["Body"] for m in self.receive(url, WaitTimeSeconds=1)], ["now"])
        self.assertEqual(self.receive(url), [])
        self.assertEqual([m["Body"] for m in self.receive(url, WaitTimeSeconds=5)], ["delayed"])


class FifoTest(SqsTestCase):
    @staticmethod
    def group_of(message):
        return message["Attributes"]["MessageGroupId"]

    def test_order_within_each_group(self):
        _, url = self.create("order", {"ContentBasedDeduplication": "true"}, fifo=True)
        sent = {"g1": [], "g2": []}
        for i in range(4):
            for group in ("g1", "g2") if i < 3 else ("g1",):
                body = "%s-%d" % (group, i)
                self.sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)
                sent[group].append(body)
        got = self.drain(url, 7, AttributeNames=["MessageGroupId"])
        by_group = {"g1": [], "g2": []}
        for message in got:
            by_group[self.group_of(message)].append(message["Body"])
        self.assertEqual(by_group, sent)

    def test_group_lock_across_receives(self):
        _, url = self.create("lock", {"ContentBasedDeduplication": "true"}, fifo=True)
        sent = {"g1": ["a1", "a2"], "g2": ["b1", "b2"]}
        for first, second in (("g1", "a1"), ("g2", "b1"), ("g1", "a2"), ("g2", "b2")):
            self.sqs.send_message(QueueUrl=url, MessageBody=second, MessageGroupId=first)

        m1 = self.receive(url, MaxNumberOfMessages=1, AttributeNames=["MessageGroupId"])
        self.assertEqual(len(m1), 1)
        locked = self.group_of(m1[0])
        other = "g2" if locked == "g1" else "g1"
        self.assertEqual(m1[0]["Body"], sent[locked][0])

        rest = self.receive(url, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"])
        self.assertTrue(rest, "the other group was not delivered")
        self.assertEqual({self.group_of(m) for m in rest}, {other},
                         "a message of a group with a message in flight was delivered")
        self.assertEqual([m["Body"] for m in rest], sent[other][:len(rest)])
        self.assertEqual(self.receive(url, MaxNumberOfMessages=10, WaitTimeSeconds=1), [],
                         "both groups are locked")

        # Ending the in-flight message's visibility frees the group, in order.
        self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m1[0]["ReceiptHandle"],
                                           VisibilityTimeout=0)
        again = self.receive(url, MaxNumberOfMessages=1, AttributeNames=["MessageGroupId"])
        self.assertEqual([m["Body"] for m in again], [sent[locked][0]])

        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])
        following = self.receive(url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                 AttributeNames=["MessageGroupId"])
        self.assertEqual([m["Body"] for m in following], [sent[locked][1]])

    def test_explicit_deduplication_id(self):
        _, url = self.create("dedup", fifo=True)
        first = self.sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g",
                                      MessageDeduplicationId="d1")
        duplicate = self.sqs.send_message(QueueUrl=url, MessageBody="y", MessageGroupId="g",
                                          MessageDeduplicationId="d1")
        self.assertEqual(duplicate["MessageId"], first["MessageId"])
        # Scope "queue": the same id in another group is still a duplicate.
        other_group = self.sqs.send_message(QueueUrl=url, MessageBody="z", MessageGroupId="h",
                                            MessageDeduplicationId="d1")
        self.assertEqual(other_group["MessageId"], first["MessageId"])
        distinct = self.sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g",
                                         MessageDeduplicationId="d2")
        self.assertNotEqual(distinct["MessageId"], first["MessageId"])

        got = self.drain(url, 2, AttributeNames=["All"])
        self.assertEqual([m["Body"] for m in got], ["x", "x"])
        self.assertEqual(got[0]["MessageId"], first["MessageId"])
        self.assertEqual(got[0]["Attributes"]["MessageDeduplicationId"], "d1")
        self.assertEqual(got[0]["Attributes"]["MessageGroupId"], "g")
        self.assertEqual(self.receive(url, WaitTimeSeconds=1), [])

        # Remembered after the original was received and deleted.
        again = self.sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g",
                                      MessageDeduplicationId="d1")
        self.assertEqual(again["MessageId"], first["MessageId"])
        self.assertEqual(self.receive(url, WaitTimeSeconds=1), [])

    def test_content_based_deduplication(self):
        _, url = self.create("cbd", {"ContentBasedDeduplication": "true"}, fifo=True)
        first = self.sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
        duplicate = self.sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
        self.assertEqual(duplicate["MessageId"], first["MessageId"])
        different = self.sqs.send_message(QueueUrl=url, MessageBody="different", MessageGroupId="g")
        self.assertNotEqual(different["MessageId"], first["MessageId"])
        # An explicit id wins over the body's hash.
        explicit = self.sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g",
                                         MessageDeduplicationId="own-id")
        self.assertNotEqual(explicit["MessageId"], first["MessageId"])

        got = self.drain(url, 3, AttributeNames=["MessageDeduplicationId"])
        self.assertEqual([m["Body"] for m in got], ["same", "different", "same"])
        self.assertEqual(got[0]["Attributes"]["MessageDeduplicationId"],
                         hashlib.sha256(b"same").hexdigest())
        self.assertEqual(got[2]["Attributes"]["MessageDeduplicationId"], "own-id")
        self.assertEqual(self.receive(url, WaitTimeSeconds=1), [])

    def test_sequence_numbers_increase(self):
        _, url = self.create("seq", fifo=True)
        sent = [self.sqs.send_message(QueueUrl=url, MessageBody="s%d" % i, MessageGroupId="g",
                                      MessageDeduplicationId="dd%d" % i) for i in range(3)]
        numbers = [s["SequenceNumber"] for s in sent]
        for number in numbers:
            self.assertRegex(number, r"^[0-9]+$")
        self.assertEqual([int(n) for n in numbers], sorted(int(n) for n in numbers))
        self.assertEqual(len(set(numbers)), 3)

        batch = self.sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": "b%d" % i, "MessageBody": "b%d" % i, "MessageGroupId": "g",
             "MessageDeduplicationId": "bd%d" % i} for i in range(2)])
        batch_numbers = [e["SequenceNumber"]
                         for e in sorted(batch["Successful"], key=lambda e: e["Id"])]
        self.assertLess(int(numbers[-1]), int(batch_numbers[0]))
        self.assertLess(int(batch_numbers[0]), int(batch_numbers[1]))

        got = self.drain(url, 5, AttributeNames=["All"])
        self.assertEqual([m["Body"] for m in got], ["s0", "s1", "s2", "b0", "b1"])
        self.assertEqual([m["Attributes"]["SequenceNumber"] for m in got], numbers + batch_numbers)

    def test_purge_clears_the_deduplication_history(self):
        _, url = self.create("purgededup", fifo=True)
        first = self.sqs.send_message(QueueUrl=url, MessageBody="p", MessageGroupId="g",
                                      MessageDeduplicationId="p1")
        self.sqs.purge_queue(QueueUrl=url)
        self.wait_for_attribute(url, "ApproximateNumberOfMessages", "0")
        second = self.sqs.send_message(QueueUrl=url, MessageBody="p", MessageGroupId="g",
                                       MessageDeduplicationId="p1")
        self.assertNotEqual(second["MessageId"], first["MessageId"])
        self.assertEqual([m["MessageId"] for m in self.drain(url, 1)], [second["MessageId"]])

    def test_expired_receipt_handle_cannot_delete(self):
        _, url = self.create("expired", {"VisibilityTimeout": "1"}, fifo=True)
        self.sqs.send_message(QueueUrl=url, MessageBody="e", MessageGroupId="g",
                              MessageDeduplicationId="e1")
        message = self.receive(url, WaitTimeSeconds=2)[0]
        time.sleep(1.6)
        with self.assertRaises(ClientError) as ctx:
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        self.assertError(ctx, "InvalidParameterValue", 400)


class DeadLetterTest(SqsTestCase):
    def test_message_moves_to_the_dlq_after_max_receive_count(self):
        dlq_name, dlq_url = self.create("dlq")
        dlq_arn = self.attributes(dlq_url, ["QueueArn"])["QueueArn"]
        self.assertEqual(dlq_arn, self.arn_for(dlq_name))
        policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
        src_name, src_url = self.create("src", {"RedrivePolicy": policy, "VisibilityTimeout": "1"})

        stored = json.loads(self.attributes(src_url, ["RedrivePolicy"])["RedrivePolicy"])
        self.assertEqual(stored["deadLetterTargetArn"], dlq_arn)
        self.assertEqual(int(stored["maxReceiveCount"]), 2)
        self.assertEqual(self.sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)["queueUrls"],
                         [src_url])
        self.assertEqual(self.sqs.list_dead_letter_source_queues(QueueUrl=src_url).get(
            "queueUrls", []), [])

        attributes = {"kind": {"DataType": "String", "StringValue": "poison"},
                      "blob": {"DataType": "Binary.gz", "BinaryValue": b"\x1f\x8b"}}
        sent = self.sqs.send_message(QueueUrl=src_url, MessageBody="poison pill",
                                     MessageAttributes=attributes)
        sent_ts = None
        for attempt in (1, 2):
            got = self.receive(src_url, WaitTimeSeconds=4, AttributeNames=["All"])
            self.assertEqual(len(got), 1, "receive %d" % attempt)
            self.assertEqual(got[0]["Attributes"]["ApproximateReceiveCount"], str(attempt))
            sent_ts = got[0]["Attributes"]["SentTimestamp"]
        # The third receive would exceed maxReceiveCount: the message moves instead.
        self.assertEqual(self.receive(src_url, WaitTimeSeconds=2), [])

        moved = self.receive(dlq_url, WaitTimeSeconds=2, AttributeNames=["All"],
                             MessageAttributeNames=["All"])
        self.assertEqual(len(moved), 1)
        message = moved[0]
        self.assertEqual(message["Body"], "poison pill")
        self.assertEqual(message["MD5OfBody"], md5_hex(b"poison pill"))
        self.assertEqual(message["MessageAttributes"], attributes)
        self.assertEqual(message["MD5OfMessageAttributes"], md5_of_attributes(attributes))
        self.assertEqual(message["Attributes"]["DeadLetterQueueSourceArn"], self.arn_for(src_name))
        self.assertEqual(message["Attributes"]["SentTimestamp"], sent_ts)
        self.assertEqual(message["Attributes"]["ApproximateReceiveCount"], "3",
                         "the receive count is not reset by the move")
        self.wait_for_attribute(src_url, "ApproximateNumberOfMessages", "0")
        self.wait_for_attribute(src_url, "ApproximateNumberOfMessagesNotVisible", "0")

        # An empty RedrivePolicy removes it.
        self.sqs.set_queue_attributes(QueueUrl=src_url, Attributes={"RedrivePolicy": ""})
        self.assertNotIn("RedrivePolicy", self.attributes(src_url))
        self.assertEqual(self.sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get(
            "queueUrls", []), [])
        # Checked last so that a failure here does not hide the others: AWS keeps the MessageId.
        self.assertEqual(message["MessageId"], sent["MessageId"], "MessageId changed on the move")

    def test_list_dead_letter_source_queues_paginates(self):
        _, dlq_url = self.create("dlqmany")
        dlq_arn = self.attributes(dlq_url, ["QueueArn"])["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
        sources = sorted(self.create("srcmany", {"RedrivePolicy": policy})[1] for _ in range(3))
        self.assertEqual(sorted(self.sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)[
            "queueUrls"]), sources)
        seen = []
        token = None
        for _ in range(10):
            kwargs = {"QueueUrl": dlq_url, "MaxResults": 2}
            if token:
                kwargs["NextToken"] = token
            page = self.sqs.list_dead_letter_source_queues(**kwargs)
            self.assertLessEqual(len(page.get("queueUrls", [])), 2)
            seen += page.get("queueUrls", [])
            token = page.get("NextToken")
            if not token:
                break
        self.assertEqual(sorted(seen), sources)

    def test_fifo_group_keeps_flowing_after_a_move(self):
        _, dlq_url = self.create("fdlq", fifo=True)
        dlq_arn = self.attributes(dlq_url, ["QueueArn"])["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
        src_name, src_url = self.create(
            "fsrc", {"RedrivePolicy": policy, "VisibilityTimeout": "1",
                     "ContentBasedDeduplication": "true"}, fifo=True)
        self.sqs.send_message(QueueUrl=src_url, MessageBody="first", MessageGroupId="g")
        self.sqs.send_message(QueueUrl=src_url, MessageBody="second", MessageGroupId="g")

        self.assertEqual([m["Body"] for m in self.receive(src_url, WaitTimeSeconds=2)], ["first"])
        # "first" comes back after 1 s with its one receive used up: it moves and the group
        # unlocks for "second".
        nxt = self.receive(src_url, WaitTimeSeconds=5, VisibilityTimeout=30)
        self.assertEqual([m["Body"] for m in nxt], ["second"])
        moved = self.receive(dlq_url, WaitTimeSeconds=2, AttributeNames=["All"])
        self.assertEqual([m["Body"] for m in moved], ["first"])
        self.assertEqual(moved[0]["Attributes"]["DeadLetterQueueSourceArn"], self.arn_for(src_name))
        self.assertEqual(moved[0]["Attributes"]["MessageGroupId"], "g")

    def test_message_move_tasks(self):
        # StartMessageMoveTask, ListMessageMoveTasks and CancelMessageMoveTask came to the SQS
        # model in mid-2023; Debian's botocore 1.29 (and awscli 2.9) predate them, so redrive
        # tasks are covered by the JSON-protocol suites instead.
        if not hasattr(self.sqs, "start_message_move_task"):
            self.skipTest("botocore %s has no message move task operations" % botocore.__version__)
        self.fail("this botocore has move tasks: this suite was written for Debian's 1.29")


class BadInputTest(SqsTestCase):
    """Every bad input gets AWS's exact error code (and HTTP status where the reference has it)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.std_name = unique("bad")
        cls.std = cls.sqs.create_queue(QueueName=cls.std_name)["QueueUrl"]
        cls.small = cls.sqs.create_queue(QueueName=unique("badsmall"),
                                         Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
        cls.fifo = cls.sqs.create_queue(QueueName=unique("badfifo") + ".fifo",
                                        Attributes={"FifoQueue": "true"})["QueueUrl"]

    def error(self, code, status, call, **kwargs):
        with self.assertRaises(ClientError) as ctx:
            call(**kwargs)
        self.assertError(ctx, code, status)
        return ctx.exception.response["Error"]

    def test_get_queue_url_of_a_missing_queue(self):
        error = self.error("AWS.SimpleQueueService.NonExistentQueue", 400,
                           self.sqs.get_queue_url, QueueName="no-such-queue-anywhere")
        self.assertEqual(error.get("Type"), "Sender")
        with self.assertRaises(self.sqs.exceptions.QueueDoesNotExist):
            self.sqs.get_queue_url(QueueName="no-such-queue-anywhere")

    def test_send_to_a_missing_queue(self):
        self.error("AWS.SimpleQueueService.NonExistentQueue", 400, self.sqs.send_message,
                   QueueUrl=self.queue_url_for("no-such-queue-here"), MessageBody="x")

    def test_unknown_attribute_name_on_get(self):
        self.error("InvalidAttributeName", 400, self.sqs.get_queue_attributes, QueueUrl=self.std,
                   AttributeNames=["NoSuchAttribute"])

    def test_unknown_attribute_name_on_set(self):
        self.error("InvalidAttributeName", 400, self.sqs.set_queue_attributes, QueueUrl=self.std,
                   Attributes={"NoSuchAttribute": "1"})

    def test_out_of_range_attribute_value(self):
        self.error("InvalidAttributeValue", 400, self.sqs.set_queue_attributes, QueueUrl=self.std,
                   Attributes={"VisibilityTimeout": "43201"})
        self.error("InvalidAttributeValue", 400, self.sqs.create_queue, QueueName=unique("badval"),
                   Attributes={"DelaySeconds": "901"})
        self.error("InvalidAttributeValue", 400, self.sqs.create_queue, QueueName=unique("badval"),
                   Attributes={"MaximumMessageSize": "not-a-number"})

    def test_fifo_queue_type_cannot_change(self):
        self.error("InvalidAttributeValue", 400, self.sqs.set_queue_attributes, QueueUrl=self.fifo,
                   Attributes={"FifoQueue": "false"})

    def test_fifo_attribute_on_a_standard_queue(self):
        self.error("InvalidAttributeName", 400, self.sqs.create_queue, QueueName=unique("notfifo"),
                   Attributes={"FifoQueue": "false"})
        self.error("InvalidAttributeName", 400, self.sqs.create_queue, QueueName=unique("notfifo"),
                   Attributes={"ContentBasedDeduplication": "true"})
        self.error("InvalidAttributeName", 400, self.sqs.set_queue_attributes, QueueUrl=self.std,
                   Attributes={"FifoQueue": "true"})

    def test_fifo_name_without_fifo_attribute(self):
        self.error("InvalidParameterValue", 400, self.sqs.create_queue,
                   QueueName=unique("looksfifo") + ".fifo")

    def test_fifo_attribute_without_fifo_name(self):
        self.error("InvalidParameterValue", 400, self.sqs.create_queue,
                   QueueName=unique("notnamedfifo"), Attributes={"FifoQueue": "true"})

    def test_invalid_queue_names(self):
        for name in ("bad name", "bad/name", "bäd", "x" * 81):
            with self.subTest(name=name):
                self.error("InvalidParameterValue", 400, self.sqs.create_queue, QueueName=name)

    def test_max_number_of_messages_out_of_range(self):
        self.error("InvalidParameterValue", 400, self.sqs.receive_message, QueueUrl=self.std,
                   MaxNumberOfMessages=11)
        self.error("InvalidParameterValue", 400, self.sqs.receive_message, QueueUrl=self.std,
                   MaxNumberOfMessages=0)

    def test_wait_time_seconds_out_of_range(self):
        self.error("InvalidParameterValue", 400, self.sqs.receive_message, QueueUrl=self.std,
                   WaitTimeSeconds=21)
        self.error("InvalidParameterValue", 400, self.sqs.receive_message, QueueUrl=self.std,
                   WaitTimeSeconds=-1)

    def test_empty_batches(self):
        self.error("AWS.SimpleQueueService.EmptyBatchRequest", 400, self.sqs.send_message_batch,
                   QueueUrl=self.std, Entries=[])
        self.error("AWS.SimpleQueueService.EmptyBatchRequest", 400, self.sqs.delete_message_batch,
                   QueueUrl=self.std, Entries=[])
        self.error("AWS.SimpleQueueService.EmptyBatchRequest", 400,
                   self.sqs.change_message_visibility_batch, QueueUrl=self.std, Entries=[])

    def test_too_many_entries_in_a_batch(self):
        self.error("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400,
                   self.sqs.send_message_batch, QueueUrl=self.std,
                   Entries=[{"Id": "e%d" % i, "MessageBody": "b"} for i in range(11)])
        self.error("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400,
                   self.sqs.delete_message_batch, QueueUrl=self.std,
                   Entries=[{"Id": "e%d" % i, "ReceiptHandle": "h"} for i in range(11)])
        _, fresh = self.create("toomany")
        with self.assertRaises(ClientError):
            self.sqs.send_message_batch(QueueUrl=fresh, Entries=[
                {"Id": "e%d" % i, "MessageBody": "b"} for i in range(11)])
        self.assertEqual(self.receive(fresh, WaitTimeSeconds=1), [],
                         "nothing of a rejected batch was sent")

    def test_batch_entry_ids_not_distinct(self):
        self.error("AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400,
                   self.sqs.send_message_batch, QueueUrl=self.std,
                   Entries=[{"Id": "same", "MessageBody": "1"}, {"Id": "same", "MessageBody": "2"}])

    def test_invalid_batch_entry_id(self):
        self.error("AWS.SimpleQueueService.InvalidBatchEntryId", 400, self.sqs.send_message_batch,
                   QueueUrl=self.std, Entries=[{"Id": "not valid!", "MessageBody": "1"}])
        self.error("AWS.SimpleQueueService.InvalidBatchEntryId", 400, self.sqs.send_message_batch,
                   QueueUrl=self.std, Entries=[{"Id": "i" * 81, "MessageBody": "1"}])

    def test_batch_request_too_long(self):
        # Each entry is within the 1 MiB limit; together they are not.
        body = "z" * (110 * 1024)
        self.error("AWS.SimpleQueueService.BatchRequestTooLong", 400, self.sqs.send_message_batch,
                   QueueUrl=self.std,
                   Entries=[{"Id": "e%d" % i, "MessageBody": body} for i in range(10)])

    def test_garbage_receipt_handles(self):
        self.error("ReceiptHandleIsInvalid", 400, self.sqs.delete_message, QueueUrl=self.std,
                   ReceiptHandle="garbage")
        self.error("ReceiptHandleIsInvalid", 400, self.sqs.change_message_visibility,
                   QueueUrl=self.std, ReceiptHandle="garbage", VisibilityTimeout=10)

    def test_change_visibility_of_a_deleted_message(self):
        _, url = self.create("gone")
        self.sqs.send_message(QueueUrl=url, MessageBody="short-lived")
        message = self.receive(url, WaitTimeSeconds=2)[0]
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        self.error("InvalidParameterValue", 400, self.sqs.change_message_visibility, QueueUrl=url,
                   ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=10)

    def test_fifo_send_without_group_id(self):
        self.error("MissingParameter", 400, self.sqs.send_message, QueueUrl=self.fifo,
                   MessageBody="x", MessageDeduplicationId="d")

    def test_fifo_send_without_deduplication(self):
        self.error("InvalidParameterValue", 400, self.sqs.send_message, QueueUrl=self.fifo,
                   MessageBody="x", MessageGroupId="g")

    def test_fifo_send_with_delay(self):
        self.error("InvalidParameterValue", 400, self.sqs.send_message, QueueUrl=self.fifo,
                   MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d", DelaySeconds=2)

    def test_fifo_invalid_group_id(self):
        self.error("InvalidParameterValue", 400, self.sqs.send_message, QueueUrl=self.fifo,
                   MessageBody="x", MessageGroupId="has space", MessageDeduplicationId="d")
        self.error("InvalidParameterValue", 400, self.sqs.send_message, QueueUrl=self.fifo,
                   MessageBody="x", MessageGroupId="g" * 129, MessageDeduplicationId="d")

    def test_message_too_long(self):
        self.error("InvalidParameterValue", 400, self.sqs.send_message, QueueUrl=self.small,
                   MessageBody="m" * 1025)
        # Attribute names, types and values count toward the limit too.
        self.error("InvalidParameterValue", 400, self.sqs.send_message, QueueUrl=self.small,
                   MessageBody="m" * 1000,
                   MessageAttributes={"a": {"DataType": "String", "StringValue": "v" * 30}})
        self.error("InvalidParameterValue", 400, self.sqs.send_message, QueueUrl=self.std,
                   MessageBody="m" * 1048577)

    def test_invalid_message_contents(self):
        self.error("InvalidMessageContents", 400, self.sqs.send_message, QueueUrl=self.std,
                   MessageBody="nul \x00 inside")
        self.error("InvalidMessageContents", 400, self.sqs.send_message, QueueUrl=self.std,
                   MessageBody="escape \x1b inside")

    def test_empty_message_body(self):
        self.error("MissingParameter", 400, self.sqs.send_message, QueueUrl=self.std,
                   MessageBody="")

    def test_empty_string_attribute(self):
        self.error("InvalidParameterValue", 400, self.sqs.send_message, QueueUrl=self.std,
                   MessageBody="x",
                   MessageAttributes={"empty": {"DataType": "String", "StringValue": ""}})

    def test_queue_deleted_recently(self):
        name = unique("recent")
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        self.sqs.delete_queue(QueueUrl=url)
        self.error("AWS.SimpleQueueService.QueueDeletedRecently", 400, self.sqs.create_queue,
                   QueueName=name)

    def test_purge_queue_in_progress(self):
        _, url = self.create("purgetwice")
        self.sqs.purge_queue(QueueUrl=url)
        error = self.error("AWS.SimpleQueueService.PurgeQueueInProgress", 403, self.sqs.purge_queue,
                           QueueUrl=url)
        self.assertEqual(error.get("Type"), "Sender")

    def test_remove_unknown_permission_label(self):
        self.error("InvalidParameterValue", 400, self.sqs.remove_permission, QueueUrl=self.std,
                   Label="never-added")

    def test_redrive_policy_with_bad_max_receive_count(self):
        dlq_arn = self.attributes(self.std, ["QueueArn"])["QueueArn"]
        for count in (0, 1001):
            with self.subTest(count=count):
                self.error("InvalidParameterValue", 400, self.sqs.create_queue,
                           QueueName=unique("badredrive"),
                           Attributes={"RedrivePolicy": json.dumps(
                               {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": count})})

    def test_missing_and_unknown_action(self):
        status, body = raw_request(self.endpoint, {"Version": "2012-11-05"})
        self.assertEqual(status, 400)
        self.assertEqual(ET.fromstring(body).find(SQS_NS + "Error/" + SQS_NS + "Code").text,
                         "MissingAction")
        status, body = raw_request(self.endpoint, {"Action": "FlyToTheMoon", "Version": "2012-11-05"})
        self.assertEqual(status, 400)
        self.assertEqual(ET.fromstring(body).find(SQS_NS + "Error/" + SQS_NS + "Code").text,
                         "InvalidAction")


class WireTest(SqsTestCase):
    def test_get_request_with_query_string(self):
        name, url = self.create("viaget")
        status, body = raw_request(self.endpoint, {"Action": "GetQueueUrl", "QueueName": name,
                                                   "Version": "2012-11-05"}, method="GET")
        self.assertEqual(status, 200, body)
        root = ET.fromstring(body)
        self.assertEqual(root.tag, SQS_NS + "GetQueueUrlResponse")
        self.assertEqual(root.find(SQS_NS + "GetQueueUrlResult/" + SQS_NS + "QueueUrl").text, url)
        self.assertTrue(root.find(SQS_NS + "ResponseMetadata/" + SQS_NS + "RequestId").text)

    def test_request_posted_to_the_queue_path(self):
        name, _ = self.create("viapath")
        status, body = raw_request(self.endpoint, {
            "Action": "GetQueueAttributes", "AttributeName.1": "QueueArn", "Version": "2012-11-05"},
            path="/%s/%s" % (ACCOUNT, name))
        self.assertEqual(status, 200, body)
        self.assertIn(self.arn_for(name).encode(), body)


class SpoolCliTest(SqsTestCase):
    """An SQS queue is a Spool queue: the spool CLI sees what SQS clients made, and back."""

    def spool(self, *args):
        binary = ARGS.spool
        if not binary or not os.path.exists(binary):
            self.skipTest("no spool CLI binary (give --spool)")
        result = subprocess.run([binary, "--server", DAEMON.grpc, "--json"] + list(args),
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    def test_sqs_queue_and_message_seen_by_the_cli(self):
        name, url = self.create("cli")
        self.assertIn(name, json.dumps(self.spool("queue", "list", "--prefix", name)))
        self.sqs.send_message(QueueUrl=url, MessageBody="from sqs")
        received = self.spool("queue", "receive", name, "--wait", "5", "--delete")
        self.assertEqual([m.get("body") for m in received], ["from sqs"])

        self.spool("queue", "send", name, "from the cli")
        self.assertEqual([m["Body"] for m in self.drain(url, 1)], ["from the cli"])


class SigV4Test(unittest.TestCase):
    """A second spoold that verifies signatures, with its own account, region and URL base."""

    REGION = "eu-west-1"
    ACCOUNT = "123456789012"
    ADVERTISED = "http://sqs.spool.test:9999"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="spool-sqs-sigv4-")
        cls.daemon = Spoold(ARGS.spoold, os.path.join(cls.tmp, "data"), [
            "--sqs-auth", "sigv4", "--sqs-access-keys", "AKIDTEST:secret123,AKIDSECOND:other456",
            "--sqs-account-id", cls.ACCOUNT, "--sqs-region", cls.REGION,
            "--sqs-advertised-url", cls.ADVERTISED])
        cls.endpoint = cls.daemon.endpoint

    @classmethod
    def tearDownClass(cls):
        code = cls.daemon.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "spoold exited with %s" % code

    def client(self, key, secret):
        client = make_client(self.endpoint, key=key, secret=secret, region=self.REGION)
        self.addCleanup(client.close)
        return client

    def test_right_credentials_work(self):
        sqs = self.client("AKIDTEST", "secret123")
        name = unique("signed")
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        self.assertEqual(url, "%s/%s/%s" % (self.ADVERTISED, self.ACCOUNT, name))
        self.assertEqual(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"], "arn:aws:sqs:%s:%s:%s" % (self.REGION, self.ACCOUNT, name))
        # The signature covers the raw body bytes, non-ASCII and reserved characters included.
        body = "signed ✓ & = + %20 😀"
        sqs.send_message(QueueUrl=url, MessageBody=body)
        second = self.client("AKIDSECOND", "other456")
        got = second.receive_message(QueueUrl=url, WaitTimeSeconds=2).get("Messages", [])
        self.assertEqual([m["Body"] for m in got], [body])
        self.assertIn(url, sqs.list_queues().get("QueueUrls", []))

    def test_wrong_secret(self):
        with self.assertRaises(ClientError) as ctx:
            self.client("AKIDTEST", "not-the-secret").list_queues()
        self.assertEqual(ctx.exception.response["Error"]["Code"], "SignatureDoesNotMatch")
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)

    def test_unknown_access_key(self):
        with self.assertRaises(ClientError) as ctx:
            self.client("AKIDUNKNOWN", "secret123").list_queues()
        self.assertEqual(ctx.exception.response["Error"]["Code"], "InvalidClientTokenId")
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)

    def test_unsigned_request(self):
        status, body = raw_request(self.endpoint, {"Action": "ListQueues", "Version": "2012-11-05"})
        self.assertEqual(status, 403, body)
        self.assertEqual(ET.fromstring(body).find(SQS_NS + "Error/" + SQS_NS + "Code").text,
                         "MissingAuthenticationToken")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--spoold", required=True)
    parser.add_argument("--spool", help="the spool CLI, for the cross-API checks (default: beside "
                                        "spoold in the build tree)")
    ARGS, rest = parser.parse_known_args()
    if ARGS.spool is None:
        guess = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(ARGS.spoold))),
                             "client", "spool")
        ARGS.spool = guess if os.path.exists(guess) else None
    if botocore.__version__.split(".")[:2] != ["1", "29"]:
        print("warning: botocore %s; this suite targets Debian's 1.29 (Query protocol)"
              % botocore.__version__, file=sys.stderr)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
