#include "server/grpc/request_parse.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "grpcpp/support/proto_buffer_reader.h"

namespace loratrf::server {
namespace {

namespace pb = google::protobuf;

// protobuf's default recursion limit for nested messages and groups: deeper input fails to
// parse, so the walk names it as the cause.
constexpr int kMaxDepth = 100;

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint32_t code;
    if ((c & 0xE0) == 0xC0) {
      length = 2, code = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3, code = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4, code = c & 0x07;
    } else {
      return false;
    }
    if (i + length > n) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kMin[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

// Walks the wire format of one message, following the fields `type` knows, until it finds
// something protobuf's parser refuses. Recursion is bounded by kMaxDepth.
class Walker {
 public:
  explicit Walker(absl::string_view bytes)
      : in_(reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<int>(bytes.size())) {}

  // The problem in the message (or group, when `group` is its field number) of `type` (null:
  // an unknown field's contents) that starts here, or "".
  std::string Message(const pb::Descriptor* type, const std::string& path, int depth, int group) {
    for (;;) {
      const uint32_t tag = in_.ReadTag();
      if (tag == 0) {
        if (!in_.ConsumedEntireMessage()) return Malformed(path, "a malformed field tag");
        if (group != 0) return Where(path, "a group is not closed");
        return "";
      }
      const int number = static_cast<int>(tag >> 3);
      const int wire_type = static_cast<int>(tag & 7);
      if (number == 0) return Malformed(path, "field number 0");
      const pb::FieldDescriptor* field =
          type != nullptr ? type->FindFieldByNumber(number) : nullptr;
      // Unknown fields do not lengthen the path: a deep nest of them would make it huge.
      const std::string field_path =
          field != nullptr ? (path.empty() ? field->name() : absl::StrCat(path, ".", field->name()))
                           : path;
      const std::string unknown =
          field != nullptr ? "" : absl::StrCat("unknown field ", number, ": ");
      switch (wire_type) {
        case 0: {  // varint
          uint64_t ignored;
          if (!in_.ReadVarint64(&ignored))
            return Malformed(field_path, unknown + "a truncated varint");
          break;
        }
        case 1: {  // fixed64
          uint64_t ignored;
          if (!in_.ReadLittleEndian64(&ignored))
            return Malformed(field_path, unknown + "truncated");
          break;
        }
        case 5: {  // fixed32
          uint32_t ignored;
          if (!in_.ReadLittleEndian32(&ignored))
            return Malformed(field_path, unknown + "truncated");
          break;
        }
        case 2: {  // length-delimited
          uint32_t length;
          if (!in_.ReadVarint32(&length) || static_cast<int64_t>(length) > in_.BytesUntilLimit()) {
            return Malformed(field_path, unknown + "a length past the end of the data");
          }
          if (field != nullptr && field->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
            if (depth + 1 > kMaxDepth) return TooDeep(field_path);
            const pb::io::CodedInputStream::Limit limit = in_.PushLimit(static_cast<int>(length));
            std::string problem = Message(field->message_type(), field_path, depth + 1, 0);
            if (!problem.empty()) return problem;
            in_.PopLimit(limit);
          } else if (field != nullptr && field->type() == pb::FieldDescriptor::TYPE_STRING &&
                     field->file()->syntax() == pb::FileDescriptor::SYNTAX_PROTO3) {
            std::string text;
            if (!in_.ReadString(&text, static_cast<int>(length))) {
              return Malformed(field_path, "truncated");
            }
            if (!IsValidUtf8(text)) {
              return Where(field_path, "invalid UTF-8 in a string field (send raw bytes as bytes)");
            }
          } else if (!in_.Skip(static_cast<int>(length))) {
            return Malformed(field_path, unknown + "truncated");
          }
          break;
        }
        case 3: {  // start group
          if (depth + 1 > kMaxDepth) return TooDeep(field_path);
          const pb::Descriptor* group_type =
              field != nullptr && field->type() == pb::FieldDescriptor::TYPE_GROUP
                  ? field->message_type()
                  : nullptr;
          std::string problem = Message(group_type, field_path, depth + 1, number);
          if (!problem.empty()) return problem;
          break;
        }
        case 4:  // end group
          if (number == group) return "";
          return Malformed(
              path, absl::StrCat("an end-group tag for field ", number, " that closes no group"));
        default:
          return Malformed(field_path, absl::StrCat(unknown, "wire type ", wire_type));
      }
    }
  }

 private:
  static std::string Where(const std::string& path, absl::string_view rule) {
    return path.empty() ? std::string(rule) : absl::StrCat(path, ": ", rule);
  }
  std::string Malformed(const std::string& path, absl::string_view what) {
    return Where(path,
                 absl::StrCat("malformed data at byte ", in_.CurrentPosition(), " (", what, ")"));
  }
  static std::string TooDeep(const std::string& path) {
    return Where(path, absl::StrCat("messages or groups nested more than ", kMaxDepth, " deep"));
  }

  pb::io::CodedInputStream in_;
};

}  // namespace

std::string DescribeParseFailure(const pb::Descriptor& type, absl::string_view bytes) {
  return Walker(bytes).Message(&type, "", 0, 0);
}

absl::Status ParseRequest(const grpc::ByteBuffer& bytes, absl::string_view method,
                          pb::Message* message) {
  message->Clear();
  {
    grpc::ByteBuffer copy(bytes);  // shares the slices; the reader needs a mutable buffer
    grpc::ProtoBufferReader reader(&copy);
    if (reader.status().ok() && message->ParseFromZeroCopyStream(&reader)) {
      return absl::OkStatus();
    }
  }
  // The error path only: gather the bytes once more to say where it failed.
  std::vector<grpc::Slice> slices;
  std::string flat;
  if (bytes.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      flat.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  const std::string where = DescribeParseFailure(*message->GetDescriptor(), flat);
  message->Clear();
  return absl::InvalidArgumentError(absl::StrCat(method, ": the request could not be parsed as ",
                                                 message->GetDescriptor()->full_name(),
                                                 where.empty() ? "" : ": ", where));
}

}  // namespace loratrf::server
