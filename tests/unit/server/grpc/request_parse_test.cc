// ParseRequest and DescribeParseFailure: requests that parse come through unchanged; those that
// do not are INVALID_ARGUMENT naming the method, the type and, where the walk finds it, the
// field and the rule.
#include "server/grpc/request_parse.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/loratrf/v1/job_service.pb.h"

namespace loratrf::server {
namespace {

using ::testing::HasSubstr;

grpc::ByteBuffer Bytes(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// A length-delimited field (number < 16, length < 128) as protobuf writes it.
std::string Field(int number, const std::string& value) {
  return std::string(1, static_cast<char>(number << 3 | 2)) +
         static_cast<char>(value.size()) + value;
}

TEST(RequestParse, ValidBytesParseUnchanged) {
  v1::SubmitJobRequest request;
  request.mutable_spec()->set_name("caf\xC3\xA9-\xF0\x9F\x98\x80");  // 2- and 4-byte UTF-8
  request.mutable_spec()->mutable_data()->set_train("/data/train.jsonl");
  request.set_idempotency_key("key-1");
  v1::SubmitJobRequest parsed;
  ASSERT_TRUE(ParseRequest(Bytes(request.SerializeAsString()), "JobService/SubmitJob", &parsed).ok());
  EXPECT_EQ(parsed.SerializeAsString(), request.SerializeAsString());
  EXPECT_EQ(DescribeParseFailure(*v1::SubmitJobRequest::descriptor(), request.SerializeAsString()),
            "");
}

TEST(RequestParse, InvalidUtf8NamesTheFieldPath) {
  // SubmitJobRequest.spec (1) → JobSpec.data (4) → DataSpec.train (1).
  for (const std::string& bad : {std::string("\xFF"), std::string("\xC0\x80"),  // overlong NUL
                                 std::string("\xED\xA0\x80"),                  // a surrogate
                                 std::string("\xE2\x82")}) {                   // cut short
    const std::string bytes = Field(1, Field(4, Field(1, "/x/" + bad)));
    v1::SubmitJobRequest parsed;
    absl::Status status = ParseRequest(Bytes(bytes), "JobService/SubmitJob", &parsed);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(),
              "JobService/SubmitJob: the request could not be parsed as loratrf.v1.SubmitJobRequest: "
              "spec.data.train: invalid UTF-8 in a string field (send raw bytes as bytes)");
  }
}

TEST(RequestParse, DeepUnknownGroupsAndTruncatedDataAreNamed) {
  std::string deep;
  for (int i = 0; i < 101; ++i) deep += static_cast<char>(15 << 3 | 3);
  for (int i = 0; i < 101; ++i) deep += static_cast<char>(15 << 3 | 4);
  EXPECT_THAT(DescribeParseFailure(*v1::GetJobRequest::descriptor(), deep),
              HasSubstr("nested more than 100 deep"));
  EXPECT_EQ(DescribeParseFailure(*v1::GetJobRequest::descriptor(), Field(1, "")), "");
  EXPECT_THAT(DescribeParseFailure(*v1::GetJobRequest::descriptor(), "\x0A\x10" "ab"),
              HasSubstr("id: malformed data at byte 2 (a length past the end of the data)"));
  EXPECT_THAT(DescribeParseFailure(*v1::GetJobRequest::descriptor(), "\x7C"),  // END_GROUP 15
              HasSubstr("closes no group"));
  EXPECT_THAT(DescribeParseFailure(*v1::GetJobRequest::descriptor(), "\x7B"),  // START_GROUP 15
              HasSubstr("a group is not closed"));
  EXPECT_THAT(DescribeParseFailure(*v1::GetJobRequest::descriptor(), "\x0F"),  // wire type 7
              HasSubstr("wire type 7"));
}

}  // namespace
}  // namespace loratrf::server
