// absl::Status ⇄ gRPC status, the one mapping the coordinator, the agent and the CLI share.
#include "proto/rpc/status.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loratrf::rpc {
namespace {

using ::testing::HasSubstr;

TEST(Status, MapsEveryDomainErrorToGrpc) {
  struct Case {
    absl::Status in;
    grpc::StatusCode out;
  };
  for (const Case& c : std::vector<Case>{
           {absl::OkStatus(), grpc::StatusCode::OK},
           {absl::InvalidArgumentError("spec.name: bad"), grpc::StatusCode::INVALID_ARGUMENT},
           {absl::NotFoundError("x"), grpc::StatusCode::NOT_FOUND},
           {absl::FailedPreconditionError("x"), grpc::StatusCode::FAILED_PRECONDITION},
           {absl::AlreadyExistsError("x"), grpc::StatusCode::ALREADY_EXISTS},
           {absl::UnavailableError("x"), grpc::StatusCode::UNAVAILABLE},
           {absl::PermissionDeniedError("x"), grpc::StatusCode::PERMISSION_DENIED},
           {absl::UnauthenticatedError("x"), grpc::StatusCode::UNAUTHENTICATED},
           {absl::ResourceExhaustedError("x"), grpc::StatusCode::RESOURCE_EXHAUSTED},
           {absl::OutOfRangeError("x"), grpc::StatusCode::OUT_OF_RANGE},
           {absl::AbortedError("x"), grpc::StatusCode::ABORTED},
           {absl::CancelledError("x"), grpc::StatusCode::CANCELLED},
           {absl::DeadlineExceededError("x"), grpc::StatusCode::DEADLINE_EXCEEDED},
           {absl::UnimplementedError("x"), grpc::StatusCode::UNIMPLEMENTED},
           {absl::DataLossError("x"), grpc::StatusCode::INTERNAL},
           {absl::InternalError("x"), grpc::StatusCode::INTERNAL},
           {absl::UnknownError("x"), grpc::StatusCode::INTERNAL},
       }) {
    EXPECT_EQ(ToGrpcStatus(c.in).error_code(), c.out) << c.in;
  }
  grpc::Status mapped = ToGrpcStatus(absl::InvalidArgumentError("spec.name: bad"));
  EXPECT_EQ(mapped.error_message(), "spec.name: bad");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::INVALID_ARGUMENT), "INVALID_ARGUMENT");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::OK), "OK");
}

// What a call returned comes back with the same code, so that the agent's retry decisions and
// the coordinator's answers mean the same thing.
TEST(Status, FromGrpcKeepsTheCodeAndPrefixesTheMessage) {
  for (int code = 1; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code), "why");
    if (code == 13 || code == 15 || code == 2) continue;  // Internal, DataLoss, Unknown: INTERNAL
    absl::Status back = FromGrpcStatus(ToGrpcStatus(status));
    EXPECT_EQ(back.code(), status.code()) << status;
    EXPECT_EQ(back.message(), "why");
  }
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK, "Register").ok());
  absl::Status prefixed =
      FromGrpcStatus(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "stale"), "Heartbeat");
  EXPECT_TRUE(absl::IsFailedPrecondition(prefixed));
  EXPECT_EQ(prefixed.message(), "Heartbeat: stale");
  EXPECT_TRUE(absl::IsUnknown(FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(99), "x"))));
  EXPECT_EQ(GrpcCodeName(static_cast<grpc::StatusCode>(99)), "UNKNOWN");
}

}  // namespace
}  // namespace loratrf::rpc
