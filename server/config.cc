#include "server/config.h"

#include <algorithm>
#include <charconv>
#include <functional>

#include <yaml-cpp/yaml.h>

namespace spool::server {
namespace {

Result<std::int64_t> ParseInt(const std::string& key, const std::string& text, std::int64_t min,
                              std::int64_t max) {
  std::int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) {
    return InvalidArgument(key + ": '" + text + "' is not a whole number");
  }
  if (value < min || value > max) {
    return InvalidArgument(key + ": " + text + " is out of range " + std::to_string(min) + "-" +
                           std::to_string(max));
  }
  return value;
}

ConfigKey IntKey(std::string name, std::string help, std::int64_t Config::*field, std::int64_t min,
                 std::int64_t max) {
  return {name, std::move(help),
          [name, field, min, max](Config& c, const std::string& text) -> Status {
            auto value = ParseInt(name, text, min, max);
            if (!value) return value.error();
            c.*field = *value;
            return Ok();
          },
          [field](const Config& c) { return std::to_string(c.*field); }};
}

ConfigKey StringKey(std::string name, std::string help, std::string Config::*field,
                    std::vector<std::string> allowed = {}) {
  return {
      name, std::move(help),
      [name, field, allowed](Config& c, const std::string& text) -> Status {
        if (text.empty()) return InvalidArgument(name + ": must not be empty");
        if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), text) == allowed.end()) {
          std::string list;
          for (const auto& a : allowed)
            list += (list.empty() ? "" : ", ") + a;
          return InvalidArgument(name + ": '" + text + "' is not one of " + list);
        }
        c.*field = text;
        return Ok();
      },
      [field](const Config& c) { return c.*field; }};
}

// host:port with a port number in 0-65535 (0 picks a free port).
Status CheckListen(const std::string& name, const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return InvalidArgument(name + ": '" + text + "' is not host:port");
  }
  auto port = ParseInt(name, text.substr(colon + 1), 0, 65535);
  if (!port) return InvalidArgument(name + ": '" + text + "' has no valid port");
  return Ok();
}

ConfigKey ListenKey(std::string name, std::string help, std::string Config::*field) {
  return {name, std::move(help),
          [name, field](Config& c, const std::string& text) -> Status {
            if (Status s = CheckListen(name, text); !s) return s;
            c.*field = text;
            return Ok();
          },
          [field](const Config& c) { return c.*field; }};
}

// A string that may be empty (meaning: derived or unset), checked by `check` otherwise.
ConfigKey OptionalStringKey(std::string name, std::string help, std::string Config::*field,
                            std::function<Status(const std::string&)> check) {
  return {name, std::move(help),
          [field, check](Config& c, const std::string& text) -> Status {
            if (!text.empty()) {
              if (Status s = check(text); !s) return s;
            }
            c.*field = text;
            return Ok();
          },
          [field](const Config& c) { return c.*field; }};
}

}  // namespace

Result<std::map<std::string, std::string>> ParseAccessKeys(const std::string& text) {
  std::map<std::string, std::string> keys;
  std::size_t start = 0;
  while (start <= text.size() && !text.empty()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string pair = text.substr(start, comma - start);
    const std::size_t colon = pair.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == pair.size()) {
      return InvalidArgument(
          "sqs_access_keys: expected ACCESS_KEY_ID:SECRET pairs separated by "
          "commas");
    }
    keys[pair.substr(0, colon)] = pair.substr(colon + 1);
    start = comma + 1;
  }
  return keys;
}

std::string AdvertisedUrl(const Config& config, int http_port) {
  if (!config.sqs_advertised_url.empty()) {
    std::string url = config.sqs_advertised_url;
    while (url.ends_with('/'))
      url.pop_back();
    return url;
  }
  std::string host = config.http_listen.substr(0, config.http_listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::" || host == "[::]") host = "[::1]";
  return "http://" + host + ":" + std::to_string(http_port);
}

std::string ConfigKey::Flag() const {
  std::string flag = "--" + name;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

std::string ConfigKey::EnvVar() const {
  std::string var = "SPOOL_" + name;
  std::transform(var.begin(), var.end(), var.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
  return var;
}

const std::vector<ConfigKey>& ConfigKeys() {
  static const std::vector<ConfigKey> keys = {
      StringKey("data_dir", "Directory of the RocksDB store (created if missing)",
                &Config::data_dir),
      ListenKey("grpc_listen", "gRPC listen address host:port (port 0 picks a free port)",
                &Config::grpc_listen),
      ListenKey("http_listen",
                "HTTP listen address host:port for the SQS API, /healthz, /readyz and /metrics "
                "(port 0 picks a free port)",
                &Config::http_listen),
      IntKey("http_max_connections",
             "HTTP connections open at once; one more is answered 503 and closed",
             &Config::http_max_connections, 1, 1'000'000),
      StringKey("fsync",
                "always: acknowledge writes after fsync; interval: after the WAL write, "
                "fsyncing every fsync_interval_ms (can lose that much on power loss)",
                &Config::fsync, {"always", "interval"}),
      IntKey("fsync_interval_ms", "fsync period in interval mode", &Config::fsync_interval_ms, 1,
             10'000),
      StringKey("receive_fsync",
                "always: answer a queue receive once its leases (with the receive counts) are "
                "durable; deferred: as soon as they are queued, one fsync less per receive (a "
                "crash can forget the last receives: their messages come back at once and "
                "their receive counts miss them)",
                &Config::receive_fsync, {"always", "deferred"}),
      IntKey("max_batch_bytes", "Largest publish batch in bytes; also bounds gRPC request size",
             &Config::max_batch_bytes, 1024, 256LL << 20),
      IntKey("max_batch_records", "Most records in one publish batch", &Config::max_batch_records,
             1, 1'000'000),
      IntKey("queue_max_batch",
             "Most messages in one native queue send or receive, and entries in one delete "
             "or visibility batch (the SQS API keeps SQS's 10)",
             &Config::queue_max_batch, 10, 1'000),
      IntKey("publish_stream_window",
             "Batches one PublishStream may have unanswered; past it, or once they hold "
             "max_batch_bytes, the stream is not read until answers go out",
             &Config::publish_stream_window, 1, 1'000'000),
      IntKey("worker_threads", "Broker worker threads; 0 means one per core",
             &Config::worker_threads, 0, 256),
      IntKey("retention_check_interval_ms", "How often retention runs",
             &Config::retention_check_interval_ms, 100, 3'600'000),
      IntKey("shutdown_grace_ms", "How long calls in flight may take to finish on SIGTERM",
             &Config::shutdown_grace_ms, 0, 600'000),
      IntKey("group_min_session_timeout_ms", "Shortest session timeout a group may choose",
             &Config::group_min_session_timeout_ms, 1'000, 3'600'000),
      IntKey("group_max_session_timeout_ms", "Longest session timeout a group may choose",
             &Config::group_max_session_timeout_ms, 1'000, 3'600'000),
      IntKey("group_max_members", "Most members one consumer group may have",
             &Config::group_max_members, 1, 100'000),
      IntKey("group_offsets_retention_ms",
             "Offsets of a group without members or commits for this long are deleted",
             &Config::group_offsets_retention_ms, 60'000, 365LL * 24 * 3'600'000),
      StringKey("log_level", "trace, debug, info, warn, error, critical or off", &Config::log_level,
                {"trace", "debug", "info", "warn", "error", "critical", "off"}),
      StringKey("sqs_auth",
                "SQS API authentication: off accepts any signature; sigv4 verifies AWS Signature "
                "V4 against sqs_access_keys (HTTP 403 otherwise)",
                &Config::sqs_auth, {"off", "sigv4"}),
      OptionalStringKey("sqs_access_keys",
                        "Access keys for sqs_auth: sigv4, as ACCESS_KEY_ID:SECRET pairs separated "
                        "by commas",
                        &Config::sqs_access_keys,
                        [](const std::string& text) -> Status {
                          auto keys = ParseAccessKeys(text);
                          if (!keys) return keys.error();
                          return Ok();
                        }),
      OptionalStringKey("sqs_advertised_url",
                        "Base of the queue URLs the SQS API hands out (clients may send requests "
                        "there); empty: http://<http_listen host>:<its bound port>",
                        &Config::sqs_advertised_url,
                        [](const std::string& text) -> Status {
                          if (text.starts_with("http://") || text.starts_with("https://")) {
                            return Ok();
                          }
                          return InvalidArgument("sqs_advertised_url: '" + text +
                                                 "' must start with http:// or https://");
                        }),
      OptionalStringKey("sqs_account_id", "Account id in queue URLs and ARNs (12 digits)",
                        &Config::sqs_account_id,
                        [](const std::string& text) -> Status {
                          if (text.size() == 12 &&
                              std::all_of(text.begin(), text.end(),
                                          [](char c) { return c >= '0' && c <= '9'; })) {
                            return Ok();
                          }
                          return InvalidArgument("sqs_account_id: '" + text + "' is not 12 digits");
                        }),
      StringKey("sqs_region", "Region in queue ARNs and the SigV4 scope", &Config::sqs_region),
      IntKey("sqs_purge_interval_s",
             "A queue can be purged once in this many seconds (AWS: 60); 0 turns the rule off",
             &Config::sqs_purge_interval_s, 0, 3600),
      IntKey("sqs_recreate_wait_s",
             "A deleted queue's name can be used again after this many seconds (AWS: 60); 0 "
             "turns the rule off",
             &Config::sqs_recreate_wait_s, 0, 3600),
  };
  return keys;
}

namespace {
const ConfigKey* FindKey(const std::string& name) {
  for (const ConfigKey& key : ConfigKeys()) {
    if (key.name == name) return &key;
  }
  return nullptr;
}

std::string KnownKeys() {
  std::string list;
  for (const ConfigKey& key : ConfigKeys())
    list += (list.empty() ? "" : ", ") + key.name;
  return list;
}
}  // namespace

Status ApplyYaml(const std::string& yaml_text, const std::string& source, Config& config) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(source + ": not valid YAML: " + e.what());
  }
  if (root.IsNull()) return Ok();  // an empty file keeps every default
  if (!root.IsMap()) return InvalidArgument(source + ": expected a mapping of key: value");
  for (const auto& entry : root) {
    const std::string name = entry.first.as<std::string>();
    const ConfigKey* key = FindKey(name);
    if (key == nullptr) {
      return InvalidArgument(source + ": unknown key '" + name + "' (known: " + KnownKeys() + ")");
    }
    if (!entry.second.IsScalar()) {
      return InvalidArgument(source + ": " + name + " must be a single value");
    }
    if (Status s = key->set(config, entry.second.as<std::string>()); !s) {
      return InvalidArgument(source + ": " + s.error().message);
    }
  }
  return Ok();
}

Status ApplyEnvironment(const std::function<const char*(const char*)>& getenv, Config& config) {
  for (const ConfigKey& key : ConfigKeys()) {
    const std::string var = key.EnvVar();
    if (const char* value = getenv(var.c_str()); value != nullptr) {
      if (Status s = key.set(config, value); !s) {
        return InvalidArgument("environment " + var + ": " + s.error().message);
      }
    }
  }
  return Ok();
}

Status CheckEnvironmentNames(const std::vector<std::string>& names) {
  for (const std::string& var : names) {
    if (!var.starts_with("SPOOL_") || var == "SPOOL_CONFIG" || var == "SPOOL_SERVER") continue;
    const bool known = std::any_of(ConfigKeys().begin(), ConfigKeys().end(),
                                   [&](const ConfigKey& key) { return key.EnvVar() == var; });
    if (!known) {
      return InvalidArgument("environment " + var +
                             ": not a spoold setting (unset it; the SPOOL_ variables are " +
                             "SPOOL_CONFIG and SPOOL_<KEY> for a key of spoold --help, " +
                             "and the CLI's SPOOL_SERVER)");
    }
  }
  return Ok();
}

Status ApplyValues(const std::map<std::string, std::string>& values, const std::string& source,
                   Config& config) {
  for (const auto& [name, value] : values) {
    const ConfigKey* key = FindKey(name);
    if (key == nullptr) return InvalidArgument(source + ": unknown key '" + name + "'");
    if (Status s = key->set(config, value); !s) {
      return InvalidArgument(source + " " + key->Flag() + ": " + s.error().message);
    }
  }
  return Ok();
}

Status CheckConfig(const Config& config) {
  if (config.group_min_session_timeout_ms > config.group_max_session_timeout_ms) {
    return InvalidArgument("group_min_session_timeout_ms (" +
                           std::to_string(config.group_min_session_timeout_ms) +
                           ") is above group_max_session_timeout_ms (" +
                           std::to_string(config.group_max_session_timeout_ms) + ")");
  }
  if (config.sqs_auth == "sigv4" && config.sqs_access_keys.empty()) {
    return InvalidArgument("sqs_auth sigv4 needs sqs_access_keys (ACCESS_KEY_ID:SECRET,...)");
  }
  if (config.sqs_account_id.empty()) return InvalidArgument("sqs_account_id: must not be empty");
  return Ok();
}

}  // namespace spool::server
