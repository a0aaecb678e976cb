// A hand-written reader for the small msgpack subset of spec §4.1 rather than msgpack-c: the
// grammar is fixed and tiny (arrays, maps, str, bin, ext, unsigned ints, bool), we need byte spans
// into the mapping (msgpack-c's zone/unpacker copies or needs its own buffer management for
// multi-GB bin payloads), and every length must be checked against the bytes that remain with
// 64-bit arithmetic, which is easiest to audit (and fuzz) when it is all in one short file.
#include "msgpack_records.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string_view>
#include <utility>

#include "lwm/error.h"

namespace lwm::convert {
namespace {

constexpr int kExtNdarray = 1;
constexpr int kExtComplex = 2;
constexpr int kExtNpScalar = 3;
constexpr std::size_t kMaxDims = 64;  // numpy's NPY_MAXDIMS
constexpr const char* kChunkedMarker = "__msgpack_chunked_array__";

// Where in the file a problem is, for messages: "'params': record 3 (key 'a/b') at byte 120: ...".
struct Where {
  const std::string* source = nullptr;
  std::size_t record = 0;  // 1-based; 0 for a single-value file
  const std::vector<std::string>* key = nullptr;
  std::uint64_t record_offset = 0;

  std::string prefix() const {
    std::string text = "'" + *source + "'";
    if (record > 0) text += ": record " + std::to_string(record);
    if (key != nullptr && !key->empty()) {
      std::string joined;
      for (const auto& part : *key) joined += (joined.empty() ? "" : "/") + part;
      text += " (key '" + joined + "')";
    }
    text += " at byte " + std::to_string(record_offset);
    return text;
  }
  [[noreturn]] void fail(const std::string& problem,
                         ErrorKind kind = ErrorKind::file_format) const {
    throw Error(kind, prefix() + ": " + problem);
  }
};

std::string describe_byte(unsigned char b) {
  static const char* hex = "0123456789abcdef";
  std::string name;
  if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) {
    name = "an integer";
  } else if (b >= 0x80 && b <= 0x8f) {
    name = "a map";
  } else if (b >= 0x90 && b <= 0x9f) {
    name = "an array";
  } else if (b >= 0xa0 && b <= 0xbf) {
    name = "a string";
  } else {
    switch (b) {
      case 0xc0:
        name = "nil";
        break;
      case 0xc2:
      case 0xc3:
        name = "a boolean";
        break;
      case 0xc4:
      case 0xc5:
      case 0xc6:
        name = "binary data";
        break;
      case 0xca:
      case 0xcb:
        name = "a float";
        break;
      case 0xd9:
      case 0xda:
      case 0xdb:
        name = "a string";
        break;
      case 0xdc:
      case 0xdd:
        name = "an array";
        break;
      case 0xde:
      case 0xdf:
        name = "a map";
        break;
      case 0xc1:
        name = "the never-used byte";
        break;
      default:
        name = "an ext value";
        break;
    }
  }
  return name + " (0x" + hex[b >> 4] + hex[b & 15] + ")";
}

// A bounds-checked read position inside [begin, end) of the buffer.
class Cursor {
 public:
  Cursor(Bytes data, std::uint64_t begin, std::uint64_t end, const Where& where)
      : data_(data), pos_(begin), end_(end), where_(where) {}

  std::uint64_t pos() const noexcept { return pos_; }
  Bytes data() const noexcept { return data_; }
  void skip_to(std::uint64_t pos) noexcept { pos_ = pos; }
  std::uint64_t end() const noexcept { return end_; }
  bool at_end() const noexcept { return pos_ == end_; }
  const Where& where() const noexcept { return where_; }

  void need(std::uint64_t n, const char* what) const {
    if (n > end_ - pos_) {
      where_.fail(std::string("truncated: ") + what + " needs " + std::to_string(n) +
                  " bytes but only " + std::to_string(end_ - pos_) + " remain");
    }
  }
  unsigned char peek(const char* what) const {
    need(1, what);
    return data_[pos_];
  }
  unsigned char byte(const char* what) {
    need(1, what);
    return data_[pos_++];
  }
  std::uint64_t big_endian(int n, const char* what) {
    need(static_cast<std::uint64_t>(n), what);
    std::uint64_t value = 0;
    for (int i = 0; i < n; ++i) value = (value << 8) | data_[pos_++];
    return value;
  }
  Bytes take(std::uint64_t n, const char* what) {
    need(n, what);
    Bytes out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  std::uint64_t array_header(const char* what) {
    const unsigned char b = byte(what);
    if (b >= 0x90 && b <= 0x9f) return b & 0x0fu;
    if (b == 0xdc) return big_endian(2, what);
    if (b == 0xdd) return big_endian(4, what);
    where_.fail(std::string(what) + ": expected an array, found " + describe_byte(b));
  }
  std::uint64_t map_header(const char* what) {
    const unsigned char b = byte(what);
    if (b >= 0x80 && b <= 0x8f) return b & 0x0fu;
    if (b == 0xde) return big_endian(2, what);
    if (b == 0xdf) return big_endian(4, what);
    where_.fail(std::string(what) + ": expected a map, found " + describe_byte(b));
  }
  // str, or bin when `allow_bin` (old writers stored some strings as raw bytes, spec §4.1).
  std::optional<Bytes> try_str_or_bin(bool allow_bin, const char* what) {
    const unsigned char b = peek(what);
    std::uint64_t n = 0;
    if (b >= 0xa0 && b <= 0xbf) {
      ++pos_;
      n = b & 0x1fu;
    } else if (b == 0xd9 || b == 0xda || b == 0xdb) {
      ++pos_;
      n = big_endian(b == 0xd9 ? 1 : b == 0xda ? 2 : 4, what);
    } else if (allow_bin && (b == 0xc4 || b == 0xc5 || b == 0xc6)) {
      ++pos_;
      n = big_endian(b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4, what);
    } else {
      return std::nullopt;
    }
    return take(n, what);
  }
  std::string str(const char* what, bool allow_bin = false) {
    const unsigned char b = peek(what);
    const auto bytes = try_str_or_bin(allow_bin, what);
    if (!bytes) where_.fail(std::string(what) + ": expected a string, found " + describe_byte(b));
    return std::string(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  }
  // bin, or str when `allow_str` (spec §4.1: accept str payloads from old writers).
  Bytes bin(const char* what, bool allow_str) {
    const unsigned char b = peek(what);
    if (b == 0xc4 || b == 0xc5 || b == 0xc6) {
      ++pos_;
      return take(big_endian(b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4, what), what);
    }
    if (allow_str) {
      if (const auto bytes = try_str_or_bin(false, what)) return *bytes;
    }
    where_.fail(std::string(what) + ": expected binary data, found " + describe_byte(b));
  }
  // A non-negative integer in any msgpack integer encoding.
  std::uint64_t uint(const char* what) {
    const unsigned char b = byte(what);
    if (b <= 0x7f) return b;
    switch (b) {
      case 0xcc:
        return big_endian(1, what);
      case 0xcd:
        return big_endian(2, what);
      case 0xce:
        return big_endian(4, what);
      case 0xcf:
        return big_endian(8, what);
      case 0xd0:
      case 0xd1:
      case 0xd2:
      case 0xd3: {
        const int n = 1 << (b - 0xd0);
        const std::uint64_t raw = big_endian(n, what);
        const std::uint64_t sign = std::uint64_t{1} << (8 * n - 1);
        if ((raw & sign) != 0) where_.fail(std::string(what) + " is negative");
        return raw;
      }
      default:
        break;
    }
    where_.fail(std::string(what) + ": expected a non-negative integer, found " + describe_byte(b));
  }
  // An ext header: returns (type, payload span).
  std::pair<int, Bytes> ext(const char* what) {
    const unsigned char b = byte(what);
    std::uint64_t n = 0;
    switch (b) {
      case 0xd4:
        n = 1;
        break;
      case 0xd5:
        n = 2;
        break;
      case 0xd6:
        n = 4;
        break;
      case 0xd7:
        n = 8;
        break;
      case 0xd8:
        n = 16;
        break;
      case 0xc7:
        n = big_endian(1, what);
        break;
      case 0xc8:
        n = big_endian(2, what);
        break;
      case 0xc9:
        n = big_endian(4, what);
        break;
      default:
        where_.fail(std::string(what) + ": expected an ext value, found " + describe_byte(b));
    }
    const auto type = static_cast<signed char>(byte(what));
    return {type, take(n, what)};
  }
  // Skips one scalar (int, float, bool, nil, str, bin); returns false if the next value is not one.
  bool skip_scalar(const char* what) {
    const unsigned char b = peek(what);
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
      ++pos_;
      return true;
    }
    if (b >= 0xcc && b <= 0xd3) {
      ++pos_;
      const int n = 1 << ((b - 0xcc) & 3);
      take(static_cast<std::uint64_t>(n), what);
      return true;
    }
    if (b == 0xca || b == 0xcb) {
      ++pos_;
      take(b == 0xca ? 4 : 8, what);
      return true;
    }
    return try_str_or_bin(true, what).has_value();
  }

 private:
  Bytes data_;
  std::uint64_t pos_;
  std::uint64_t end_;
  const Where& where_;
};

std::uint64_t checked_numel(const Shape& shape, const Where& where) {
  std::uint64_t n = 1;
  for (const auto d : shape) {
    if (d != 0 && n > UINT64_MAX / static_cast<std::uint64_t>(d)) {
      where.fail("shape " + shape_string(shape) + " has too many elements");
    }
    n *= static_cast<std::uint64_t>(d);
  }
  return n;
}

std::int64_t as_dim(std::uint64_t value, const Where& where) {
  if (value > static_cast<std::uint64_t>(INT64_MAX)) {
    where.fail("a dimension of " + std::to_string(value) + " is out of range");
  }
  return static_cast<std::int64_t>(value);
}

// NDARRAY := array(3)[shape, dtype, data] filling an ext payload exactly (spec §4.1).
void parse_ndarray(Cursor& c, ArrayLeaf& leaf) {
  const Where& where = c.where();
  const std::uint64_t fields = c.array_header("ndarray");
  if (fields != 3) {
    where.fail("ndarray must be [shape, dtype, data], found an array of " + std::to_string(fields));
  }
  const std::uint64_t rank = c.array_header("ndarray shape");
  if (rank > kMaxDims) where.fail("ndarray has " + std::to_string(rank) + " dimensions");
  leaf.shape.clear();
  for (std::uint64_t i = 0; i < rank; ++i) leaf.shape.push_back(as_dim(c.uint("dimension"), where));
  leaf.dtype = c.str("ndarray dtype", true);
  leaf.itemsize = numpy_itemsize(leaf.dtype);
  if (leaf.itemsize == 0) {
    where.fail("unknown dtype '" + leaf.dtype + "'", ErrorKind::unsupported);
  }
  const Bytes data = c.bin("ndarray data", false);
  if (!c.at_end()) {
    where.fail("ndarray has " + std::to_string(c.end() - c.pos()) + " unexpected trailing bytes");
  }
  const std::uint64_t numel = checked_numel(leaf.shape, where);
  if (numel > UINT64_MAX / leaf.itemsize || numel * leaf.itemsize != data.size()) {
    where.fail("shape " + shape_string(leaf.shape) + " of " + leaf.dtype + " needs " +
               (numel > UINT64_MAX / leaf.itemsize ? std::string("too many")
                                                   : std::to_string(numel * leaf.itemsize)) +
               " bytes but the data holds " + std::to_string(data.size()));
  }
  leaf.pieces.assign(1, data);
}

// "0", "1", ... → index; anything else is an error (flax writes str(i), spec §4.1).
std::uint64_t decimal_index(const std::string& text, std::uint64_t count, const char* what,
                            const Where& where) {
  const bool digits =
      !text.empty() && text.size() <= 19 &&
      std::all_of(text.begin(), text.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) &&
      (text.size() == 1 || text[0] != '0');
  const std::uint64_t index = digits ? std::stoull(text) : count;
  if (index >= count) {
    where.fail(std::string(what) + " has the key '" + text + "'; expected 0 … " +
               std::to_string(count - 1));
  }
  return index;
}

// CHUNKED := map {"__msgpack_chunked_array__": true, "shape": {...}, "chunks": {...}}.
void parse_chunked(Cursor& c, std::uint64_t entries, ArrayLeaf& leaf) {
  const Where& where = c.where();
  bool marker = false, have_shape = false, have_chunks = false;
  std::vector<std::optional<Bytes>> chunks;
  std::vector<std::optional<std::int64_t>> dims;
  std::string chunk_dtype;
  for (std::uint64_t e = 0; e < entries; ++e) {
    const std::string name = c.str("chunked array field name");
    if (name == kChunkedMarker && !marker) {
      if (c.byte("chunked marker") != 0xc3) where.fail("chunked array marker is not true");
      marker = true;
    } else if (name == "shape" && !have_shape) {
      have_shape = true;
      const std::uint64_t rank = c.map_header("chunked array shape");
      if (rank > kMaxDims) where.fail("chunked array has " + std::to_string(rank) + " dimensions");
      dims.assign(rank, std::nullopt);
      for (std::uint64_t i = 0; i < rank; ++i) {
        const std::uint64_t at =
            decimal_index(c.str("shape key"), rank, "chunked array shape", where);
        if (dims[at]) where.fail("chunked array shape repeats dimension " + std::to_string(at));
        dims[at] = as_dim(c.uint("dimension"), where);
      }
    } else if (name == "chunks" && !have_chunks) {
      have_chunks = true;
      const std::uint64_t count = c.map_header("chunk map");
      // Every chunk takes at least a few bytes, so a count beyond the remaining bytes is a lie.
      if (count > c.end() - c.pos())
        where.fail("chunk map claims " + std::to_string(count) + " chunks");
      chunks.assign(count, std::nullopt);
      for (std::uint64_t i = 0; i < count; ++i) {
        const std::uint64_t at = decimal_index(c.str("chunk key"), count, "chunk map", where);
        if (chunks[at]) where.fail("chunk " + std::to_string(at) + " appears twice");
        const auto [type, payload] = c.ext("chunk");
        if (type != kExtNdarray)
          where.fail("chunk " + std::to_string(at) + " has ext type " + std::to_string(type) +
                     ", expected 1");
        ArrayLeaf piece;
        Cursor inner(Bytes(payload.data(), payload.size()), 0, payload.size(), where);
        parse_ndarray(inner, piece);
        if (piece.shape.size() != 1) {
          where.fail("chunk " + std::to_string(at) + " has shape " + shape_string(piece.shape) +
                     "; chunks are 1-D");
        }
        if (!chunk_dtype.empty() && piece.dtype != chunk_dtype) {
          where.fail("chunks mix dtypes " + chunk_dtype + " and " + piece.dtype);
        }
        chunk_dtype = piece.dtype;
        leaf.itemsize = piece.itemsize;
        chunks[at] = piece.pieces[0];
      }
    } else {
      where.fail("chunked array has an unexpected or repeated field '" + name + "'");
    }
  }
  if (!marker || !have_shape || !have_chunks) where.fail("chunked array lacks one of its fields");
  if (chunks.empty()) where.fail("chunked array has no chunks");
  leaf.shape.clear();
  for (const auto& d : dims) leaf.shape.push_back(*d);
  leaf.dtype = chunk_dtype;
  leaf.pieces.clear();
  std::uint64_t total = 0;
  for (const auto& chunk : chunks) {
    leaf.pieces.push_back(*chunk);
    total += chunk->size();
  }
  const std::uint64_t numel = checked_numel(leaf.shape, where);
  if (numel > UINT64_MAX / leaf.itemsize || numel * leaf.itemsize != total) {
    where.fail("chunks hold " + std::to_string(total) + " bytes but shape " +
               shape_string(leaf.shape) + " of " + leaf.dtype + " needs " +
               (numel > UINT64_MAX / leaf.itemsize ? std::string("more")
                                                   : std::to_string(numel * leaf.itemsize)));
  }
}

// V := ext1(NDARRAY) | CHUNKED | ext3(NDARRAY []) | a Python scalar; must fill [begin, end).
void parse_leaf_value(Cursor& c, ArrayLeaf& leaf) {
  const Where& where = c.where();
  const unsigned char first = c.peek("leaf value");
  leaf.pieces.clear();
  leaf.shape.clear();
  leaf.dtype.clear();
  leaf.itemsize = 0;
  if ((first >= 0xd4 && first <= 0xd8) || (first >= 0xc7 && first <= 0xc9)) {
    const auto [type, payload] = c.ext("leaf value");
    if (type == kExtComplex)
      where.fail("holds a Python complex number (ext type 2), not an array",
                 ErrorKind::unsupported);
    if (type != kExtNdarray && type != kExtNpScalar)
      where.fail("unknown ext type " + std::to_string(type));
    Cursor inner(Bytes(payload.data(), payload.size()), 0, payload.size(), where);
    parse_ndarray(inner, leaf);
    leaf.kind = type == kExtNdarray ? LeafKind::array : LeafKind::numpy_scalar;
    if (leaf.kind == LeafKind::numpy_scalar && !leaf.shape.empty()) {
      where.fail("numpy scalar (ext type 3) has shape " + shape_string(leaf.shape));
    }
  } else if ((first >= 0x80 && first <= 0x8f) || first == 0xde || first == 0xdf) {
    const std::uint64_t entries = c.map_header("leaf value");
    parse_chunked(c, entries, leaf);
    leaf.kind = LeafKind::array;
  } else if (c.skip_scalar("leaf value")) {
    leaf.kind = LeafKind::python_value;
  } else {
    where.fail("leaf value is " + describe_byte(first) + ", not an array");
  }
}

void append_be(std::string& out, std::uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// msgpack-python's smallest encodings (spec §4.1).
void put_uint(std::string& out, std::uint64_t v) {
  if (v <= 0x7f) {
    out.push_back(static_cast<char>(v));
  } else if (v <= 0xff) {
    out.push_back(static_cast<char>(0xcc));
    append_be(out, v, 1);
  } else if (v <= 0xffff) {
    out.push_back(static_cast<char>(0xcd));
    append_be(out, v, 2);
  } else if (v <= 0xffffffffu) {
    out.push_back(static_cast<char>(0xce));
    append_be(out, v, 4);
  } else {
    out.push_back(static_cast<char>(0xcf));
    append_be(out, v, 8);
  }
}

void put_header(std::string& out, std::uint64_t n, unsigned char fix_base, std::uint64_t fix_max,
                unsigned char b8, unsigned char b16, unsigned char b32) {
  if (n <= fix_max) {
    out.push_back(static_cast<char>(fix_base | n));
  } else if (b8 != 0 && n <= 0xff) {
    out.push_back(static_cast<char>(b8));
    append_be(out, n, 1);
  } else if (n <= 0xffff) {
    out.push_back(static_cast<char>(b16));
    append_be(out, n, 2);
  } else {
    if (n > 0xffffffffu)
      throw Error(ErrorKind::invalid_argument,
                  "msgpack value of " + std::to_string(n) + " elements or bytes is too large");
    out.push_back(static_cast<char>(b32));
    append_be(out, n, 4);
  }
}

void put_array(std::string& out, std::uint64_t n) {
  put_header(out, n, 0x90, 15, 0, 0xdc, 0xdd);
}
void put_map(std::string& out, std::uint64_t n) {
  put_header(out, n, 0x80, 15, 0, 0xde, 0xdf);
}
void put_str(std::string& out, std::string_view s) {
  put_header(out, s.size(), 0xa0, 31, 0xd9, 0xda, 0xdb);
  out.append(s);
}
void put_bin_header(std::string& out, std::uint64_t n) {
  // bin has no fix form: bin8 from length 0.
  if (n <= 0xff) {
    out.push_back(static_cast<char>(0xc4));
    append_be(out, n, 1);
  } else {
    put_header(out, n, 0, 0, 0, 0xc5, 0xc6);  // n > 0xff: never the fix or 8-bit form
  }
}
void put_ext_header(std::string& out, std::uint64_t n, int type) {
  switch (n) {
    case 1:
      out.push_back(static_cast<char>(0xd4));
      break;
    case 2:
      out.push_back(static_cast<char>(0xd5));
      break;
    case 4:
      out.push_back(static_cast<char>(0xd6));
      break;
    case 8:
      out.push_back(static_cast<char>(0xd7));
      break;
    case 16:
      out.push_back(static_cast<char>(0xd8));
      break;
    default:
      if (n <= 0xff) {
        out.push_back(static_cast<char>(0xc7));
        append_be(out, n, 1);
      } else if (n <= 0xffff) {
        out.push_back(static_cast<char>(0xc8));
        append_be(out, n, 2);
      } else {
        if (n > 0xffffffffu)
          throw Error(ErrorKind::invalid_argument,
                      "ext value of " + std::to_string(n) + " bytes is too large");
        out.push_back(static_cast<char>(0xc9));
        append_be(out, n, 4);
      }
  }
  out.push_back(static_cast<char>(type));
}

// The NDARRAY bytes before its data: array(3), shape, dtype, bin header.
std::string ndarray_prefix(const Shape& shape, const std::string& dtype, std::uint64_t nbytes) {
  std::string out;
  put_array(out, 3);
  put_array(out, shape.size());
  for (const auto d : shape) put_uint(out, static_cast<std::uint64_t>(d));
  put_str(out, dtype);
  put_bin_header(out, nbytes);
  return out;
}

}  // namespace

std::uint64_t ArrayLeaf::nbytes() const noexcept {
  std::uint64_t total = 0;
  for (const auto& piece : pieces) total += piece.size();
  return total;
}

std::string ArrayLeaf::key_string(char separator) const {
  std::string out;
  for (const auto& part : key) {
    if (!out.empty()) out.push_back(separator);
    out += part;
  }
  return out;
}

std::size_t numpy_itemsize(const std::string& dtype) noexcept {
  static const std::pair<const char*, std::size_t> table[] = {
      {"bool", 1},    {"int8", 1},     {"uint8", 1},   {"int16", 2},     {"uint16", 2},
      {"float16", 2}, {"bfloat16", 2}, {"int32", 4},   {"uint32", 4},    {"float32", 4},
      {"int64", 8},   {"uint64", 8},   {"float64", 8}, {"complex64", 8}, {"complex128", 16},
  };
  for (const auto& [name, size] : table) {
    if (dtype == name) return size;
  }
  return 0;
}

MsgpackRecordReader::MsgpackRecordReader(Bytes data, std::string source)
    : data_(data), source_(std::move(source)) {}

bool MsgpackRecordReader::next(ArrayLeaf& leaf) {
  if (position_ == data_.size()) return false;
  leaf.key.clear();
  leaf.offset = position_;
  Where where{&source_, records_ + 1, &leaf.key, position_};
  Cursor c(data_, position_, data_.size(), where);
  const std::uint64_t fields = c.array_header("record");
  if (fields != 2)
    where.fail("a record must be [key, payload], found an array of " + std::to_string(fields));
  const std::uint64_t depth = c.array_header("record key");
  if (depth == 0) where.fail("record key is empty");
  if (depth > c.end() - c.pos())
    where.fail("truncated: record key claims " + std::to_string(depth) + " parts");
  std::vector<std::string> key;
  for (std::uint64_t i = 0; i < depth; ++i) key.push_back(c.str("record key part"));
  leaf.key = std::move(key);
  const Bytes payload = c.bin("record payload", true);
  const std::uint64_t payload_begin = static_cast<std::uint64_t>(payload.data() - data_.data());
  Cursor inner(data_, payload_begin, payload_begin + payload.size(), where);
  parse_leaf_value(inner, leaf);
  if (!inner.at_end()) {
    where.fail("payload has " + std::to_string(inner.end() - inner.pos()) +
               " bytes after its value");
  }
  position_ = c.pos();
  ++records_;
  return true;
}

namespace {

void walk_tree(Cursor& c, std::vector<std::string>& path, int depth,
               const std::function<void(ArrayLeaf&&)>& visit) {
  if (depth > 64) c.where().fail("tree is nested more than 64 levels deep");
  const unsigned char first = c.peek("tree value");
  const bool is_map = (first >= 0x80 && first <= 0x8f) || first == 0xde || first == 0xdf;
  if (is_map) {
    // A chunked array is a map too; it is recognised by its marker key (spec §4.1).
    const std::uint64_t mark = c.pos();
    const std::uint64_t entries = c.map_header("tree node");
    bool chunked = false;
    if (entries > 0) {
      Cursor probe(c);
      const auto name = probe.try_str_or_bin(false, "tree key");
      chunked = name && std::string_view(reinterpret_cast<const char*>(name->data()),
                                         name->size()) == kChunkedMarker;
    }
    if (!chunked) {
      if (entries > c.end() - c.pos())
        c.where().fail("truncated: map claims " + std::to_string(entries) + " entries");
      for (std::uint64_t e = 0; e < entries; ++e) {
        path.push_back(c.str("tree key"));
        walk_tree(c, path, depth + 1, visit);
        path.pop_back();
      }
      return;
    }
    ArrayLeaf leaf;
    leaf.key = path;
    leaf.offset = mark;
    Where where = c.where();
    where.key = &leaf.key;
    where.record_offset = mark;
    Cursor leaf_cursor(c.data(), c.pos(), c.end(), where);  // continues after the map header
    parse_chunked(leaf_cursor, entries, leaf);
    leaf.kind = LeafKind::array;
    c.skip_to(leaf_cursor.pos());
    visit(std::move(leaf));
    return;
  }
  ArrayLeaf leaf;
  leaf.key = path;
  leaf.offset = c.pos();
  Where where = c.where();
  where.key = &leaf.key;
  where.record_offset = leaf.offset;
  Cursor leaf_cursor(c.data(), c.pos(), c.end(), where);
  parse_leaf_value(leaf_cursor, leaf);
  c.skip_to(leaf_cursor.pos());
  visit(std::move(leaf));
}

}  // namespace

void read_flax_tree(Bytes data, const std::string& source,
                    const std::function<void(ArrayLeaf&&)>& visit) {
  Where where{&source, 0, nullptr, 0};
  Cursor c(data, 0, data.size(), where);
  std::vector<std::string> path;
  walk_tree(c, path, 0, visit);
  if (!c.at_end()) where.fail("has " + std::to_string(c.end() - c.pos()) + " bytes after the tree");
}

MsgpackRecordWriter::MsgpackRecordWriter(Sink sink, std::uint64_t max_chunk_bytes)
    : sink_(std::move(sink)), max_chunk_bytes_(max_chunk_bytes) {}

void MsgpackRecordWriter::write_array(const std::vector<std::string>& key, const std::string& dtype,
                                      const Shape& shape, const std::vector<Bytes>& data,
                                      bool scalar) {
  const std::size_t itemsize = numpy_itemsize(dtype);
  if (itemsize == 0)
    throw Error(ErrorKind::unsupported, "msgpack writer: unknown dtype '" + dtype + "'");
  if (scalar && !shape.empty())
    throw Error(ErrorKind::invalid_argument, "msgpack writer: a scalar leaf has shape []");
  std::uint64_t numel = 1;
  for (const auto d : shape) {
    if (d < 0) throw Error(ErrorKind::invalid_argument, "msgpack writer: negative dimension");
    numel *= static_cast<std::uint64_t>(d);
  }
  std::uint64_t nbytes = 0;
  for (const auto& piece : data) nbytes += piece.size();
  if (nbytes != numel * itemsize) {
    throw Error(ErrorKind::invalid_argument,
                "msgpack writer: shape " + shape_string(shape) + " of " + dtype + " needs " +
                    std::to_string(numel * itemsize) + " bytes, got " + std::to_string(nbytes));
  }

  // The payload is a sequence of small structural strings interleaved with byte ranges of the
  // concatenated input; lay it out first so the bin length is known before anything is written.
  struct Segment {
    std::string text;
    std::uint64_t data_begin = 0, data_end = 0;  // range of the concatenated input after `text`
  };
  std::vector<Segment> segments;
  const bool chunked = !scalar && nbytes > max_chunk_bytes_;
  if (!chunked) {
    std::string prefix = ndarray_prefix(shape, dtype, nbytes);
    std::string head;
    put_ext_header(head, prefix.size() + nbytes, scalar ? kExtNpScalar : kExtNdarray);
    segments.push_back({head + prefix, 0, nbytes});
  } else {
    // flax: chunksize = max(1, int(MAX_CHUNK_SIZE / itemsize)) elements of the flattened array.
    const std::uint64_t chunk_elements = std::max<std::uint64_t>(1, max_chunk_bytes_ / itemsize);
    const std::uint64_t count = (numel + chunk_elements - 1) / chunk_elements;
    std::string head;
    put_map(head, 3);
    put_str(head, kChunkedMarker);
    head.push_back(static_cast<char>(0xc3));
    put_str(head, "shape");
    put_map(head, shape.size());
    for (std::size_t i = 0; i < shape.size(); ++i) {
      put_str(head, std::to_string(i));
      put_uint(head, static_cast<std::uint64_t>(shape[i]));
    }
    put_str(head, "chunks");
    put_map(head, count);
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::uint64_t first = i * chunk_elements;
      const std::uint64_t elements = std::min(chunk_elements, numel - first);
      std::string text = i == 0 ? head : std::string();
      put_str(text, std::to_string(i));
      const std::string prefix =
          ndarray_prefix({static_cast<std::int64_t>(elements)}, dtype, elements * itemsize);
      put_ext_header(text, prefix.size() + elements * itemsize, kExtNdarray);
      text += prefix;
      segments.push_back({std::move(text), first * itemsize, (first + elements) * itemsize});
    }
  }
  std::uint64_t payload = 0;
  for (const auto& s : segments) payload += s.text.size() + (s.data_end - s.data_begin);

  std::string record;
  put_array(record, 2);
  put_array(record, key.size());
  for (const auto& part : key) put_str(record, part);
  put_bin_header(record, payload);
  sink_(record.data(), record.size());

  // Emits [begin, end) of the concatenation of `data`.
  std::size_t piece = 0;
  std::uint64_t piece_start = 0;  // offset of data[piece] in the concatenation
  auto emit = [&](std::uint64_t begin, std::uint64_t end) {
    while (begin < end) {
      while (piece < data.size() && piece_start + data[piece].size() <= begin) {
        piece_start += data[piece].size();
        ++piece;
      }
      const std::uint64_t within = begin - piece_start;
      const std::uint64_t n = std::min<std::uint64_t>(end - begin, data[piece].size() - within);
      sink_(data[piece].data() + within, n);
      begin += n;
    }
  };
  for (const auto& s : segments) {
    sink_(s.text.data(), s.text.size());
    emit(s.data_begin, s.data_end);
  }
}

}  // namespace lwm::convert
