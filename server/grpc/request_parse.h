// Requests taken as bytes and parsed by the coordinator itself.
//
// gRPC's callback API answers a request that does not deserialize with UNIMPLEMENTED and an
// empty message before any handler runs. So every method of the coordinator's services is
// registered with its request as a grpc::ByteBuffer (RequestBytesService), and the handler
// parses it with ParseRequest: a request that does not parse (invalid UTF-8 in a string field,
// nesting deeper than protobuf's limit, malformed wire data) gets INVALID_ARGUMENT naming the
// method and, when a walk of the bytes finds it, the field and the rule.
//
// Threading: RequestBytesService is set up in its constructor and only read afterwards (by
// gRPC); ParseRequest and DescribeParseFailure are pure functions, any thread.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/impl/codegen/server_callback_handlers.h"
#include "grpcpp/support/byte_buffer.h"

namespace loratrf::server {

// Parses `bytes` into `message` (cleared first). InvalidArgument naming `method` (e.g.
// "JobService/SubmitJob"), the message type and, when found, where and why it does not parse.
absl::Status ParseRequest(const grpc::ByteBuffer& bytes, absl::string_view method,
                          google::protobuf::Message* message);

// Why `bytes` do not parse as a message of `type`: "FIELD.PATH: RULE" for the first problem a
// walk of the wire format finds (invalid UTF-8 in a proto3 string, nesting deeper than
// protobuf's default recursion limit, truncated or malformed data), or "" when it finds none.
std::string DescribeParseFailure(const google::protobuf::Descriptor& type, absl::string_view bytes);

// A generated gRPC service (`Generated` = v1::X, serving v1::X::Service) whose methods are all
// served on the callback API with the request as bytes and the response typed. The derived handler
// calls Serve* once per method in its constructor, then CheckAllServed.
template <typename Generated>
class RequestBytesService : public Generated::Service {
 protected:
  template <typename Response>
  using UnaryFn = std::function<grpc::ServerUnaryReactor*(grpc::CallbackServerContext*,
                                                          const grpc::ByteBuffer*, Response*)>;
  template <typename Response>
  using ServerStreamFn = std::function<grpc::ServerWriteReactor<Response>*(
      grpc::CallbackServerContext*, const grpc::ByteBuffer*)>;
  template <typename Response>
  using ClientStreamFn = std::function<grpc::ServerReadReactor<grpc::ByteBuffer>*(
      grpc::CallbackServerContext*, Response*)>;

  template <typename Response>
  void ServeUnary(const char* method, UnaryFn<Response> fn) {
    this->MarkMethodCallback(
        Index(method),
        new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer, Response>(std::move(fn)));
  }
  template <typename Response>
  void ServeServerStream(const char* method, ServerStreamFn<Response> fn) {
    this->MarkMethodCallback(
        Index(method),
        new grpc::internal::CallbackServerStreamingHandler<grpc::ByteBuffer, Response>(
            std::move(fn)));
  }
  template <typename Response>
  void ServeClientStream(const char* method, ClientStreamFn<Response> fn) {
    this->MarkMethodCallback(
        Index(method),
        new grpc::internal::CallbackClientStreamingHandler<grpc::ByteBuffer, Response>(
            std::move(fn)));
  }

  // Aborts unless every method of the service was served above: one left to the generated
  // synchronous default would answer UNIMPLEMENTED, and the server runs no sync threads.
  void CheckAllServed() const {
    const google::protobuf::ServiceDescriptor& service = Descriptor();
    for (int i = 0; i < service.method_count(); ++i) {
      if (static_cast<size_t>(i) >= served_.size() || !served_[static_cast<size_t>(i)]) {
        Die("a method is not served", service.method(i)->name());
      }
    }
  }

 private:
  static const google::protobuf::ServiceDescriptor& Descriptor() {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
            Generated::service_full_name());
    if (service == nullptr) Die("no descriptor for the service", Generated::service_full_name());
    return *service;
  }

  // The generated service adds its methods in the order of the proto file, which is the
  // descriptor's method index.
  int Index(const char* method) {
    const google::protobuf::ServiceDescriptor& service = Descriptor();
    const google::protobuf::MethodDescriptor* found = service.FindMethodByName(method);
    if (found == nullptr) Die("no such method", method);
    served_.resize(static_cast<size_t>(service.method_count()), false);
    if (served_[static_cast<size_t>(found->index())]) Die("method served twice", method);
    served_[static_cast<size_t>(found->index())] = true;
    return found->index();
  }

  [[noreturn]] static void Die(const char* what, const std::string& name) {
    std::fprintf(stderr, "%s: %s: %s\n", Generated::service_full_name(), what, name.c_str());
    std::abort();
  }

  std::vector<bool> served_;
};

}  // namespace loratrf::server
