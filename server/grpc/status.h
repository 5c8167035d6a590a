// The one place where domain errors become gRPC status codes (DESIGN.md, convention 3).
//
// Threading: pure functions.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace loratrf::server {

// InvalidArgument → INVALID_ARGUMENT, NotFound → NOT_FOUND, FailedPrecondition →
// FAILED_PRECONDITION, AlreadyExists → ALREADY_EXISTS, Unavailable → UNAVAILABLE,
// PermissionDenied, Unauthenticated, ResourceExhausted, OutOfRange, Aborted, Cancelled,
// DeadlineExceeded and Unimplemented → their namesakes; DataLoss, Internal, Unknown and anything
// else → INTERNAL. The message is kept (it names the field and the rule).
grpc::Status ToGrpcStatus(const absl::Status& status);

// "OK", "INVALID_ARGUMENT", ...: the code's canonical name (a metrics label value).
absl::string_view GrpcCodeName(grpc::StatusCode code);

}  // namespace loratrf::server
