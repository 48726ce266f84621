"""A second-language client: Python stubs generated from proto/spool/v1 with Debian's
python3-grpc-tools, driving a real spoold on 127.0.0.1 port 0. Proves the API is usable
without the C++ client.

usage: test_grpc_api.py --spoold PATH --proto-dir DIR
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ARGS = None


def generate_stubs(proto_dir, out_dir):
    from grpc_tools import protoc

    os.makedirs(out_dir, exist_ok=True)
    files = [os.path.join("spool", "v1", f)
             for f in sorted(os.listdir(os.path.join(proto_dir, "spool", "v1"))) if f.endswith(".proto")]
    code = protoc.main(["protoc", "-I" + proto_dir, "--python_out=" + out_dir,
                        "--grpc_python_out=" + out_dir] + files)
    if code != 0:
        raise RuntimeError("protoc failed with %d" % code)
    for package in ("spool", os.path.join("spool", "v1")):
        open(os.path.join(out_dir, package, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)


class Spoold:
    """A child spoold; start() waits for its startup line and reads the bound address."""

    def __init__(self, binary, data_dir):
        self.proc = subprocess.Popen(
            [binary, "--data-dir", data_dir, "--grpc-listen", "127.0.0.1:0",
             "--http-listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = []
        self.address = None
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.output.append(line)
                match = re.search(r"spoold ready: grpc=(\S+)", line)
                if match:
                    self.address = match.group(1)
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=pump, daemon=True)
        self.reader.start()
        if not ready.wait(30) or self.address is None:
            self.stop()
            raise RuntimeError("spoold did not start:\n" + "".join(self.output))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        return self.proc.returncode


class GrpcApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="spool-py-")
        generate_stubs(ARGS.proto_dir, os.path.join(cls.tmp, "stubs"))
        import grpc
        from spool.v1 import admin_pb2_grpc, consume_pb2_grpc, publish_pb2_grpc

        cls.daemon = Spoold(ARGS.spoold, os.path.join(cls.tmp, "data"))
        cls.channel = grpc.insecure_channel(cls.daemon.address)
        cls.admin = admin_pb2_grpc.AdminServiceStub(cls.channel)
        cls.publish = publish_pb2_grpc.PublishServiceStub(cls.channel)
        cls.stream = consume_pb2_grpc.StreamServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        code = cls.daemon.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "spoold exited with %s" % code

    def test_create_publish_fetch(self):
        from spool.v1 import admin_pb2, common_pb2, consume_pb2, publish_pb2

        created = self.admin.CreateTopic(
            admin_pb2.CreateTopicRequest(config=admin_pb2.TopicConfig(name="py.events", partitions=3)),
            timeout=20)
        self.assertEqual(created.topic.config.partitions, 3)
        self.assertEqual(len(created.topic.partitions), 3)

        records = [common_pb2.Record(key=b"user-1", value=("event %d" % i).encode(),
                                     headers=[common_pb2.Header(key="source", value=b"python")])
                   for i in range(10)]
        published = self.publish.Publish(publish_pb2.PublishRequest(topic="py.events", records=records),
                                         timeout=20)
        self.assertEqual(len(published.results), 10)
        partition = published.results[0].partition
        self.assertTrue(all(r.partition == partition for r in published.results), "one key, one partition")
        self.assertEqual([r.offset for r in published.results], list(range(10)))

        fetched = self.stream.Fetch(consume_pb2.FetchRequest(topic="py.events", partition=partition, offset=0),
                                    timeout=20)
        self.assertEqual([r.value for r in fetched.records], [("event %d" % i).encode() for i in range(10)])
        self.assertEqual(fetched.records[0].key, b"user-1")
        self.assertTrue(fetched.records[0].HasField("key"))
        self.assertEqual(fetched.records[0].headers[0].key, "source")
        self.assertEqual(fetched.next_offset, 10)
        self.assertGreater(fetched.records[0].append_timestamp_ms, 0)

        latest = self.stream.ListOffsets(consume_pb2.ListOffsetsRequest(
            topic="py.events", partition=partition, spec=consume_pb2.OFFSET_SPEC_LATEST), timeout=20)
        self.assertEqual(latest.offset, 10)

    def test_errors_arrive_as_grpc_status_codes(self):
        import grpc
        from spool.v1 import admin_pb2, consume_pb2, publish_pb2

        with self.assertRaises(grpc.RpcError) as bad_name:
            self.admin.CreateTopic(admin_pb2.CreateTopicRequest(config=admin_pb2.TopicConfig(name="no/slash")),
                                   timeout=20)
        self.assertEqual(bad_name.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as missing:
            self.publish.Publish(publish_pb2.PublishRequest(topic="py.missing"), timeout=20)
        self.assertEqual(missing.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.admin.CreateTopic(admin_pb2.CreateTopicRequest(config=admin_pb2.TopicConfig(name="py.empty")),
                               timeout=20)
        with self.assertRaises(grpc.RpcError) as beyond:
            self.stream.Fetch(consume_pb2.FetchRequest(topic="py.empty", offset=1), timeout=20)
        self.assertEqual(beyond.exception.code(), grpc.StatusCode.OUT_OF_RANGE)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--spoold", required=True)
    parser.add_argument("--proto-dir", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
