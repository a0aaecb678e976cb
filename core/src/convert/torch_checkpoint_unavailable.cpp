// PyTorch checkpoints in a build without libzip (core/CMakeLists.txt): opening one says so.
#include "convert/torch_checkpoint.h"
#include "lwm/error.h"

namespace lwm::convert {

struct TorchCheckpoint::Impl {
  std::vector<PickledTensor> tensors;
};

TorchCheckpoint::TorchCheckpoint(const std::filesystem::path& file) {
  throw Error(ErrorKind::unsupported,
              "'" + file.string() +
                  "' is a PyTorch checkpoint, and this build of LWM Studio cannot read them (it "
                  "was built without libzip; packaging/install-deps.sh installs it)");
}

TorchCheckpoint::~TorchCheckpoint() = default;

const std::vector<PickledTensor>& TorchCheckpoint::tensors() const noexcept {
  return impl_->tensors;
}

std::vector<unsigned char> TorchCheckpoint::read(std::size_t) const {
  return {};
}

}  // namespace lwm::convert
