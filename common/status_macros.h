// Status helpers shared by every loratrf module. Errors cross module boundaries as
// absl::Status / absl::StatusOr, never as exceptions (docs/architecture.md, convention 2).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LORATRF_CONCAT_INNER_(a, b) a##b
#define LORATRF_CONCAT_(a, b) LORATRF_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status loratrf_status_ = (expr);       \
    if (!loratrf_status_.ok()) return loratrf_status_; \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares x from an absl::StatusOr, or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  LORATRF_ASSIGN_OR_RETURN_IMPL_(LORATRF_CONCAT_(loratrf_statusor_, __LINE__), lhs, expr)

#define LORATRF_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()
