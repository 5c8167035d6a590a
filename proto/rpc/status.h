// The one place where absl::Status and gRPC status meet (docs/architecture.md, convention 3): the
// coordinator maps its domain errors to gRPC codes with ToGrpcStatus; the agent and the CLI turn
// what a call returned back into an absl::Status with FromGrpcStatus, so that both sides agree on
// every code. The numeric values of the two enums are the same (both follow google.rpc.Code).
//
// Threading: pure functions.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace loratrf::rpc {

// InvalidArgument → INVALID_ARGUMENT, NotFound → NOT_FOUND, FailedPrecondition →
// FAILED_PRECONDITION, AlreadyExists → ALREADY_EXISTS, Unavailable → UNAVAILABLE,
// PermissionDenied, Unauthenticated, ResourceExhausted, OutOfRange, Aborted, Cancelled,
// DeadlineExceeded and Unimplemented → their namesakes; DataLoss, Internal, Unknown and anything
// else → INTERNAL. The message is kept (it names the field and the rule).
grpc::Status ToGrpcStatus(const absl::Status& status);

// "OK", "INVALID_ARGUMENT", ...: the code's canonical name (a metrics label value).
absl::string_view GrpcCodeName(grpc::StatusCode code);

// The status a call returned, with the same code and "WHAT: message" (just the message when
// `what` is empty). A code outside the known range becomes Unknown.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view what = "");

}  // namespace loratrf::rpc
