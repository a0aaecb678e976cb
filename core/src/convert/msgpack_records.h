// The tux StreamingCheckpointer format (spec §4.1): a bare concatenation of msgpack records
// [key path, bin(flax to_bytes of one leaf)], and flax's single-value msgpack tree (§4.2
// flax_params). The reader hands out the byte spans of each array inside the caller's buffer (a
// memory-mapped file): nothing is copied, so a 2.9 GB record costs no memory. The writer produces
// the same bytes as msgpack-python + flax, so the trainer can write checkpoints LWM reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "lwm/tensor.h"

namespace lwm::convert {

using Bytes = std::span<const unsigned char>;

// What one leaf holds.
enum class LeafKind : std::uint8_t {
  array,         // ext 1 (or flax's chunked map): an ndarray
  numpy_scalar,  // ext 3: an ndarray of shape []
  python_value,  // a plain msgpack int/float/bool/nil/str (a Python scalar leaf, e.g. in optax)
};

struct ArrayLeaf {
  std::vector<std::string>
      key;  // the flattened tree path, e.g. {"transformer", "wte", "embedding"}
  LeafKind kind = LeafKind::array;
  std::string dtype;  // numpy name: "bfloat16", "float32", ... (empty for python_value)
  std::size_t itemsize = 0;
  Shape shape;
  // The C-order element bytes: one span, or one per chunk in order (spec §4.1 chunking). They
  // point into the buffer given to the reader.
  std::vector<Bytes> pieces;
  std::uint64_t offset = 0;  // where the leaf's record (or value) starts in the buffer

  std::uint64_t nbytes() const noexcept;
  std::string key_string(char separator = '/') const;
};

// Numpy's itemsize for a dtype name; 0 when the name is not a numpy dtype we know.
std::size_t numpy_itemsize(const std::string& dtype) noexcept;

// Reads records one at a time from [data, data + size). `source` names the file in errors.
// Every record is validated completely before it is returned: msgpack structure, ext types,
// dtype, shape × itemsize == bytes, chunk sizes adding up, and the payload ending exactly where
// the bin says. A truncated last record is reported with its key when the key is readable.
class MsgpackRecordReader {
 public:
  MsgpackRecordReader(Bytes data, std::string source);
  // Fills `leaf` with the next record and returns true, or returns false at the end of the data.
  // Throws Error(file_format) or Error(unsupported) naming the source, record and key.
  bool next(ArrayLeaf& leaf);
  std::uint64_t position() const noexcept { return position_; }
  std::size_t records_read() const noexcept { return records_; }

 private:
  Bytes data_;
  std::string source_;
  std::uint64_t position_ = 0;
  std::size_t records_ = 0;
};

// Reads a flax msgpack_serialize'd tree (one msgpack map of maps; §4.2 flax_params) and calls
// `visit` for every leaf, depth first in file order. Throws like MsgpackRecordReader.
void read_flax_tree(Bytes data, const std::string& source,
                    const std::function<void(ArrayLeaf&&)>& visit);

// flax's MAX_CHUNK_SIZE: arrays of more bytes are written chunked (spec §4.1).
inline constexpr std::uint64_t kFlaxMaxChunkBytes = std::uint64_t{1} << 30;

// Writes records byte-identical to tux's StreamingCheckpointer (msgpack-python's smallest
// encodings, flax's to_bytes layout). The sink receives the bytes in order; the array data is
// passed through without being copied into an intermediate buffer.
class MsgpackRecordWriter {
 public:
  using Sink = std::function<void(const void* data, std::size_t size)>;
  explicit MsgpackRecordWriter(Sink sink, std::uint64_t max_chunk_bytes = kFlaxMaxChunkBytes);

  // One array leaf. `data` holds the C-order bytes, possibly split in any way (they are
  // concatenated). Arrays of more than max_chunk_bytes are written in flax's chunked form.
  // `scalar` writes ext type 3 (a numpy scalar leaf) and requires an empty shape.
  void write_array(const std::vector<std::string>& key, const std::string& dtype,
                   const Shape& shape, const std::vector<Bytes>& data, bool scalar = false);

 private:
  Sink sink_;
  std::uint64_t max_chunk_bytes_;
};

}  // namespace lwm::convert
