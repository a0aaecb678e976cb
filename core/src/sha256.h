// SHA-256 (FIPS 180-4), for content keys of the ingest cache and checksums of the records we
// write. Small and dependency-free; speed is not critical (a few hundred MB/s).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lwm {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  void update(std::string_view text) { update(text.data(), text.size()); }
  std::array<std::uint8_t, 32> finish();  // the object must not be updated afterwards
  std::string finish_hex();

 private:
  void compress(const std::uint8_t* block);

  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t length_ = 0;  // bytes
};

std::string sha256_hex(std::string_view data);
// The first 8 bytes of the digest, little-endian: the per-record checksum of our files.
std::uint64_t sha256_checksum64(const void* data, std::size_t size);

}  // namespace lwm
