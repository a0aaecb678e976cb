#include "lwm/tensor.h"

#include <cstring>
#include <sstream>

#include "lwm/error.h"

namespace lwm {

std::int64_t shape_numel(const Shape& shape) noexcept {
  std::int64_t n = 1;
  for (const auto d : shape) n *= d;
  return n;
}

std::string shape_string(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  for (const auto d : shape) {
    if (d < 0) throw Error(ErrorKind::invalid_argument, "negative dimension in shape " + shape_string(shape));
  }
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  const std::size_t bytes = t.nbytes();
  // Owned storage is 64-byte aligned for vector loads.
  auto buffer = std::shared_ptr<unsigned char[]>(new (std::align_val_t{64}) unsigned char[bytes ? bytes : 1]{},
                                                 [](unsigned char* p) { ::operator delete[](p, std::align_val_t{64}); });
  t.data_ = buffer.get();
  t.writable_ = true;
  t.storage_ = std::shared_ptr<const void>(buffer, buffer.get());
  return t;
}

Tensor Tensor::view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> keep_alive) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.writable_ = false;
  t.storage_ = std::move(keep_alive);
  return t;
}

Tensor Tensor::from_floats(Shape shape, const std::vector<float>& values) {
  if (shape_numel(shape) != static_cast<std::int64_t>(values.size())) {
    throw Error(ErrorKind::invalid_argument, "shape " + shape_string(shape) + " does not hold " +
                                                 std::to_string(values.size()) + " values");
  }
  Tensor t = zeros(DType::f32, std::move(shape));
  if (!values.empty()) std::memcpy(t.mutable_raw(), values.data(), values.size() * 4);
  return t;
}

std::int64_t Tensor::dim(int axis) const {
  const int r = rank();
  const int index = axis < 0 ? axis + r : axis;
  if (index < 0 || index >= r) {
    throw Error(ErrorKind::invalid_argument,
                "axis " + std::to_string(axis) + " out of range for shape " + shape_string(shape_));
  }
  return shape_[static_cast<std::size_t>(index)];
}

void* Tensor::mutable_raw() {
  if (!writable_) throw Error(ErrorKind::invalid_argument, "tensor " + shape_string(shape_) + " is read-only");
  return const_cast<void*>(data_);
}

const float* Tensor::f32() const {
  if (dtype_ != DType::f32) {
    throw Error(ErrorKind::invalid_argument, std::string("expected an f32 tensor, got ") + dtype_name(dtype_));
  }
  return static_cast<const float*>(data_);
}

float* Tensor::mutable_f32() {
  f32();
  return static_cast<float*>(mutable_raw());
}

Tensor Tensor::slice_rows(std::int64_t begin, std::int64_t end) const {
  if (rank() == 0 || begin < 0 || end < begin || end > shape_[0]) {
    throw Error(ErrorKind::invalid_argument, "rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                                                 ") out of range for shape " + shape_string(shape_));
  }
  Tensor t = *this;
  t.shape_[0] = end - begin;
  const std::size_t row_bytes = shape_[0] == 0 ? 0 : nbytes() / static_cast<std::size_t>(shape_[0]);
  t.data_ = static_cast<const unsigned char*>(data_) + static_cast<std::size_t>(begin) * row_bytes;
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  if (shape_numel(shape) != numel()) {
    throw Error(ErrorKind::invalid_argument,
                "cannot reshape " + shape_string(shape_) + " to " + shape_string(shape));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  Tensor out = zeros(dtype, shape_);
  const auto n = static_cast<std::size_t>(numel());
  if (dtype == dtype_) {
    if (n) std::memcpy(out.mutable_raw(), data_, nbytes());
  } else {
    std::vector<float> wide(n);
    to_float(dtype_, data_, wide.data(), n);
    from_float(dtype, wide.data(), out.mutable_raw(), n);
  }
  return out;
}

std::vector<float> Tensor::to_floats() const {
  std::vector<float> out(static_cast<std::size_t>(numel()));
  to_float(dtype_, data_, out.data(), out.size());
  return out;
}

}  // namespace lwm
