#pragma once

// Printing for the CLI: aligned tables for people, JSON for scripts.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "spool/v1/admin.pb.h"
#include "spool/v1/common.pb.h"
#include "spool/v1/queue.pb.h"

namespace spool::cli {

// Columns padded to their widest cell, two spaces apart, header first.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

// "2026-11-28T10:00:00.250Z"
std::string FormatTimestampMs(std::int64_t ms);
// "7d", "36h", "90s", "250ms"; -1 is "forever".
std::string FormatDurationMs(std::int64_t ms);
// "10GiB", "1.5MiB", "512B"; -1 is "unlimited".
std::string FormatBytes(std::int64_t bytes);

// "NOT_FOUND", "INVALID_ARGUMENT", ...
std::string_view StatusCodeName(grpc::StatusCode code);

bool IsValidUtf8(std::string_view text);
std::string Base64(std::string_view bytes);

// A topic as people read it (describe) and as scripts do.
std::string FormatTopic(const v1::Topic& topic);
nlohmann::json TopicJson(const v1::Topic& topic);
nlohmann::json TopicConfigJson(const v1::TopicConfig& config);

// One consumed record: "PARTITION/OFFSET  TIME  KEY  VALUE" (a "-" for no key), or a JSON
// object whose key and value are strings when they are UTF-8, else *_base64.
std::string FormatRecordLine(const v1::Record& record);
nlohmann::json RecordJson(std::string_view topic, const v1::Record& record);

// Any API message in proto3 JSON with the .proto field names and every field (64-bit numbers
// are strings, bytes base64), for the commands whose --json output is the API's own message.
nlohmann::json ProtoJson(const google::protobuf::Message& message);

// A queue as people read it (describe, create, set).
std::string FormatQueue(const v1::Queue& queue);

// One received message: "MESSAGE-ID  RECEIVES  RECEIPT-HANDLE  BODY" (tab-separated, like a
// consumed record), or its proto3 JSON with the body, key and header values as in RecordJson.
std::string FormatQueueMessageLine(const v1::QueueMessage& message);
nlohmann::json QueueMessageJson(const v1::QueueMessage& message);

}  // namespace spool::cli
