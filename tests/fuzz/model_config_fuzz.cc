// Fuzz target: config.json parsing. Any text is refused or gives a config whose sizes are in
// the documented bounds.
#include <cstdint>
#include <cstdlib>

#include "worker/engine/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = loratrf::engine::ParseModelConfig(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (config.ok()) {
    if (config->hidden_size < 1 || config->num_heads < 1 || config->num_kv_heads < 1 ||
        config->num_heads % config->num_kv_heads != 0 || config->head_dim < 1 ||
        config->vocab_size < 1 || config->num_layers < 1) {
      std::abort();
    }
  }
  return 0;
}
