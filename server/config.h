#pragma once

// spoold's configuration: every key has an embedded default and can be set, in rising order
// of precedence, by the YAML file given with --config, by a SPOOL_<KEY> environment variable
// (SPOOL_DATA_DIR, ...) and by a command-line flag (--data-dir, ...). An unknown key in the
// file or the environment, or a bad value anywhere, stops startup with one line that names it.
//
// Thread-safety: built once in main before any thread starts.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"

namespace spool::server {

struct Config {
  std::string data_dir = "./data";
  std::string grpc_listen = "127.0.0.1:50051";
  std::string http_listen = "127.0.0.1:9324";
  std::int64_t http_max_connections = 10'000;
  std::string fsync = "always";  // always | interval
  std::int64_t fsync_interval_ms = 50;
  std::string receive_fsync = "always";  // always | deferred
  std::int64_t max_batch_bytes = 64LL << 20;
  std::int64_t max_batch_records = 100'000;
  std::int64_t queue_max_batch = 1'000;
  std::int64_t publish_stream_window = 1024;
  std::int64_t worker_threads = 0;  // 0: one per core
  std::int64_t retention_check_interval_ms = 30'000;
  std::int64_t shutdown_grace_ms = 10'000;
  std::int64_t group_min_session_timeout_ms = 1'000;
  std::int64_t group_max_session_timeout_ms = 1'800'000;
  std::int64_t group_max_members = 1'000;
  std::int64_t group_offsets_retention_ms = 7LL * 24 * 3'600'000;
  std::string log_level = "info";
  // The SQS-compatible API on the HTTP port.
  std::string sqs_auth = "off";    // off | sigv4
  std::string sqs_access_keys;     // sigv4: "ACCESS_KEY_ID:SECRET[,ACCESS_KEY_ID:SECRET...]"
  std::string sqs_advertised_url;  // base of queue URLs; empty: http://<http_listen>
  std::string sqs_account_id = "000000000000";
  std::string sqs_region = "us-east-1";
  std::int64_t sqs_purge_interval_s = 60;
  std::int64_t sqs_recreate_wait_s = 60;
};

// sqs_access_keys as access key id -> secret; InvalidArgument on a malformed list.
Result<std::map<std::string, std::string>> ParseAccessKeys(const std::string& text);
// The base of queue URLs: sqs_advertised_url, else http://<http host>:<bound port>.
std::string AdvertisedUrl(const Config& config, int http_port);

// Checks that need several keys (e.g. a minimum not above its maximum).
Status CheckConfig(const Config& config);

// One configuration key: its name (snake_case, as in the file), help text and how it is
// parsed and shown.
struct ConfigKey {
  std::string name;
  std::string help;
  std::function<Status(Config&, const std::string&)> set;
  std::function<std::string(const Config&)> get;

  std::string Flag() const;    // --data-dir
  std::string EnvVar() const;  // SPOOL_DATA_DIR
};

const std::vector<ConfigKey>& ConfigKeys();

// Applies the keys of a YAML mapping; `source` names the file in errors.
Status ApplyYaml(const std::string& yaml_text, const std::string& source, Config& config);
// Applies every SPOOL_<KEY> variable, looked up with `getenv`, that names a key (others are
// CheckEnvironmentNames's concern).
Status ApplyEnvironment(const std::function<const char*(const char*)>& getenv, Config& config);
// Refuses a SPOOL_ variable (from `names`, the environment's) that sets nothing: a misspelled
// key must not be ignored. SPOOL_CONFIG (the file) and SPOOL_SERVER (the CLI's) are allowed.
Status CheckEnvironmentNames(const std::vector<std::string>& names);
// Applies key=value pairs (from flags).
Status ApplyValues(const std::map<std::string, std::string>& values, const std::string& source,
                   Config& config);

}  // namespace spool::server
