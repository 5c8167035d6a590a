// Fuzz target: the job spec parsers. Any input must give a spec or an error, never a crash; a
// spec that parses must print and parse back to itself, in both formats.
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/spec/job_spec.h"

namespace {

void CheckRoundTrip(const loratrf::v1::JobSpec& spec) {
  using google::protobuf::util::MessageDifferencer;
  auto from_yaml = loratrf::spec::ParseJobSpecYaml(loratrf::spec::JobSpecToYaml(spec));
  auto from_json = loratrf::spec::ParseJobSpecJson(loratrf::spec::JobSpecToJson(spec));
  if (!from_yaml.ok() || !MessageDifferencer::Equals(spec, *from_yaml)) std::abort();
  if (!from_json.ok() || !MessageDifferencer::Equals(spec, *from_json)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  for (auto parse : {loratrf::spec::ParseJobSpecYaml, loratrf::spec::ParseJobSpecJson}) {
    auto spec = parse(text);
    if (spec.ok()) CheckRoundTrip(*spec);
  }
  return 0;
}
