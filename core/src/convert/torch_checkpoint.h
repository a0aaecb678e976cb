// PyTorch checkpoint files: torch.save's zip format, as in Hugging Face's pytorch_model*.bin
// (spec §1.6, the released LWM PyTorch repositories). The pickle <archive>/data.pkl describes the
// tensors (pickle_reader.h); each storage's bytes are the zip entry <archive>/data/<key>, read one
// storage at a time, so a multi-GB shard never sits in memory whole. Needs libzip: a build without
// it says so when a checkpoint is opened.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <vector>

#include "convert/pickle_reader.h"

namespace lwm::convert {

class TorchCheckpoint {
 public:
  // Opens `file` and runs its pickle. Throws Error(io) when it cannot be read, Error(file_format)
  // when it is not a torch.save zip (no data.pkl, big-endian, damaged) or its pickle is malformed,
  // Error(unsupported) for what the restricted pickle reader refuses.
  explicit TorchCheckpoint(const std::filesystem::path& file);
  ~TorchCheckpoint();
  TorchCheckpoint(const TorchCheckpoint&) = delete;
  TorchCheckpoint& operator=(const TorchCheckpoint&) = delete;

  const std::vector<PickledTensor>& tensors() const noexcept;
  // The C-order bytes of tensors()[index], strided views gathered. Throws Error(file_format) when
  // the storage entry is missing, damaged or not as long as the pickle says.
  std::vector<unsigned char> read(std::size_t index) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lwm::convert
