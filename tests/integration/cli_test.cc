// The `spool` command line against a real spoold: topic administration, produce and consume
// in tables and JSON, and the exit codes (0 ok, 1 server-side error, 2 usage error).

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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

}  // namespace
}  // namespace spool
