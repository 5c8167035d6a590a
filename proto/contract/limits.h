// Every limit of loratrf's wire and file contracts, in one place: what a job spec may ask for,
// what a request may carry, what a checkpoint or a file may hold. The coordinator, the agent,
// the engine and the CLI all read these; docs/api.md and docs/control-plane.md quote them.
//
// Two kinds of text limit appear below, and they differ on purpose:
//   - a Max...Bytes for text that is *stored and shown* (a reason, a log line): senders cut
//     their text to it (TruncateUtf8) and the server refuses anything longer;
//   - the request limits, which bound what one call may make the coordinator hold.
#pragma once

#include <cstddef>
#include <cstdint>

namespace loratrf::limits {

// ---- job specs (proto/spec validates them) ----------------------------------------------------
inline constexpr size_t kMaxSpecBytes = 1 << 20;  // a YAML or JSON spec file or text
inline constexpr size_t kMaxJobNameLength = 63;  // [a-z0-9-], starts and ends alphanumeric
inline constexpr size_t kMaxPathLength = 4096;   // model.path, data.train, data.eval
inline constexpr int kMaxTargetModules = 64;
inline constexpr size_t kMaxModuleNameLength = 128;
inline constexpr uint32_t kMaxRank = 1024;
inline constexpr double kMaxAlpha = 1e4;
inline constexpr uint32_t kMaxEpochs = 10000;
inline constexpr uint64_t kMaxSteps = 1'000'000'000;
inline constexpr uint32_t kMaxBatchSize = 1 << 16;
inline constexpr double kMaxLearningRate = 1.0;
inline constexpr double kMaxGradNorm = 1e6;
inline constexpr double kMaxWeightDecay = 1.0;
inline constexpr uint32_t kMinSeqLen = 2;
inline constexpr uint32_t kMaxSeqLen = 1 << 17;
inline constexpr uint32_t kMaxKeepCheckpoints = 1000;
inline constexpr uint32_t kMaxWorkers = 256;
inline constexpr uint32_t kMaxSlotsPerWorker = 64;
inline constexpr int32_t kMaxPriority = 1000;
inline constexpr uint32_t kMaxRestarts = 100;
// The serialized JobSpec a job stores (SubmitJob refuses a larger one). A spec at every limit
// above is about 23 KiB; unknown fields are refused, so this bounds what one job holds.
inline constexpr size_t kMaxJobSpecBytes = 64 << 10;

// ---- names, ids and keys (proto/contract/names.h checks them) ---------------------------------
inline constexpr size_t kMaxIdBytes = 128;              // job and checkpoint ids
inline constexpr size_t kMaxWorkerNameBytes = 63;       // [a-z0-9.-]
inline constexpr size_t kMaxIdempotencyKeyBytes = 128;  // printable ASCII, no spaces
inline constexpr size_t kMaxOwnerBytes = 63;            // owners and name prefixes in filters
inline constexpr int kMaxJobLabels = 16;                // JobSpec.labels, a ListJobs filter
inline constexpr size_t kMaxJobLabelKeyBytes = 63;      // [a-z0-9._/-]
inline constexpr size_t kMaxJobLabelValueBytes = 63;    // printable ASCII

// ---- text that is stored and shown --------------------------------------------------------------
inline constexpr size_t kMaxReasonBytes = 1024;   // a state reason, a cancel reason
inline constexpr size_t kMaxLogLineBytes = 4096;  // one log event's text

// ---- requests (server/grpc/request_limits checks them before the core) -------------------------
// The largest message the server accepts: a 1 MiB checkpoint chunk fits with room to spare, as
// does an upload header listing every file a checkpoint may have.
inline constexpr int kMaxRequestBytes = 4 << 20;
// What a client accepts from the server (a page of jobs, a worker list).
inline constexpr int kMaxResponseBytes = 64 << 20;
inline constexpr size_t kMaxPageTokenBytes = 256;
inline constexpr int kMaxStateFilters = 16;
inline constexpr int kMaxWorkerLabels = 32;
inline constexpr size_t kMaxLabelKeyBytes = 63;
inline constexpr size_t kMaxLabelValueBytes = 256;
inline constexpr size_t kMaxAddressBytes = 253;  // a DNS host name or an IP address
inline constexpr size_t kMaxVersionBytes = 128;
inline constexpr int kMaxRunningAttempts = 1024;
inline constexpr int kMaxEventsPerReport = 1000;
inline constexpr int kMaxJobPageSize = 1000;  // ListJobs: larger page sizes are capped
// ListJobs: a page stops early (with a next_page_token) once its serialized jobs would pass
// this, so a page fits a client's default 4 MiB receive limit. A page always holds at least
// one job (a job is bounded through kMaxJobSpecBytes).
inline constexpr size_t kMaxJobPageBytes = 2 << 20;
inline constexpr uint32_t kMaxWorkerSlots = 1024;
inline constexpr uint32_t kMaxLocalRanks = 256;      // ranks one agent runs for one attempt
inline constexpr uint32_t kMaxWorldSize = 1 << 16;   // ranks of one attempt

// ---- checkpoints (proto/contract/checkpoint_files.h checks them) ------------------------------
inline constexpr int kMaxCheckpointFiles = 256;
inline constexpr uint64_t kMaxCheckpointFileBytes = 64ull << 30;
inline constexpr size_t kMaxChunkBytes = 1 << 20;  // one FileChunk's data
inline constexpr size_t kMaxCheckpointPathBytes = 1024;
inline constexpr int kMaxCheckpointPathDepth = 8;
inline constexpr size_t kMaxPathComponentBytes = 255;
inline constexpr uint64_t kMaxManifestBytes = 16 << 20;

// ---- credentials and files a binary reads because a flag names them ----------------------------
inline constexpr size_t kMinTokenLength = 16;   // the coordinator's --auth-token-file tokens
inline constexpr size_t kMaxTokenLength = 512;  // (a client token longer than this is refused)
inline constexpr uint64_t kMaxAuthFileBytes = 1 << 20;  // --auth-token-file
inline constexpr uint64_t kMaxTokenFileBytes = 64 << 10;  // a client's --token-file
inline constexpr uint64_t kMaxPemFileBytes = 1 << 20;
inline constexpr size_t kMaxMetricsLineBytes = 64 << 10;  // one metrics.jsonl row

}  // namespace loratrf::limits
