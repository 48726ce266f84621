// Creates a topic, publishes a few keyed records with the batching Producer, and reads them
// back with a Reader per partition.
//
//   produce_and_read [host:port] [topic]

#include <cstdio>
#include <future>
#include <string>
#include <vector>

#include <spool/client.h>
#include <spool/producer.h>

int main(int argc, char** argv) {
  spool::ClientOptions options;
  options.address = argc > 1 ? argv[1] : "127.0.0.1:50051";
  const std::string topic = argc > 2 ? argv[2] : "example";
  spool::Client client(options);

  spool::Admin admin(client);
  spool::TopicSpec spec;
  spec.name = topic;
  spec.partitions = 2;
  auto created = admin.CreateTopic(spec);
  if (!created.ok() && created.status.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
    std::fprintf(stderr, "create %s: %s\n", topic.c_str(), created.status.error_message().c_str());
    return 1;
  }

  // Each Send returns at once; the future is ready once the record is durable.
  spool::Producer producer(client);
  std::vector<std::future<spool::Delivery>> deliveries;
  for (int i = 0; i < 10; ++i) {
    spool::ProducerRecord record;
    record.topic = topic;
    record.key = "customer-" + std::to_string(i % 3);
    record.value = "order " + std::to_string(i);
    deliveries.push_back(producer.Send(std::move(record)));
  }
  producer.Flush();
  for (auto& future : deliveries) {
    spool::Delivery delivery = future.get();
    if (!delivery.ok()) {
      std::fprintf(stderr, "send: %s\n", delivery.status.error_message().c_str());
      return 1;
    }
    std::printf("sent to partition %u offset %llu\n", delivery.partition,
                static_cast<unsigned long long>(delivery.offset));
  }

  auto described = admin.GetTopic(topic);
  if (!described.ok()) return 1;
  int read = 0;
  for (const auto& partition : described->partitions()) {
    spool::Reader reader(client, topic, partition.partition());
    while (true) {
      auto records = reader.Poll(std::chrono::milliseconds(0));
      if (!records.ok()) {
        std::fprintf(stderr, "read: %s\n", records.status.error_message().c_str());
        return 1;
      }
      if (records->empty()) break;
      for (const auto& record : *records) {
        std::printf("read %u/%llu %s: %s\n", record.partition(),
                    static_cast<unsigned long long>(record.offset()), record.key().c_str(),
                    record.value().c_str());
        ++read;
      }
    }
  }
  std::printf("read %d records\n", read);
  return 0;
}
