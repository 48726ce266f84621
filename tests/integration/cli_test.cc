// The `spool` command line against a real spoold: topic administration, produce and consume,
// queue administration, send and receive in tables and JSON, and the exit codes (0 ok, 1
// server-side error, 2 usage error).

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/testing/http_request.h"
#include "tests/testing/spoold_process.h"
#include "tests/testing/temp_dir.h"

namespace spool {
namespace {

using ::testing::HasSubstr;
using testing::SpooldProcess;
using testing::TempDir;
using Json = nlohmann::json;

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string Quote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start(SPOOLD_BINARY, dir_.Sub("data"))) << daemon_.output();
  }

  // Runs `spool --server <daemon> args...` with `input` on stdin (through a shell, with a
  // time limit so that a hang fails the test instead of stalling it).
  CliResult Run(const std::vector<std::string>& args, const std::string& input = "",
                const std::string& input_command = "") {
    const std::string in = dir_.Sub("stdin"), out = dir_.Sub("stdout"), err = dir_.Sub("stderr");
    std::ofstream(in, std::ios::binary) << input;
    std::string command =
        "timeout 60 " + Quote(SPOOL_CLI) + " --server " + Quote(daemon_.address());
    for (const auto& arg : args)
      command += " " + Quote(arg);
    command += " >" + Quote(out) + " 2>" + Quote(err);
    command =
        input_command.empty() ? command + " <" + Quote(in) : "(" + input_command + ") | " + command;
    const int status = std::system(command.c_str());
    CliResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = ReadFile(out);
    result.err = ReadFile(err);
    return result;
  }

  TempDir dir_;
  SpooldProcess daemon_;
};

TEST_F(CliTest, TopicLifecycleInTablesAndJson) {
  CliResult created = Run({"topic", "create", "orders", "--partitions", "3", "--retention", "7d",
                           "--retention-bytes", "10GiB"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr("Topic:              orders"));
  EXPECT_THAT(created.out, HasSubstr("Partitions:         3"));
  EXPECT_THAT(created.out, HasSubstr("Retention:          7d"));
  EXPECT_THAT(created.out, HasSubstr("Retention bytes:    10GiB"));
  EXPECT_TRUE(created.err.empty());

  CliResult again = Run({"topic", "create", "orders", "--partitions", "3"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("ALREADY_EXISTS"));
  EXPECT_TRUE(again.out.empty());

  ASSERT_EQ(Run({"topic", "create", "payments"}).exit_code, 0);
  CliResult table = Run({"topic", "list"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  auto lines = Lines(table.out);
  ASSERT_EQ(lines.size(), 3u) << table.out;
  EXPECT_THAT(lines[0], HasSubstr("NAME"));
  EXPECT_THAT(lines[0], HasSubstr("PARTITIONS"));
  EXPECT_THAT(lines[1], ::testing::StartsWith("orders    3"));
  EXPECT_THAT(lines[2], ::testing::StartsWith("payments  1"));

  CliResult listed = Run({"topic", "list", "--json", "--prefix", "ord"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  Json topics = Json::parse(listed.out);
  ASSERT_EQ(topics.size(), 1u);
  EXPECT_EQ(topics[0]["name"], "orders");
  EXPECT_EQ(topics[0]["partitions"], 3);
  EXPECT_EQ(topics[0]["retention_ms"], 7LL * 86'400'000);
  EXPECT_EQ(topics[0]["retention_bytes"], 10LL << 30);

  CliResult updated = Run({"--json", "topic", "update", "orders", "--partitions", "5"});
  ASSERT_EQ(updated.exit_code, 0) << updated.err;
  Json topic = Json::parse(updated.out);
  EXPECT_EQ(topic["partitions"], 5);
  EXPECT_EQ(topic["partition_info"].size(), 5u);

  CliResult described = Run({"topic", "describe", "orders"});
  ASSERT_EQ(described.exit_code, 0);
  EXPECT_THAT(described.out, HasSubstr("PARTITION  START  END  RECORDS  SIZE"));

  CliResult deleted = Run({"topic", "delete", "orders"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_THAT(deleted.out, HasSubstr("deleted topic orders"));
  CliResult gone = Run({"topic", "describe", "orders"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("NOT_FOUND"));
}

TEST_F(CliTest, ProduceThenConsumeAcrossPartitionsKeepsEachKeyInOrder) {
  ASSERT_EQ(Run({"topic", "create", "events", "--partitions", "3"}).exit_code, 0);
  std::string input;
  for (int i = 0; i < 1000; ++i)
    input += "user" + std::to_string(i % 7) + ":" + std::to_string(i) + "\n";
  std::ofstream(dir_.Sub("input.txt")) << input;
  CliResult produced =
      Run({"--json", "produce", "events", "--key-separator", ":", "--file", dir_.Sub("input.txt")});
  ASSERT_EQ(produced.exit_code, 0) << produced.err;
  Json summary = Json::parse(produced.out);
  EXPECT_EQ(summary["records"], 1000);
  EXPECT_EQ(summary["failed"], 0);

  CliResult consumed = Run({"consume", "events", "--json"});
  ASSERT_EQ(consumed.exit_code, 0) << consumed.err;
  auto lines = Lines(consumed.out);
  ASSERT_EQ(lines.size(), 1000u);
  std::map<std::string, int> last;
  std::map<std::string, int> partition_of;
  std::vector<bool> seen(1000);
  for (const auto& line : lines) {
    Json record = Json::parse(line);
    const std::string key = record["key"];
    const int value = std::stoi(record["value"].get<std::string>());
    EXPECT_EQ("user" + std::to_string(value % 7), key);
    EXPECT_FALSE(seen[value]);
    seen[value] = true;
    auto [p, fresh] = partition_of.emplace(key, record["partition"].get<int>());
    EXPECT_EQ(p->second, record["partition"].get<int>()) << key << " in two partitions";
    if (!fresh) {
      EXPECT_GT(value, last[key]) << key << " out of order";
    }
    last[key] = value;
  }

  CliResult few = Run({"consume", "events", "--max", "5", "--value-only"});
  ASSERT_EQ(few.exit_code, 0);
  EXPECT_EQ(Lines(few.out).size(), 5u);

  // The table form: PARTITION/OFFSET, time, key, value.
  CliResult one = Run({"consume", "events", "--partition", "0", "--from", "2", "--max", "1"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.out, ::testing::MatchesRegex(
                           "0/2\t[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z\tuser[0-6]\t[0-9]+\n"));

  CliResult latest = Run({"consume", "events", "--from", "latest"});
  ASSERT_EQ(latest.exit_code, 0);
  EXPECT_TRUE(latest.out.empty());
  CliResult future = Run({"consume", "events", "--from", "2099-01-01T00:00:00Z"});
  ASSERT_EQ(future.exit_code, 0);
  EXPECT_TRUE(future.out.empty());
  CliResult recent = Run({"consume", "events", "--from", "-1h", "--value-only"});
  ASSERT_EQ(recent.exit_code, 0);
  EXPECT_EQ(Lines(recent.out).size(), 1000u);
}

TEST_F(CliTest, ConsumeFollowWaitsForNewRecords) {
  ASSERT_EQ(Run({"topic", "create", "live"}).exit_code, 0);
  // The producer starts after the consumer is waiting; --max ends the follow.
  const std::string command = "sleep 0.5; printf 'one\\ntwo\\nthree\\n' | " + Quote(SPOOL_CLI) +
                              " --server " + Quote(daemon_.address()) + " produce live -q";
  const std::string out = dir_.Sub("follow.out");
  const std::string consumer =
      "timeout 60 " + Quote(SPOOL_CLI) + " --server " + Quote(daemon_.address()) +
      " consume live --from latest --follow --max 3 --value-only >" + Quote(out);
  const int status = std::system(("(" + consumer + ") & (" + command + "); wait").c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(ReadFile(out), "one\ntwo\nthree\n");
}

TEST_F(CliTest, ProduceShowsProgressForLongInputAndHeadersArrive) {
  ASSERT_EQ(Run({"topic", "create", "slow"}).exit_code, 0);
  CliResult produced = Run({"produce", "slow", "--header", "source=cli", "--key", "k"}, "",
                           "for i in 1 2 3 4 5 6 7 8; do echo line$i; sleep 0.25; done");
  ASSERT_EQ(produced.exit_code, 0) << produced.err;
  EXPECT_THAT(produced.err, HasSubstr("records/s")) << "no progress line on stderr";
  EXPECT_THAT(produced.out, HasSubstr("produced 8 records to slow"));
  CliResult consumed = Run({"--json", "consume", "slow", "--max", "1"});
  ASSERT_EQ(consumed.exit_code, 0);
  Json record = Json::parse(consumed.out);
  EXPECT_EQ(record["value"], "line1");
  EXPECT_EQ(record["key"], "k");
  EXPECT_EQ(record["headers"][0]["key"], "source");
  EXPECT_EQ(record["headers"][0]["value"], "cli");
}

TEST_F(CliTest, GroupConsumeCommitsAndGroupCommandsManageOffsets) {
  ASSERT_EQ(Run({"topic", "create", "jobs", "--partitions", "3"}).exit_code, 0);
  std::string input;
  for (int i = 0; i < 30; ++i)
    input += std::to_string(i) + "\n";
  ASSERT_EQ(Run({"produce", "jobs", "-q"}, input).exit_code, 0);

  // Two runs of one group: the second starts where the first committed.
  CliResult first = Run({"consume", "jobs", "--group", "workers", "--max", "12", "--value-only"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  CliResult second = Run({"consume", "jobs", "--group", "workers", "--value-only"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  auto a = Lines(first.out), b = Lines(second.out);
  EXPECT_EQ(a.size(), 12u);
  EXPECT_EQ(b.size(), 18u);
  std::set<std::string> all(a.begin(), a.end());
  all.insert(b.begin(), b.end());
  EXPECT_EQ(all.size(), 30u) << "a record was read twice or skipped";

  CliResult listed = Run({"group", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("workers  Empty"));
  CliResult described = Run({"group", "describe", "workers"});
  ASSERT_EQ(described.exit_code, 0) << described.err;
  EXPECT_THAT(described.out, HasSubstr("TOPIC  PARTITION  OWNER  COMMITTED  END  LAG"));
  Json d = Json::parse(Run({"--json", "group", "describe", "workers"}).out);
  ASSERT_EQ(d["offsets"].size(), 3u);
  std::int64_t lag = 0;
  for (const auto& o : d["offsets"])
    lag += std::stoll(o["lag"].get<std::string>());
  EXPECT_EQ(lag, 0);

  // A dry run changes nothing; a real reset makes the group read everything again.
  CliResult dry = Run(
      {"group", "reset-offsets", "workers", "--topic", "jobs", "--to", "earliest", "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("dry run"));
  EXPECT_TRUE(Run({"consume", "jobs", "--group", "workers"}).out.empty());
  CliResult reset =
      Run({"group", "reset-offsets", "workers", "--topic", "jobs", "--to", "earliest"});
  ASSERT_EQ(reset.exit_code, 0) << reset.err;
  EXPECT_THAT(reset.out, HasSubstr("offsets reset"));
  EXPECT_EQ(Lines(Run({"consume", "jobs", "--group", "workers"}).out).size(), 30u);

  EXPECT_EQ(
      Run({"group", "reset-offsets", "workers", "--topic", "nope", "--to", "latest"}).exit_code, 1);
  EXPECT_EQ(Run({"group", "reset-offsets", "workers", "--topic", "jobs", "--to", "99"}).exit_code,
            1);
  EXPECT_EQ(Run({"group", "reset-offsets", "workers", "--topic", "jobs", "--to", "soon"}).exit_code,
            2);
  EXPECT_EQ(Run({"group", "reset-offsets", "workers", "--topic", "jobs"}).exit_code, 2);
  EXPECT_EQ(Run({"consume", "jobs", "--group", "workers", "--partition", "1"}).exit_code, 2);
  EXPECT_EQ(Run({"consume", "jobs", "--group", "workers", "--from", "5"}).exit_code, 2);

  CliResult deleted = Run({"group", "delete", "workers"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  CliResult again = Run({"group", "delete", "workers"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(Run({"group", "describe", "workers"}).exit_code, 1);
}

TEST_F(CliTest, UsageErrorsExitWithTwoAndWriteNothing) {
  ASSERT_EQ(Run({"topic", "create", "t"}).exit_code, 0);
  const std::vector<std::vector<std::string>> bad = {
      {},
      {"topics"},
      {"topic"},
      {"topic", "create"},
      {"topic", "create", "x", "--partitions", "many"},
      {"topic", "create", "x", "--retention", "7y"},
      {"topic", "create", "x", "--retention-bytes", "lots"},
      {"topic", "update", "t"},
      {"produce", "t", "--header", "novalue"},
      {"produce", "t", "--file", "/nonexistent/input"},
      {"produce", "t", "--key", "k", "--key-separator", ":"},
      {"consume", "t", "--from", "yesterday"},
      {"consume", "t", "--wait", "0s"},
      {"--timeout", "soon", "topic", "list"},
  };
  for (const auto& args : bad) {
    CliResult result = Run(args);
    std::string joined;
    for (const auto& a : args)
      joined += a + " ";
    EXPECT_EQ(result.exit_code, 2) << joined << "\n" << result.err;
    EXPECT_FALSE(result.err.empty()) << joined;
    EXPECT_TRUE(result.out.empty()) << joined << ": " << result.out;
  }
  // Nothing was created or written by any of them.
  CliResult topics = Run({"--json", "topic", "list"});
  EXPECT_EQ(Json::parse(topics.out).size(), 1u);
  CliResult records = Run({"consume", "t"});
  EXPECT_TRUE(records.out.empty());
  // --help is not an error.
  CliResult help = Run({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("consume"));
}

TEST_F(CliTest, ServerSideErrorsExitWithOne) {
  CliResult missing = Run({"consume", "nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  CliResult produce = Run({"produce", "nope"}, "x\n");
  EXPECT_EQ(produce.exit_code, 1);
  EXPECT_THAT(produce.err, HasSubstr("NOT_FOUND"));
  CliResult invalid = Run({"topic", "create", "bad name"});
  EXPECT_EQ(invalid.exit_code, 1);
  EXPECT_THAT(invalid.err, HasSubstr("INVALID_ARGUMENT"));
  ASSERT_EQ(Run({"topic", "create", "t"}).exit_code, 0);
  CliResult beyond = Run({"consume", "t", "--from", "5"});
  EXPECT_EQ(beyond.exit_code, 1);
  EXPECT_THAT(beyond.err, HasSubstr("OUT_OF_RANGE"));
  CliResult partition = Run({"consume", "t", "--partition", "3"});
  EXPECT_EQ(partition.exit_code, 1);
  CliResult too_big = Run({"produce", "t", "--partition", "9"}, "x\n");
  EXPECT_EQ(too_big.exit_code, 1);
  EXPECT_FALSE(too_big.err.empty());

  daemon_.Stop();
  CliResult down = Run({"topic", "list", "--timeout", "5s"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_THAT(down.err, HasSubstr("UNAVAILABLE"));
}

TEST_F(CliTest, QueueCommandsInTablesAndJson) {
  ASSERT_EQ(Run({"queue", "create", "dlq"}).exit_code, 0);
  const std::vector<std::string> create = {"queue", "create",       "jobs", "--visibility-timeout",
                                           "45",    "--dlq",        "dlq",  "--max-receives",
                                           "3",     "--partitions", "2",    "--retention",
                                           "1d"};
  CliResult created = Run(create);
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr("Queue:              jobs"));
  EXPECT_THAT(created.out, HasSubstr("Type:               standard"));
  EXPECT_THAT(created.out, HasSubstr("Visibility timeout: 45s"));
  EXPECT_THAT(created.out, HasSubstr("Retention:          1d"));
  EXPECT_THAT(created.out, HasSubstr("Dead-letter queue:  dlq after 3 receives"));
  EXPECT_TRUE(created.err.empty()) << created.err;
  std::vector<std::string> again = create;
  again.push_back("--json");
  CliResult same = Run(again);
  ASSERT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(Json::parse(same.out)["created"], false) << "created again with the same settings";
  CliResult different = Run({"queue", "create", "jobs", "--visibility-timeout", "5"});
  EXPECT_EQ(different.exit_code, 1);
  EXPECT_THAT(different.err, HasSubstr("ALREADY_EXISTS"));

  CliResult table = Run({"queue", "list"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(Lines(table.out), (std::vector<std::string>{"NAME", "dlq", "jobs"}));
  CliResult listed = Run({"--json", "queue", "list", "--prefix", "j"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_EQ(Json::parse(listed.out), Json::array({"jobs"}));
  EXPECT_EQ(Json::parse(Run({"queue", "dlq-sources", "dlq", "--json"}).out), Json::array({"jobs"}));

  CliResult described = Run({"queue", "describe", "jobs", "--json"});
  ASSERT_EQ(described.exit_code, 0) << described.err;
  Json queue = Json::parse(described.out);
  EXPECT_EQ(queue["name"], "jobs");
  EXPECT_EQ(queue["owns_topic"], true);
  EXPECT_EQ(queue["attributes"]["visibility_timeout_seconds"], 45);
  EXPECT_EQ(queue["attributes"]["partitions"], 2);
  EXPECT_EQ(queue["attributes"]["retention_seconds"], "86400") << "int64 in proto3 JSON";
  EXPECT_EQ(queue["attributes"]["redrive_policy"]["dead_letter_queue"], "dlq");
  EXPECT_EQ(queue["stats"]["approximate_visible"], "0");

  // set: only what is given changes; --no-dlq removes the policy.
  CliResult set = Run({"--json", "queue", "set", "jobs", "--visibility-timeout", "2m",
                       "--receive-wait", "1", "--no-dlq"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  Json changed = Json::parse(set.out);
  EXPECT_EQ(changed["attributes"]["visibility_timeout_seconds"], 120);
  EXPECT_EQ(changed["attributes"]["receive_wait_seconds"], 1);
  EXPECT_EQ(changed["attributes"]["partitions"], 2);
  EXPECT_FALSE(changed["attributes"].contains("redrive_policy"));
  EXPECT_EQ(Json::parse(Run({"queue", "dlq-sources", "dlq", "--json"}).out), Json::array());

  // send: one message per BODY, '-' reads stdin; receive --delete acknowledges them.
  CliResult sent = Run({"queue", "send", "jobs", "one", "two", "--header", "origin=cli"});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  auto sent_lines = Lines(sent.out);
  ASSERT_EQ(sent_lines.size(), 2u) << sent.out;
  EXPECT_THAT(sent_lines[0],
              ::testing::MatchesRegex("sent [0-9a-f-]{36} \\(partition [01], offset [0-9]+\\)"));
  CliResult piped = Run({"--json", "queue", "send", "jobs", "-"}, "three\nlines\n");
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  Json piped_json = Json::parse(piped.out);
  ASSERT_EQ(piped_json.size(), 1u);
  EXPECT_EQ(piped_json[0]["message_id"].get<std::string>().size(), 36u);
  EXPECT_EQ(piped_json[0]["duplicate"], false);

  std::map<std::string, Json> received;
  for (int i = 0; i < 5 && received.size() < 3; ++i) {
    CliResult got = Run({"--json", "queue", "receive", "jobs", "--max", "10", "--delete"});
    ASSERT_EQ(got.exit_code, 0) << got.err;
    for (const auto& m : Json::parse(got.out))
      received[m["body"].get<std::string>()] = m;
  }
  ASSERT_EQ(received.size(), 3u);
  ASSERT_TRUE(received.contains("three\nlines\n")) << "stdin is one message, byte for byte";
  const Json& one = received["one"];
  EXPECT_EQ(one["receive_count"], 1);
  EXPECT_EQ(one["receipt_handle"].get<std::string>().size(), 50u);
  EXPECT_EQ(one["headers"], Json::parse(R"([{"key": "origin", "value": "cli"}])"));
  CliResult empty = Run({"--json", "queue", "receive", "jobs", "--wait", "0"});
  ASSERT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_EQ(Json::parse(empty.out), Json::array()) << "--delete deleted them";

  // The table form of receive, and the receipt-handle commands.
  ASSERT_EQ(Run({"queue", "send", "jobs", "hello"}).exit_code, 0);
  CliResult line = Run({"queue", "receive", "jobs", "--wait", "1", "--visibility", "60"});
  ASSERT_EQ(line.exit_code, 0) << line.err;
  EXPECT_THAT(line.out, ::testing::MatchesRegex("[0-9a-f-]{36}\t1\t[0-9a-f]{50}\thello\n"));
  const std::string handle = Lines(line.out).at(0).substr(39, 50);
  CliResult visible = Run({"queue", "change-visibility", "jobs", handle, "0"});
  ASSERT_EQ(visible.exit_code, 0) << visible.err;
  EXPECT_THAT(visible.out, HasSubstr("visible again"));
  CliResult second = Run({"queue", "receive", "jobs", "--wait", "1"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.out, HasSubstr("\t2\t")) << "received a second time";
  const std::string second_handle = Lines(second.out).at(0).substr(39, 50);
  CliResult stale = Run({"queue", "delete-message", "jobs", handle});
  EXPECT_EQ(stale.exit_code, 1);
  EXPECT_THAT(stale.err, HasSubstr("FAILED_PRECONDITION"));
  CliResult acked = Run({"queue", "delete-message", "jobs", second_handle});
  ASSERT_EQ(acked.exit_code, 0) << acked.err;
  EXPECT_THAT(acked.out, HasSubstr("deleted the message from jobs"));

  // FIFO: one group comes back in send order.
  ASSERT_EQ(Run({"queue", "create", "orders.fifo", "--fifo", "--content-based-dedup"}).exit_code,
            0);
  ASSERT_EQ(Run({"queue", "send", "orders.fifo", "a", "b", "c", "--group", "g"}).exit_code, 0);
  CliResult fifo = Run({"queue", "receive", "orders.fifo", "--max", "10"});
  ASSERT_EQ(fifo.exit_code, 0) << fifo.err;
  auto fifo_lines = Lines(fifo.out);
  ASSERT_EQ(fifo_lines.size(), 3u) << fifo.out;
  EXPECT_THAT(fifo_lines[0], ::testing::EndsWith("\ta"));
  EXPECT_THAT(fifo_lines[1], ::testing::EndsWith("\tb"));
  EXPECT_THAT(fifo_lines[2], ::testing::EndsWith("\tc"));
  CliResult ungrouped = Run({"queue", "send", "orders.fifo", "x", "y"});
  EXPECT_EQ(ungrouped.exit_code, 1);
  EXPECT_THAT(ungrouped.err, HasSubstr("message 2 of 2 was not sent: INVALID_ARGUMENT"));

  // purge and delete.
  ASSERT_EQ(Run({"queue", "send", "jobs", "p1", "p2"}).exit_code, 0);
  CliResult purged = Run({"--json", "queue", "purge", "jobs"});
  ASSERT_EQ(purged.exit_code, 0) << purged.err;
  EXPECT_EQ(Json::parse(purged.out)["approximate_messages_purged"], 2);
  EXPECT_EQ(Run({"queue", "receive", "jobs", "--wait", "0"}).out, "");
  CliResult deleted = Run({"queue", "delete", "jobs"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_THAT(deleted.out, HasSubstr("deleted queue jobs"));
  CliResult gone = Run({"queue", "describe", "jobs"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("NOT_FOUND"));
  EXPECT_TRUE(gone.out.empty());
}

TEST_F(CliTest, QueueHandlesInBatchesNacksAndRedriveAllowPolicies) {
  ASSERT_EQ(Run({"queue", "create", "work", "--visibility-timeout", "60"}).exit_code, 0);
  ASSERT_EQ(Run({"queue", "send", "work", "a", "b", "c", "d"}).exit_code, 0);
  CliResult got = Run({"--json", "queue", "receive", "work", "--max", "10", "--wait", "1"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  std::map<std::string, std::string> handle;  // body -> receipt handle
  for (const auto& m : Json::parse(got.out))
    handle[m["body"].get<std::string>()] = m["receipt_handle"].get<std::string>();
  ASSERT_EQ(handle.size(), 4u) << got.out;

  // Several handles: one batch, a result per handle; a stale one fails alone.
  CliResult deleted = Run({"queue", "delete-message", "work", handle["a"], handle["b"], "zz"});
  EXPECT_EQ(deleted.exit_code, 1) << "one handle was garbage";
  EXPECT_THAT(deleted.out, HasSubstr("deleted 2 of 3 message(s) in work"));
  EXPECT_THAT(deleted.err, HasSubstr("message 3 of 3 in work: INVALID_ARGUMENT"));

  // A nack gives "c" back at once; "d" goes back through a batch read from stdin.
  CliResult nacked = Run({"queue", "nack", "work", handle["c"]});
  ASSERT_EQ(nacked.exit_code, 0) << nacked.err;
  EXPECT_THAT(nacked.out, HasSubstr("gave back 1 of 1 message(s) in work"));
  CliResult released =
      Run({"--json", "queue", "change-visibility", "work", "-", "0"}, handle["d"] + "\n\n");
  ASSERT_EQ(released.exit_code, 0) << released.err;
  EXPECT_EQ(Json::parse(released.out)[0]["ok"], true) << released.out;
  CliResult again = Run({"--json", "queue", "receive", "work", "--max", "10", "--wait", "1"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  std::set<std::string> bodies;
  std::string lines;
  for (const auto& m : Json::parse(again.out)) {
    bodies.insert(m["body"].get<std::string>());
    EXPECT_EQ(m["receive_count"], 2) << m.dump();
    lines += m["receipt_handle"].get<std::string>() + "\n";
  }
  EXPECT_EQ(bodies, (std::set<std::string>{"c", "d"})) << "a and b were deleted";
  CliResult rest = Run({"queue", "delete-message", "work", "-"}, lines);
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  EXPECT_THAT(rest.out, HasSubstr("deleted 2 of 2 message(s) in work"));
  EXPECT_THAT(Run({"queue", "describe", "work"}).out,
              HasSubstr("0 visible, 0 in flight, 0 delayed"));

  // Many handles go in batches of the server's size (queue_max_batch, 1,000 by default), not
  // SQS's 10, each still with its own result.
  std::vector<std::string> bodies25;
  for (int i = 0; i < 25; ++i)
    bodies25.push_back("m" + std::to_string(i));
  std::vector<std::string> send25 = {"queue", "send", "work"};
  send25.insert(send25.end(), bodies25.begin(), bodies25.end());
  ASSERT_EQ(Run(send25).exit_code, 0);
  std::string many;
  for (int round = 0; round < 10 && std::count(many.begin(), many.end(), '\n') < 25; ++round) {
    CliResult got25 = Run({"--json", "queue", "receive", "work", "--max", "10", "--wait", "1"});
    ASSERT_EQ(got25.exit_code, 0) << got25.err;
    for (const auto& m : Json::parse(got25.out))
      many += m["receipt_handle"].get<std::string>() + "\n";
  }
  ASSERT_EQ(std::count(many.begin(), many.end(), '\n'), 25) << many;
  // -1 when /metrics has no such line (the earlier batch calls above made one).
  auto batch_calls = [&] {
    const std::string body =
        testing::BodyOf(testing::HttpRequest(daemon_.http_address(), "GET", "/metrics"));
    const std::string key =
        "spool_grpc_request_duration_seconds_count{method=\"DeleteMessageBatch\"} ";
    const auto at = body.find(key);
    return at == std::string::npos ? -1 : std::stoi(body.substr(at + key.size()));
  };
  const int calls_before = batch_calls();
  ASSERT_GT(calls_before, 0) << "no DeleteMessageBatch count in /metrics";
  CliResult deleted25 = Run({"queue", "delete-message", "work", "-"}, many + "zz\n");
  EXPECT_EQ(deleted25.exit_code, 1) << "one handle was garbage";
  EXPECT_THAT(deleted25.out, HasSubstr("deleted 25 of 26 message(s) in work"));
  EXPECT_THAT(deleted25.err, HasSubstr("message 26 of 26 in work: INVALID_ARGUMENT"));
  // A call is counted once its answer is sent, so the last one may trail the CLI's exit.
  int calls_after = batch_calls();
  for (int i = 0; i < 100 && calls_after == calls_before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    calls_after = batch_calls();
  }
  EXPECT_EQ(calls_after - calls_before, 1) << "26 handles took more than one call";

  // Which queues may use a dead-letter queue.
  ASSERT_EQ(Run({"queue", "create", "dlq", "--redrive-allow", "none"}).exit_code, 0);
  CliResult refused = Run({"queue", "create", "src", "--dlq", "dlq", "--max-receives", "3"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("FAILED_PRECONDITION"));
  CliResult allowed = Run({"queue", "set", "dlq", "--redrive-allow", "src,other"});
  ASSERT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_THAT(allowed.out, HasSubstr("Dead letters from:  src, other"));
  ASSERT_EQ(Run({"queue", "create", "src", "--dlq", "dlq", "--max-receives", "3"}).exit_code, 0);
  CliResult opened = Run({"--json", "queue", "set", "dlq", "--redrive-allow", "all"});
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  EXPECT_EQ(Json::parse(opened.out)["attributes"]["redrive_allow_policy"]["permission"],
            "REDRIVE_PERMISSION_ALLOW_ALL");
}

TEST_F(CliTest, QueueReceiveFollowStreamsUntilMaxAndDeletesWhatItPrinted) {
  ASSERT_EQ(Run({"queue", "create", "jobs"}).exit_code, 0);
  ASSERT_EQ(Run({"queue", "send", "jobs", "a", "b", "c"}).exit_code, 0);
  CliResult two = Run({"--json", "queue", "receive", "jobs", "--follow", "-n", "2", "--delete"});
  ASSERT_EQ(two.exit_code, 0) << two.err;
  auto lines = Lines(two.out);
  ASSERT_EQ(lines.size(), 2u) << two.out;
  std::set<std::string> bodies;
  for (const auto& line : lines) {
    const Json m = Json::parse(line);  // one object per line
    bodies.insert(m["body"].get<std::string>());
    EXPECT_EQ(m["receive_count"], 1);
  }
  // The third was neither printed nor deleted, and is visible now.
  CliResult rest = Run({"--json", "queue", "receive", "jobs", "--max", "10", "--wait", "1"});
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  const Json third = Json::parse(rest.out);
  ASSERT_EQ(third.size(), 1u) << rest.out;
  bodies.insert(third[0]["body"].get<std::string>());
  EXPECT_EQ(bodies, (std::set<std::string>{"a", "b", "c"}));

  // The table form waits for a message sent after it started.
  CliResult later = Run({"queue", "receive", "jobs", "--follow", "--max", "1"}, "",
                        "sleep 1; " + Quote(SPOOL_CLI) + " --server " + Quote(daemon_.address()) +
                            " queue send jobs late >/dev/null");
  ASSERT_EQ(later.exit_code, 0) << later.err;
  EXPECT_THAT(later.out, ::testing::MatchesRegex("[0-9a-f-]{36}\t1\t[0-9a-f]{50}\tlate\n"));
}

TEST_F(CliTest, QueueRedriveStartsListsAndRefusesToCancelAFinishedTask) {
  ASSERT_EQ(Run({"queue", "create", "dlq"}).exit_code, 0);
  ASSERT_EQ(Run({"queue", "create", "src", "--dlq", "dlq", "--max-receives", "1"}).exit_code, 0);
  ASSERT_EQ(Run({"queue", "send", "src", "poison"}).exit_code, 0);
  ASSERT_EQ(Run({"queue", "receive", "src", "--visibility", "0"}).exit_code, 0);
  ASSERT_EQ(Run({"queue", "receive", "src", "--wait", "0"}).out, "") << "moved instead";
  bool arrived = false;
  for (int i = 0; i < 100 && !arrived; ++i) {
    CliResult d = Run({"--json", "queue", "describe", "dlq"});
    arrived = d.exit_code == 0 && Json::parse(d.out)["stats"]["approximate_visible"] == "1";
    if (!arrived) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(arrived);

  CliResult started = Run({"--json", "queue", "redrive", "start", "dlq", "--rate", "1000"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const std::string task_id = Json::parse(started.out).at(0)["task_id"];  // as list prints it
  EXPECT_EQ(task_id.size(), 16u);
  std::string status;
  for (int i = 0; i < 100; ++i) {
    CliResult listed = Run({"--json", "queue", "redrive", "list", "dlq"});
    ASSERT_EQ(listed.exit_code, 0) << listed.err;
    Json tasks = Json::parse(listed.out);
    ASSERT_EQ(tasks.size(), 1u) << listed.out;
    status = tasks[0]["status"];
    if (status.find("RUNNING") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_THAT(status, HasSubstr("COMPLETED"));
  CliResult table = Run({"queue", "redrive", "list", "dlq"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr(task_id));
  CliResult back = Run({"queue", "receive", "src", "--wait", "1", "--delete"});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_THAT(back.out, HasSubstr("poison"));
  CliResult cancel = Run({"queue", "redrive", "cancel", task_id});
  EXPECT_EQ(cancel.exit_code, 1);
  EXPECT_THAT(cancel.err, HasSubstr("FAILED_PRECONDITION"));
}

TEST_F(CliTest, QueueBadInputsExitWithTwoAndServerRefusalsWithOne) {
  ASSERT_EQ(Run({"queue", "create", "q"}).exit_code, 0);
  // Usage: the message names what is wrong; nothing is sent.
  const std::vector<std::pair<std::vector<std::string>, std::string>> usage = {
      {{"queue"}, "A subcommand is required"},
      {{"queue", "create"}, "name is required"},
      {{"queue", "create", "x", "--visibility-timeout", "soon"},
       "--visibility-timeout: 'soon' is not a number of seconds"},
      {{"queue", "create", "x", "--delay", "1500ms"}, "--delay: '1500ms' is not a number"},
      {{"queue", "create", "x", "--dlq", "q"}, "--dlq and --max-receives go together"},
      {{"queue", "create", "x", "--max-message-bytes", "lots"}, "--max-message-bytes: 'lots'"},
      {{"queue", "create", "x", "--partitions", "many"}, "--partitions"},
      {{"queue", "set", "q"}, "nothing to change"},
      {{"queue", "set", "q", "--no-dlq", "--dlq", "q", "--max-receives", "2"},
       "--no-dlq cannot be used with --dlq"},
      {{"queue", "send", "q"}, "body is required"},
      {{"queue", "send", "q", "a", "b", "--dedup-id", "d"}, "--dedup-id with several BODY"},
      {{"queue", "send", "q", "-", "-"}, "BODY '-' (stdin) can be given only once"},
      {{"queue", "send", "q", "x", "--header", "novalue"}, "'novalue' is not KEY=VALUE"},
      {{"queue", "receive", "q", "--max", "0"}, "--max must be within 1..1000"},
      {{"queue", "receive", "q", "--wait", "forever"}, "--wait: 'forever'"},
      {{"queue", "receive", "q", "--follow", "--wait", "1"}, "--wait does not go with --follow"},
      {{"queue", "receive", "q", "--follow", "--max", "0"}, "--max must be at least 1"},
      {{"queue", "change-visibility", "q", "h", "later"}, "seconds: 'later'"},
      {{"queue", "nack", "q", "h", "--delay", "soon"}, "--delay: 'soon'"},
      {{"queue", "nack", "q"}, "handle is required"},
      {{"queue", "delete-message", "q", "-"}, "no receipt handles (none on stdin)"},
      {{"queue", "set", "q", "--redrive-allow", "a,,b"}, "has an empty queue name"},
      {{"queue", "redrive"}, "A subcommand is required"},
  };
  for (const auto& [args, message] : usage) {
    CliResult result = Run(args);
    std::string joined;
    for (const auto& a : args)
      joined += a + " ";
    EXPECT_EQ(result.exit_code, 2) << joined << "\n" << result.err;
    EXPECT_THAT(result.err, HasSubstr(message)) << joined;
    EXPECT_TRUE(result.out.empty()) << joined << ": " << result.out;
  }
  EXPECT_EQ(Json::parse(Run({"--json", "queue", "list"}).out), Json::array({"q"}));
  EXPECT_EQ(Run({"queue", "receive", "q", "--wait", "0"}).out, "") << "nothing was sent";

  // The server's refusals: its status on one line.
  const std::vector<std::pair<std::vector<std::string>, std::string>> refused = {
      {{"queue", "send", "nope", "x"}, "cannot send to queue nope: NOT_FOUND: "},
      {{"queue", "create", "bad name"}, "cannot create queue bad name: INVALID_ARGUMENT: "},
      {{"queue", "create", "x", "--fifo"}, "INVALID_ARGUMENT"},
      {{"queue", "receive", "q", "--wait", "21"}, "INVALID_ARGUMENT"},
      {{"queue", "delete-message", "q", "garbage"}, "INVALID_ARGUMENT"},
      {{"queue", "send", "q", "x", "--header", "spool.x=1"}, "INVALID_ARGUMENT"},
      {{"queue", "purge", "nope"}, "NOT_FOUND"},
      {{"queue", "receive", "nope", "--follow"}, "cannot receive from queue nope: NOT_FOUND: "},
      {{"queue", "dlq-sources", "nope"}, "NOT_FOUND"},
  };
  for (const auto& [args, message] : refused) {
    CliResult result = Run(args);
    std::string joined;
    for (const auto& a : args)
      joined += a + " ";
    EXPECT_EQ(result.exit_code, 1) << joined << "\n" << result.err;
    EXPECT_THAT(result.err, HasSubstr(message)) << joined;
    EXPECT_EQ(Lines(result.err).size(), 1u) << joined << ": " << result.err;
  }

  daemon_.Stop();
  CliResult down = Run({"queue", "list", "--timeout", "5s"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_THAT(down.err, HasSubstr("UNAVAILABLE"));
}

}  // namespace
}  // namespace spool
