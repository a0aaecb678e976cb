#include "convert/torch_checkpoint.h"

#include <cstring>
#include <string>

#include "lwm/error.h"
#include "zip_archive.h"

namespace lwm::convert {
namespace {

// data.pkl of a 7B model's state dict is tens of kilobytes; anything far larger is not one.
constexpr std::uint64_t kMaxPickleBytes = std::uint64_t{64} << 20;

std::string where(const std::filesystem::path& file) {
  return "the PyTorch checkpoint '" + file.string() + "'";
}

// torch.save names every entry <archive>/...; the archive name is the file's stem in recent
// versions and "archive" in older ones, so it is read from the one entry ending in /data.pkl.
std::string archive_prefix(const ZipArchive& zip, const std::filesystem::path& file) {
  std::string prefix;
  int found = 0;
  for (const auto& name : zip.names()) {
    const std::string suffix = "data.pkl";
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        (name.size() == suffix.size() || name[name.size() - suffix.size() - 1] == '/')) {
      prefix = name.substr(0, name.size() - suffix.size());
      ++found;
    }
  }
  if (found != 1) {
    throw Error(
        ErrorKind::file_format,
        where(file) + (found == 0 ? " has no data.pkl: it is a zip, but not one torch.save wrote"
                                  : " has " + std::to_string(found) +
                                        " data.pkl entries; torch.save writes one"));
  }
  return prefix;
}

}  // namespace

struct TorchCheckpoint::Impl {
  std::filesystem::path file;
  std::uint64_t file_bytes = 0;
  ZipArchive zip;
  std::string prefix;
  std::vector<PickledTensor> tensors;
};

TorchCheckpoint::TorchCheckpoint(const std::filesystem::path& file) {
  ZipArchive zip = ZipArchive::open_file(file, where(file), "PyTorch checkpoint");
  std::string prefix = archive_prefix(zip, file);
  if (zip.contains(prefix + "byteorder")) {
    const std::string order = zip.read(prefix + "byteorder", "byte order record", 16);
    if (order != "little") {
      throw Error(ErrorKind::unsupported,
                  where(file) + " stores its tensors '" + order +
                      "'-endian; only little-endian "
                      "checkpoints (what every x86 and ARM machine writes) can be read");
    }
  }
  const std::string pickle = zip.read(prefix + "data.pkl", "pickle", kMaxPickleBytes);
  std::vector<PickledTensor> tensors = read_pickled_torch_tensors(
      {reinterpret_cast<const unsigned char*>(pickle.data()), pickle.size()},
      file.string() + ":" + prefix + "data.pkl");
  impl_ = std::make_unique<Impl>(Impl{file, std::filesystem::file_size(file), std::move(zip),
                                      std::move(prefix), std::move(tensors)});
}

TorchCheckpoint::~TorchCheckpoint() = default;

const std::vector<PickledTensor>& TorchCheckpoint::tensors() const noexcept {
  return impl_->tensors;
}

std::vector<unsigned char> TorchCheckpoint::read(std::size_t index) const {
  const PickledTensor& t = impl_->tensors.at(index);
  const std::string entry = impl_->prefix + "data/" + t.storage_key;
  const std::string what = "storage of '" + t.name + "'";
  const auto storage_bytes = static_cast<std::uint64_t>(t.storage_numel) * t.itemsize;
  // torch.save stores entries uncompressed, so no storage can be larger than the file: checked
  // before allocating, so a lying pickle cannot ask for terabytes.
  if (storage_bytes > impl_->file_bytes || impl_->zip.size(entry, what) != storage_bytes) {
    throw Error(ErrorKind::file_format,
                where(impl_->file) + ": the " + what + " ('" + entry + "') holds " +
                    std::to_string(impl_->zip.size(entry, what)) + " bytes where its pickle says " +
                    std::to_string(t.storage_numel) + " elements of " + std::to_string(t.itemsize) +
                    " bytes");
  }
  std::vector<unsigned char> storage(static_cast<std::size_t>(storage_bytes));
  impl_->zip.read_exactly(entry, what, storage.data(), storage_bytes);

  std::int64_t numel = 1;
  for (const auto d : t.shape) numel *= d;
  const std::size_t item = t.itemsize;
  if (t.contiguous()) {
    // The common case (Hugging Face saves each tensor as its own contiguous storage): one run.
    const auto begin =
        storage.begin() + static_cast<std::ptrdiff_t>(t.offset * static_cast<std::int64_t>(item));
    if (t.offset == 0 &&
        static_cast<std::int64_t>(storage.size()) == numel * static_cast<std::int64_t>(item)) {
      return storage;
    }
    return std::vector<unsigned char>(begin, begin + numel * static_cast<std::int64_t>(item));
  }
  // A strided view (a transposed or sliced tensor saved as it was): gather element by element in
  // C order. The pickle reader checked that every element lies inside the storage.
  std::vector<unsigned char> out(static_cast<std::size_t>(numel) * item);
  std::vector<std::int64_t> index_of(t.shape.size(), 0);
  for (std::int64_t n = 0; n < numel; ++n) {
    std::int64_t at = t.offset;
    for (std::size_t d = 0; d < t.shape.size(); ++d) at += index_of[d] * t.stride[d];
    std::memcpy(out.data() + static_cast<std::size_t>(n) * item,
                storage.data() + static_cast<std::size_t>(at) * item, item);
    for (std::size_t d = t.shape.size(); d-- > 0;) {
      if (++index_of[d] < t.shape[d]) break;
      index_of[d] = 0;
    }
  }
  return out;
}

}  // namespace lwm::convert
