#pragma once

// Request and response messages of a unary callback method on one protobuf arena.
//
// A batch call's messages hold hundreds of strings and sub-messages (a receive of 100
// messages: a message id, receipt handle and body each); allocated one by one they were a
// large share of spoold's malloc time. On an arena they come from a few blocks freed at once
// when the call is done.
//
// Thread-safety: AllocateMessages may be called from any thread; each holder belongs to one
// call.

#include <cstddef>

#include <google/protobuf/arena.h>
#include <grpcpp/support/message_allocator.h>

namespace spool::protocol {

template <class Request, class Response>
class ArenaMessageAllocator final : public grpc::MessageAllocator<Request, Response> {
 public:
  grpc::MessageHolder<Request, Response>* AllocateMessages() override { return new Holder(); }

 private:
  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    Holder() : arena_(Options()) {
      this->set_request(google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(google::protobuf::Arena::CreateMessage<Response>(&arena_));
    }
    void Release() override { delete this; }

   private:
    static google::protobuf::ArenaOptions Options() {
      google::protobuf::ArenaOptions options;
      // One block holds a small call's messages; a large one grows in blocks up to 64 KiB.
      options.start_block_size = 4096;
      options.max_block_size = 64 * 1024;
      return options;
    }

    google::protobuf::Arena arena_;
  };
};

}  // namespace spool::protocol
