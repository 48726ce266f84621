#include "server/config.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

namespace spool::server {
namespace {

TEST(ConfigTest, DefaultsRunOnOneMachineWithNoFile) {
  Config config;

  EXPECT_EQ(config.data_dir, "./data");
  EXPECT_EQ(config.grpc_listen, "127.0.0.1:50051");
  EXPECT_EQ(config.fsync, "always");
}

TEST(ConfigTest, YamlSetsKeys) {
  Config config;

  Status s = ApplyYaml("data_dir: /var/lib/spool\nfsync: interval\nfsync_interval_ms: 20\n",
                       "spoold.yaml", config);

  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(config.data_dir, "/var/lib/spool");
  EXPECT_EQ(config.fsync, "interval");
  EXPECT_EQ(config.fsync_interval_ms, 20);
}

TEST(ConfigTest, UnknownKeysAndBadValuesAreNamed) {
  Config config;

  Status unknown = ApplyYaml("data_dri: /tmp\n", "a.yaml", config);
  Status bad_int = ApplyYaml("fsync_interval_ms: soon\n", "b.yaml", config);
  Status out_of_range = ApplyYaml("fsync_interval_ms: 0\n", "c.yaml", config);
  Status bad_enum = ApplyYaml("fsync: sometimes\n", "d.yaml", config);
  Status bad_listen = ApplyYaml("grpc_listen: localhost\n", "e.yaml", config);
  Status bad_port = ApplyYaml("grpc_listen: 127.0.0.1:70000\n", "f.yaml", config);
  Status not_a_map = ApplyYaml("- a\n- b\n", "g.yaml", config);
  Status nested = ApplyYaml("data_dir: {a: 1}\n", "h.yaml", config);
  Status broken = ApplyYaml("data_dir: [\n", "i.yaml", config);

  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("a.yaml: unknown key 'data_dri'"), std::string::npos)
      << unknown.error().message;
  ASSERT_FALSE(bad_int);
  EXPECT_NE(bad_int.error().message.find("'soon' is not a whole number"), std::string::npos);
  ASSERT_FALSE(out_of_range);
  EXPECT_NE(out_of_range.error().message.find("out of range 1-10000"), std::string::npos);
  ASSERT_FALSE(bad_enum);
  EXPECT_NE(bad_enum.error().message.find("'sometimes' is not one of always, interval"),
            std::string::npos);
  EXPECT_FALSE(bad_listen);
  EXPECT_FALSE(bad_port);
  EXPECT_FALSE(not_a_map);
  EXPECT_FALSE(nested);
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.error().message.find("not valid YAML"), std::string::npos);
  EXPECT_EQ(config.data_dir, "./data") << "a rejected file changes nothing it did not set";
}

TEST(ConfigTest, AnUnknownSpoolVariableIsRefusedByName) {
  EXPECT_TRUE(CheckEnvironmentNames({"PATH", "SPOOL_DATA_DIR", "SPOOL_FSYNC_INTERVAL_MS",
                                     "SPOOL_CONFIG", "SPOOL_SERVER", "SPOOLD", "HOME"}));
  Status misspelled = CheckEnvironmentNames({"SPOOL_DATA_DIR", "SPOOL_FSYNC_INTERVAL"});
  ASSERT_FALSE(misspelled);
  EXPECT_EQ(misspelled.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(misspelled.error().message.find("SPOOL_FSYNC_INTERVAL:"), std::string::npos)
      << misspelled.error().message;
  EXPECT_FALSE(CheckEnvironmentNames({"SPOOL_data_dir"})) << "keys are upper case";
}

TEST(ConfigTest, EnvironmentOverridesTheFileAndFlagsOverrideBoth) {
  Config config;
  const std::map<std::string, std::string> env = {{"SPOOL_DATA_DIR", "/from/env"},
                                                  {"SPOOL_LOG_LEVEL", "debug"}};
  auto getenv = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };

  ASSERT_TRUE(ApplyYaml("data_dir: /from/file\nlog_level: warn\nfsync: interval\n", "f", config));
  ASSERT_TRUE(ApplyEnvironment(getenv, config));
  ASSERT_TRUE(ApplyValues({{"data_dir", "/from/flag"}}, "flag", config));

  EXPECT_EQ(config.data_dir, "/from/flag");
  EXPECT_EQ(config.log_level, "debug");
  EXPECT_EQ(config.fsync, "interval");
}

TEST(ConfigTest, BadEnvironmentValueIsNamed) {
  Config config;
  auto getenv = [](const char* name) -> const char* {
    return std::string(name) == "SPOOL_WORKER_THREADS" ? "-3" : nullptr;
  };

  Status s = ApplyEnvironment(getenv, config);

  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("SPOOL_WORKER_THREADS"), std::string::npos);
}

TEST(ConfigTest, FlagAndEnvironmentNamesFollowTheKey) {
  const ConfigKey* key = nullptr;
  for (const ConfigKey& k : ConfigKeys()) {
    if (k.name == "fsync_interval_ms") key = &k;
  }

  ASSERT_NE(key, nullptr);
  EXPECT_EQ(key->Flag(), "--fsync-interval-ms");
  EXPECT_EQ(key->EnvVar(), "SPOOL_FSYNC_INTERVAL_MS");
}

// deploy/spoold.yaml documents every key; it must parse and must not miss one.
TEST(ConfigTest, TheShippedExampleFileNamesEveryKeyAndParses) {
  std::ifstream in(SPOOL_EXAMPLE_CONFIG);
  ASSERT_TRUE(in) << SPOOL_EXAMPLE_CONFIG;
  std::stringstream text;
  text << in.rdbuf();
  Config config;

  Status s = ApplyYaml(text.str(), "deploy/spoold.yaml", config);

  ASSERT_TRUE(s) << s.error().message;
  for (const ConfigKey& key : ConfigKeys()) {
    EXPECT_NE(text.str().find("\n" + key.name + ":"), std::string::npos)
        << key.name << " is missing from deploy/spoold.yaml";
  }
}

TEST(ConfigTest, GroupSessionTimeoutBoundsMustBeOrdered) {
  Config config;
  ASSERT_TRUE(CheckConfig(config));
  ASSERT_TRUE(ApplyYaml("group_min_session_timeout_ms: 60000\ngroup_max_session_timeout_ms: 30000",
                        "test", config));
  Status s = CheckConfig(config);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("group_min_session_timeout_ms"), std::string::npos);
}

}  // namespace
}  // namespace spool::server
