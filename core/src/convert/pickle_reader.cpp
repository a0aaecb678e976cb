#include "pickle_reader.h"

#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <utility>

#include "lwm/error.h"

namespace lwm::convert {
namespace {

using Bytes = std::span<const unsigned char>;

constexpr std::size_t kMaxDepth = 64;  // dict nesting of the output; deeper means a cycle or junk

// The objects the subset can build. Values live in an arena owned by the VM and refer to each other
// by raw pointer, so a pickle that makes a cycle (a dict holding itself through the memo) cannot
// leak; flattening stops at kMaxDepth.
struct Value {
  enum class Kind {
    none,
    boolean,
    integer,
    floating,
    text,
    bytes,
    tuple,
    list,
    dict,
    global,       // a whitelisted callable or class, named by `text`
    dtype,        // numpy.dtype: `text` = numpy name, `itemsize`, `big_endian`
    array,        // numpy.ndarray: shape, dtype, data (built once BUILD has run for _reconstruct)
    frozen_dict,  // FrozenDict.__new__ awaiting BUILD with {"_dict": ...}
    storage,      // a torch storage named by a persistent id: `text` = key, `integer` = numel,
                  // `dtype` and `itemsize` from its storage class
    tensor,       // torch._utils._rebuild_tensor_v2: `items[0]` = storage, `integer` = offset,
                  // `shape`, `stride`, `dtype`, `itemsize`
  };
  Kind kind = Kind::none;
  bool flag = false;  // boolean value; array: built
  std::int64_t integer = 0;
  double floating = 0.0;
  std::string text;
  Bytes bytes;
  std::shared_ptr<const void> owner;  // for bytes decoded from protocol 2's latin-1 text
  std::vector<Value*> items;          // tuple, list
  std::vector<std::pair<Value*, Value*>> entries;  // dict, in insertion order
  // dtype / array / storage / tensor
  std::size_t itemsize = 0;
  bool big_endian = false;
  Shape shape;
  std::string dtype;                 // storage, tensor: numpy name of the element type
  std::vector<std::int64_t> stride;  // tensor, in elements
};

const char* kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::none:
      return "None";
    case Value::Kind::boolean:
      return "a bool";
    case Value::Kind::integer:
      return "an int";
    case Value::Kind::floating:
      return "a float";
    case Value::Kind::text:
      return "a str";
    case Value::Kind::bytes:
      return "bytes";
    case Value::Kind::tuple:
      return "a tuple";
    case Value::Kind::list:
      return "a list";
    case Value::Kind::dict:
      return "a dict";
    case Value::Kind::global:
      return "a class or function";
    case Value::Kind::dtype:
      return "a numpy dtype";
    case Value::Kind::array:
      return "a numpy array";
    case Value::Kind::frozen_dict:
      return "a FrozenDict";
    case Value::Kind::storage:
      return "a torch storage";
    case Value::Kind::tensor:
      return "a torch tensor";
  }
  return "?";
}

// The callables a parameter pickle may name (spec §3.8). Protocol 2 stores bytes as
// _codecs.encode(latin-1 text) and empty bytes as bytes(), so those two are allowed as well.
// torch.save's pickles (spec §1.6) name OrderedDict, the tensor rebuilders and storage classes.
enum class Callable {
  reconstruct,
  ndarray,
  dtype,
  frombuffer,
  jax_reconstruct_array,
  frozen_dict,
  codecs_encode,
  bytes,
  ordered_dict,
  rebuild_tensor,
  rebuild_parameter,
  torch_storage,
};

// torch's legacy storage classes, which torch.save still names in persistent ids → element type.
bool torch_storage_type(const std::string& global, std::string& name, std::size_t& itemsize) {
  static const std::pair<const char*, std::pair<const char*, std::size_t>> table[] = {
      {"torch.BFloat16Storage", {"bfloat16", 2}}, {"torch.HalfStorage", {"float16", 2}},
      {"torch.FloatStorage", {"float32", 4}},     {"torch.DoubleStorage", {"float64", 8}},
      {"torch.LongStorage", {"int64", 8}},        {"torch.IntStorage", {"int32", 4}},
      {"torch.ShortStorage", {"int16", 2}},       {"torch.CharStorage", {"int8", 1}},
      {"torch.ByteStorage", {"uint8", 1}},        {"torch.BoolStorage", {"bool", 1}},
  };
  for (const auto& [g, entry] : table) {
    if (global == g) {
      name = entry.first;
      itemsize = entry.second;
      return true;
    }
  }
  return false;
}

const std::map<std::string, Callable>& allowed_globals() {
  static const std::map<std::string, Callable> table = {
      {"numpy.core.multiarray._reconstruct", Callable::reconstruct},
      {"numpy._core.multiarray._reconstruct", Callable::reconstruct},
      {"numpy.ndarray", Callable::ndarray},
      {"numpy.dtype", Callable::dtype},
      {"numpy.core.numeric._frombuffer", Callable::frombuffer},
      {"numpy._core.numeric._frombuffer", Callable::frombuffer},
      {"jax._src.array._reconstruct_array", Callable::jax_reconstruct_array},
      {"flax.core.frozen_dict.FrozenDict", Callable::frozen_dict},
      {"_codecs.encode", Callable::codecs_encode},
      {"builtins.bytes", Callable::bytes},
      {"__builtin__.bytes", Callable::bytes},
      {"collections.OrderedDict", Callable::ordered_dict},
      {"torch._utils._rebuild_tensor_v2", Callable::rebuild_tensor},
      {"torch._utils._rebuild_parameter", Callable::rebuild_parameter},
      {"torch.BFloat16Storage", Callable::torch_storage},
      {"torch.HalfStorage", Callable::torch_storage},
      {"torch.FloatStorage", Callable::torch_storage},
      {"torch.DoubleStorage", Callable::torch_storage},
      {"torch.LongStorage", Callable::torch_storage},
      {"torch.IntStorage", Callable::torch_storage},
      {"torch.ShortStorage", Callable::torch_storage},
      {"torch.CharStorage", Callable::torch_storage},
      {"torch.ByteStorage", Callable::torch_storage},
      {"torch.BoolStorage", Callable::torch_storage},
  };
  return table;
}

// numpy's short type codes ('<f4' without the byte order) → (name, itemsize).
bool numpy_type_code(const std::string& code, std::string& name, std::size_t& itemsize) {
  static const std::pair<const char*, std::pair<const char*, std::size_t>> table[] = {
      {"f2", {"float16", 2}}, {"f4", {"float32", 4}}, {"f8", {"float64", 8}}, {"i1", {"int8", 1}},
      {"i2", {"int16", 2}},   {"i4", {"int32", 4}},   {"i8", {"int64", 8}},   {"u1", {"uint8", 1}},
      {"u2", {"uint16", 2}},  {"u4", {"uint32", 4}},  {"u8", {"uint64", 8}},  {"b1", {"bool", 1}},
  };
  for (const auto& [c, entry] : table) {
    if (code == c) {
      name = entry.first;
      itemsize = entry.second;
      return true;
    }
  }
  return false;
}

class PickleVm {
 public:
  PickleVm(Bytes data, const std::string& source) : data_(data), source_(source) {}

  Value* run();

 private:
  [[noreturn]] void fail(const std::string& problem,
                         ErrorKind kind = ErrorKind::file_format) const {
    throw Error(kind,
                "pickle '" + source_ + "' at byte " + std::to_string(op_offset_) + ": " + problem);
  }

  Value* make(Value::Kind kind) {
    arena_.emplace_back();
    arena_.back().kind = kind;
    return &arena_.back();
  }

  void need(std::uint64_t n) const {
    if (n > data_.size() - pos_) {
      fail("truncated: needs " + std::to_string(n) + " more bytes, " +
           std::to_string(data_.size() - pos_) + " remain");
    }
  }
  std::uint64_t little_endian(int n) {
    need(static_cast<std::uint64_t>(n));
    std::uint64_t value = 0;
    for (int i = n - 1; i >= 0; --i)
      value = (value << 8) | data_[pos_ + static_cast<std::size_t>(i)];
    pos_ += static_cast<std::size_t>(n);
    return value;
  }
  Bytes take(std::uint64_t n) {
    need(n);
    Bytes out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  std::string line() {
    const std::size_t start = pos_;
    while (pos_ < data_.size() && data_[pos_] != '\n') ++pos_;
    if (pos_ == data_.size()) fail("truncated: a GLOBAL name has no line end");
    std::string text(reinterpret_cast<const char*>(data_.data() + start), pos_ - start);
    ++pos_;
    return text;
  }

  Value* pop() {
    if (stack_.size() <= floor()) fail("stack underflow");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top() {
    if (stack_.size() <= floor()) fail("stack underflow");
    return stack_.back();
  }
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<Value*> pop_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  void push(Value* v) { stack_.push_back(v); }

  Value* text_value(Bytes utf8) {
    Value* v = make(Value::Kind::text);
    v->text.assign(reinterpret_cast<const char*>(utf8.data()), utf8.size());
    return v;
  }
  Value* bytes_value(Bytes raw) {
    Value* v = make(Value::Kind::bytes);
    v->bytes = raw;
    return v;
  }
  Value* global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    if (allowed_globals().count(full) == 0) {
      fail("the global '" + full +
               "' is not allowed in a parameter file (only numpy arrays, torch tensors, "
               "dtypes and dicts can be read)",
           ErrorKind::unsupported);
    }
    Value* v = make(Value::Kind::global);
    v->text = full;
    return v;
  }
  void memo_put(std::uint64_t index) { memo_[index] = top(); }
  Value* memo_get(std::uint64_t index) {
    const auto found = memo_.find(index);
    if (found == memo_.end()) fail("memo entry " + std::to_string(index) + " was never stored");
    return found->second;
  }

  void set_item(Value* dict, Value* key, Value* value) {
    if (dict->kind != Value::Kind::dict) fail(std::string("SETITEM on ") + kind_name(dict->kind));
    for (auto& entry : dict->entries) {
      if (entry.first->kind == Value::Kind::text && key->kind == Value::Kind::text &&
          entry.first->text == key->text) {
        entry.second = value;
        return;
      }
    }
    dict->entries.emplace_back(key, value);
  }

  Callable callable_of(const Value* v, const char* op) const {
    if (v->kind != Value::Kind::global)
      fail(std::string(op) + " on " + kind_name(v->kind) + ", not a callable");
    return allowed_globals().at(v->text);
  }
  const Value* item(const Value* tuple, std::size_t i, Value::Kind kind, const char* what) const {
    if (tuple->kind != Value::Kind::tuple || i >= tuple->items.size())
      fail(std::string(what) + " is missing");
    const Value* v = tuple->items[i];
    if (v->kind != kind)
      fail(std::string(what) + " is " + kind_name(v->kind) + ", expected " + kind_name(kind));
    return v;
  }
  Shape shape_of(const Value* tuple, const char* what) const {
    if (tuple->kind != Value::Kind::tuple && tuple->kind != Value::Kind::list) {
      fail(std::string(what) + " is " + kind_name(tuple->kind) + ", expected a tuple");
    }
    if (tuple->items.size() > 64) fail(std::string(what) + " has more than 64 dimensions");
    Shape shape;
    for (const Value* d : tuple->items) {
      if (d->kind != Value::Kind::integer || d->integer < 0)
        fail(std::string(what) + " holds a non-dimension");
      shape.push_back(d->integer);
    }
    return shape;
  }
  // Sets an array's data after checking shape × itemsize against the byte count.
  void fill_array(Value* array, const Shape& shape, const Value* dtype, const Value* data,
                  bool fortran) {
    if (dtype->kind != Value::Kind::dtype)
      fail(std::string("array dtype is ") + kind_name(dtype->kind));
    if (data->kind != Value::Kind::bytes) {
      fail(std::string("array data is ") + kind_name(data->kind) +
               " (object arrays are not parameters)",
           ErrorKind::unsupported);
    }
    if (dtype->big_endian && dtype->itemsize > 1)
      fail("big-endian arrays are not supported", ErrorKind::unsupported);
    std::size_t long_dims = 0;
    for (const auto d : shape) long_dims += d > 1 ? 1 : 0;
    if (fortran && long_dims > 1)
      fail("Fortran-ordered arrays are not supported", ErrorKind::unsupported);
    std::uint64_t numel = 1;
    for (const auto d : shape) {
      if (d != 0 && numel > UINT64_MAX / static_cast<std::uint64_t>(d))
        fail("array shape overflows");
      numel *= static_cast<std::uint64_t>(d);
    }
    if (numel > UINT64_MAX / dtype->itemsize || numel * dtype->itemsize != data->bytes.size()) {
      fail("array of shape " + shape_string(shape) + " and dtype " + dtype->text + " has " +
           std::to_string(data->bytes.size()) + " data bytes");
    }
    array->shape = shape;
    array->text = dtype->text;
    array->itemsize = dtype->itemsize;
    array->bytes = data->bytes;
    array->owner = data->owner;
    array->flag = true;
  }

  Value* reduce(Value* callable, Value* args);
  void build(Value* object, Value* state);
  Value* persistent_load(const Value* pid);
  Value* rebuild_tensor(const Value* args);
  Value* latin1_bytes(const Value* text);

  Bytes data_;
  const std::string& source_;
  std::size_t pos_ = 0;
  std::size_t op_offset_ = 0;
  std::deque<Value> arena_;  // deque: pointers stay valid as it grows
  std::vector<Value*> stack_;
  std::vector<std::size_t> marks_;
  std::map<std::uint64_t, Value*> memo_;
};

// Protocol 2 pickles bytes as _codecs.encode(str, 'latin1'): each code point below 256 is a byte.
Value* PickleVm::latin1_bytes(const Value* text) {
  auto buffer = std::make_shared<std::vector<unsigned char>>();
  const std::string& s = text->text;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      buffer->push_back(c);
      ++i;
    } else if ((c & 0xe0) == 0xc0 && i + 1 < s.size() &&
               (static_cast<unsigned char>(s[i + 1]) & 0xc0) == 0x80) {
      const unsigned code = ((c & 0x1fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3fu);
      if (code < 0x80 || code > 0xff) fail("latin-1 text holds a character above U+00FF");
      buffer->push_back(static_cast<unsigned char>(code));
      i += 2;
    } else {
      fail("latin-1 text is not valid UTF-8 below U+0100");
    }
  }
  Value* v = make(Value::Kind::bytes);
  v->bytes = Bytes(buffer->data(), buffer->size());
  v->owner = std::move(buffer);
  return v;
}

Value* PickleVm::reduce(Value* callable, Value* args) {
  const Callable which = callable_of(callable, "REDUCE");
  if (args->kind != Value::Kind::tuple)
    fail("REDUCE arguments are " + std::string(kind_name(args->kind)));
  switch (which) {
    case Callable::reconstruct: {
      // _reconstruct(ndarray, (0,), b'b') makes an empty array that BUILD then fills.
      const Value* cls = item(args, 0, Value::Kind::global, "_reconstruct class");
      if (allowed_globals().at(cls->text) != Callable::ndarray)
        fail("_reconstruct of " + cls->text);
      return make(Value::Kind::array);
    }
    case Callable::dtype: {
      const Value* code = item(args, 0, Value::Kind::text, "dtype code");
      Value* v = make(Value::Kind::dtype);
      if (!numpy_type_code(code->text, v->text, v->itemsize)) {
        fail("numpy dtype '" + code->text + "' is not supported", ErrorKind::unsupported);
      }
      return v;
    }
    case Callable::frombuffer: {
      // _frombuffer(buffer, dtype, shape, order): protocol 5's in-band array (spec §3.8).
      const Value* buffer = args->items.size() == 4 ? args->items[0] : nullptr;
      if (buffer == nullptr) fail("_frombuffer needs 4 arguments");
      const Value* dtype = args->items[1];
      const Shape shape = shape_of(args->items[2], "_frombuffer shape");
      const Value* order = item(args, 3, Value::Kind::text, "_frombuffer order");
      if (order->text != "C" && order->text != "F") fail("_frombuffer order '" + order->text + "'");
      Value* array = make(Value::Kind::array);
      fill_array(array, shape, dtype, buffer, order->text == "F");
      return array;
    }
    case Callable::jax_reconstruct_array: {
      // _reconstruct_array(fun, args, arr_state, aval_state) = fun(*args).__setstate__(arr_state).
      if (args->items.size() != 4) fail("_reconstruct_array needs 4 arguments");
      Value* inner = reduce(args->items[0], args->items[1]);
      build(inner, args->items[2]);
      return inner;
    }
    case Callable::frozen_dict: {
      if (args->items.size() != 1 || args->items[0]->kind != Value::Kind::dict) {
        fail("FrozenDict(...) expects one dict");
      }
      return args->items[0];
    }
    case Callable::codecs_encode: {
      const Value* text = item(args, 0, Value::Kind::text, "encode text");
      const Value* encoding = item(args, 1, Value::Kind::text, "encode encoding");
      if (encoding->text != "latin1" && encoding->text != "latin-1") {
        fail("_codecs.encode with encoding '" + encoding->text + "'", ErrorKind::unsupported);
      }
      return latin1_bytes(text);
    }
    case Callable::bytes:
      if (!args->items.empty()) fail("bytes(...) with arguments", ErrorKind::unsupported);
      return bytes_value(Bytes());
    case Callable::ordered_dict:
      // OrderedDict() (its items follow as SETITEMS); torch's empty backward-hook dicts too.
      if (!args->items.empty()) fail("OrderedDict(...) with arguments", ErrorKind::unsupported);
      return make(Value::Kind::dict);
    case Callable::rebuild_tensor:
      return rebuild_tensor(args);
    case Callable::rebuild_parameter: {
      // _rebuild_parameter(data, requires_grad, backward_hooks): the parameter is its data.
      if (args->items.empty() || args->items[0]->kind != Value::Kind::tensor)
        fail("_rebuild_parameter needs a tensor");
      return args->items[0];
    }
    case Callable::ndarray:
    case Callable::torch_storage:
      break;
  }
  fail("REDUCE of '" + callable->text + "' is not supported", ErrorKind::unsupported);
}

void PickleVm::build(Value* object, Value* state) {
  switch (object->kind) {
    case Value::Kind::array: {
      // ndarray.__setstate__((version, shape, dtype, is_fortran, raw_bytes)).
      if (object->flag) fail("BUILD on an array that is already built");
      if (state->kind != Value::Kind::tuple || state->items.size() != 5)
        fail("array state is not a 5-tuple");
      const Shape shape = shape_of(state->items[1], "array shape");
      const Value* fortran = item(state, 3, Value::Kind::boolean, "array fortran flag");
      fill_array(object, shape, state->items[2], state->items[4], fortran->flag);
      return;
    }
    case Value::Kind::dtype: {
      // dtype.__setstate__((3 or 4, byte order, ...)).
      if (state->kind != Value::Kind::tuple || state->items.size() < 2)
        fail("dtype state is not a tuple");
      const Value* order = item(state, 1, Value::Kind::text, "dtype byte order");
      if (order->text == ">") {
        object->big_endian = true;
      } else if (order->text != "<" && order->text != "|" && order->text != "=") {
        fail("dtype byte order '" + order->text + "'");
      }
      return;
    }
    case Value::Kind::dict: {
      // A state dict's OrderedDict carries module versions as its `_metadata` attribute; they
      // say nothing about the tensors.
      if (state->kind == Value::Kind::dict && state->entries.size() == 1 &&
          state->entries[0].first->kind == Value::Kind::text &&
          state->entries[0].first->text == "_metadata") {
        return;
      }
      break;
    }
    case Value::Kind::frozen_dict: {
      // FrozenDict's state is {"_dict": {...}, "_hash": ...}.
      if (state->kind != Value::Kind::dict) fail("FrozenDict state is not a dict");
      for (const auto& [key, value] : state->entries) {
        if (key->kind == Value::Kind::text && key->text == "_dict" &&
            value->kind == Value::Kind::dict) {
          object->kind = Value::Kind::dict;
          object->entries = value->entries;
          return;
        }
      }
      fail("FrozenDict state has no '_dict'");
    }
    default:
      break;
  }
  fail(std::string("BUILD on ") + kind_name(object->kind), ErrorKind::unsupported);
}

// torch.save's persistent id of a storage: ('storage', <storage class>, key, location, numel).
Value* PickleVm::persistent_load(const Value* pid) {
  const Value* tag = item(pid, 0, Value::Kind::text, "persistent id tag");
  if (tag->text != "storage" || pid->items.size() != 5) {
    fail("persistent id '" + tag->text + "' is not a torch storage", ErrorKind::unsupported);
  }
  const Value* cls = item(pid, 1, Value::Kind::global, "storage class");
  Value* storage = make(Value::Kind::storage);
  if (!torch_storage_type(cls->text, storage->dtype, storage->itemsize)) {
    fail("storage class '" + cls->text + "' is not supported", ErrorKind::unsupported);
  }
  storage->text = item(pid, 2, Value::Kind::text, "storage key")->text;
  if (storage->text.empty() || storage->text.find('/') != std::string::npos ||
      storage->text.find("..") != std::string::npos) {
    fail("storage key '" + storage->text + "' is not a plain name");
  }
  storage->integer = item(pid, 4, Value::Kind::integer, "storage size")->integer;
  if (storage->integer < 0) fail("storage size " + std::to_string(storage->integer));
  return storage;
}

// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks[, metadata]):
// a strided view of a storage, checked to lie inside it.
Value* PickleVm::rebuild_tensor(const Value* args) {
  if (args->items.size() < 6 || args->items.size() > 7)
    fail("_rebuild_tensor_v2 needs 6 or 7 arguments");
  const Value* storage = item(args, 0, Value::Kind::storage, "tensor storage");
  const std::int64_t offset = item(args, 1, Value::Kind::integer, "tensor storage offset")->integer;
  Value* tensor = make(Value::Kind::tensor);
  tensor->items = {const_cast<Value*>(storage)};
  tensor->integer = offset;
  tensor->shape = shape_of(args->items[2], "tensor size");
  const Shape stride = shape_of(args->items[3], "tensor stride");
  if (stride.size() != tensor->shape.size()) {
    fail("tensor of size " + shape_string(tensor->shape) + " has stride " + shape_string(stride));
  }
  tensor->stride.assign(stride.begin(), stride.end());
  tensor->dtype = storage->dtype;
  tensor->itemsize = storage->itemsize;
  // The last element it reaches: offset + Σ (size_i − 1)·stride_i, which must be in the storage.
  bool empty = false;
  std::uint64_t last = static_cast<std::uint64_t>(offset);
  if (offset < 0) fail("tensor storage offset " + std::to_string(offset));
  for (std::size_t i = 0; i < stride.size(); ++i) {
    if (tensor->shape[i] == 0) empty = true;
    const auto reach = static_cast<std::uint64_t>(tensor->shape[i] > 0 ? tensor->shape[i] - 1 : 0);
    const auto step = static_cast<std::uint64_t>(stride[i]);
    if (step != 0 && reach > (UINT64_MAX - last) / step) fail("tensor extent overflows");
    last += reach * step;
  }
  if (!empty && last >= static_cast<std::uint64_t>(storage->integer)) {
    fail("tensor of size " + shape_string(tensor->shape) + ", stride " + shape_string(stride) +
         " at offset " + std::to_string(offset) + " reaches past its storage '" + storage->text +
         "' of " + std::to_string(storage->integer) + " elements");
  }
  return tensor;
}

Value* PickleVm::run() {
  while (true) {
    op_offset_ = pos_;
    need(1);
    const unsigned char op = data_[pos_++];
    switch (op) {
      case 0x80: {  // PROTO
        const auto protocol = little_endian(1);
        if (op_offset_ != 0) fail("PROTO in the middle of the pickle");
        if (protocol < 2 || protocol > 5)
          fail("pickle protocol " + std::to_string(protocol) + " (2–5 supported)",
               ErrorKind::unsupported);
        break;
      }
      case 0x95:  // FRAME: a length hint; the frame's opcodes follow inline.
        little_endian(8);
        break;
      case '.':  // STOP
        if (stack_.size() != 1 || !marks_.empty())
          fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
        return stack_.back();
      case '(':
        marks_.push_back(stack_.size());
        break;  // MARK
      case '}':
        push(make(Value::Kind::dict));
        break;  // EMPTY_DICT
      case ']':
        push(make(Value::Kind::list));
        break;  // EMPTY_LIST
      case ')':
        push(make(Value::Kind::tuple));
        break;     // EMPTY_TUPLE
      case 't': {  // TUPLE
        Value* v = make(Value::Kind::tuple);
        v->items = pop_mark();
        push(v);
        break;
      }
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        const std::size_t n = static_cast<std::size_t>(op - 0x84);
        if (stack_.size() < floor() + n) fail("stack underflow");
        Value* v = make(Value::Kind::tuple);
        v->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
        stack_.resize(stack_.size() - n);
        push(v);
        break;
      }
      case 's': {  // SETITEM
        Value* value = pop();
        Value* key = pop();
        set_item(top(), key, value);
        break;
      }
      case 'u': {  // SETITEMS
        const auto items = pop_mark();
        if (items.size() % 2 != 0) fail("SETITEMS with an odd number of values");
        Value* dict = top();
        for (std::size_t i = 0; i < items.size(); i += 2) set_item(dict, items[i], items[i + 1]);
        break;
      }
      case 'a': {  // APPEND
        Value* value = pop();
        Value* list = top();
        if (list->kind != Value::Kind::list)
          fail(std::string("APPEND to ") + kind_name(list->kind));
        list->items.push_back(value);
        break;
      }
      case 'e': {  // APPENDS
        const auto items = pop_mark();
        Value* list = top();
        if (list->kind != Value::Kind::list)
          fail(std::string("APPENDS to ") + kind_name(list->kind));
        list->items.insert(list->items.end(), items.begin(), items.end());
        break;
      }
      case 'X':
        push(text_value(take(little_endian(4))));
        break;  // BINUNICODE
      case 0x8c:
        push(text_value(take(little_endian(1))));
        break;  // SHORT_BINUNICODE
      case 0x8d:
        push(text_value(take(little_endian(8))));
        break;  // BINUNICODE8
      case 'C':
        push(bytes_value(take(little_endian(1))));
        break;  // SHORT_BINBYTES
      case 'B':
        push(bytes_value(take(little_endian(4))));
        break;  // BINBYTES
      case 0x8e:
        push(bytes_value(take(little_endian(8))));
        break;  // BINBYTES8
      case 0x96:
        push(bytes_value(take(little_endian(8))));
        break;     // BYTEARRAY8
      case 'J': {  // BININT (signed 32-bit)
        Value* v = make(Value::Kind::integer);
        v->integer = static_cast<std::int32_t>(static_cast<std::uint32_t>(little_endian(4)));
        push(v);
        break;
      }
      case 'K':
      case 'M': {  // BININT1, BININT2
        Value* v = make(Value::Kind::integer);
        v->integer = static_cast<std::int64_t>(little_endian(op == 'K' ? 1 : 2));
        push(v);
        break;
      }
      case 0x8a: {  // LONG1: little-endian two's complement of n bytes
        const auto n = little_endian(1);
        if (n > 8) fail("integer of " + std::to_string(n) + " bytes is too large");
        const Bytes raw = take(n);
        std::uint64_t value = 0;
        for (std::size_t i = raw.size(); i-- > 0;) value = (value << 8) | raw[i];
        if (n > 0 && n < 8 && (raw[n - 1] & 0x80) != 0) value |= ~std::uint64_t{0} << (8 * n);
        Value* v = make(Value::Kind::integer);
        v->integer = static_cast<std::int64_t>(value);
        push(v);
        break;
      }
      case 'N':
        push(make(Value::Kind::none));
        break;  // NONE
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        Value* v = make(Value::Kind::boolean);
        v->flag = op == 0x88;
        push(v);
        break;
      }
      case 'G': {  // BINFLOAT (big-endian double)
        need(8);
        std::uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | data_[pos_++];
        Value* v = make(Value::Kind::floating);
        std::memcpy(&v->floating, &bits, 8);
        push(v);
        break;
      }
      case 'c': {  // GLOBAL "module\nname\n"
        const std::string module = line();
        const std::string name = line();
        push(global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Value* name = pop();
        Value* module = pop();
        if (name->kind != Value::Kind::text || module->kind != Value::Kind::text)
          fail("STACK_GLOBAL needs two str");
        push(global(module->text, name->text));
        break;
      }
      case 'R': {  // REDUCE
        Value* args = pop();
        Value* callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 'Q': {  // BINPERSID: torch.save's storages
        Value* pid = pop();
        push(persistent_load(pid));
        break;
      }
      case 'b': {  // BUILD
        Value* state = pop();
        build(top(), state);
        break;
      }
      case 0x81: {  // NEWOBJ: only FrozenDict.__new__(FrozenDict), filled by BUILD
        Value* args = pop();
        Value* cls = pop();
        if (callable_of(cls, "NEWOBJ") != Callable::frozen_dict ||
            args->kind != Value::Kind::tuple) {
          fail("NEWOBJ of '" + cls->text + "' is not supported", ErrorKind::unsupported);
        }
        push(make(Value::Kind::frozen_dict));
        break;
      }
      case 0x94:
        memo_put(memo_.size());
        break;  // MEMOIZE
      case 'q':
        memo_put(little_endian(1));
        break;  // BINPUT
      case 'r':
        memo_put(little_endian(4));
        break;  // LONG_BINPUT
      case 'h':
        push(memo_get(little_endian(1)));
        break;  // BINGET
      case 'j':
        push(memo_get(little_endian(4)));
        break;  // LONG_BINGET
      default: {
        static const char* hex = "0123456789abcdef";
        std::string shown = "0x";
        shown += hex[op >> 4];
        shown += hex[op & 15];
        if (op >= 0x20 && op < 0x7f) shown += std::string(" ('") + static_cast<char>(op) + "')";
        fail("pickle opcode " + shown + " is not supported by the parameter reader",
             ErrorKind::unsupported);
      }
    }
  }
}

// Runs the pickle and checks that it built a dict (`of_what` says of what, for the message).
const Value* run_to_dict(PickleVm& vm, const std::string& source, const char* of_what) {
  const Value* root = vm.run();
  if (root->kind != Value::Kind::dict) {
    throw Error(ErrorKind::file_format, "pickle '" + source + "' holds " + kind_name(root->kind) +
                                            ", not a dict of " + of_what);
  }
  return root;
}

// Calls `leaf(path, value)` for every value of the nested dicts under `dict` that is not a dict,
// in insertion order; `path` holds the keys from the top.
void walk_leaves(const Value* dict, std::vector<std::string>& path, const std::string& source,
                 const std::function<void(const std::vector<std::string>&, const Value*)>& leaf) {
  if (path.size() > kMaxDepth) {
    throw Error(ErrorKind::file_format, "pickle '" + source + "': dicts nested more than " +
                                            std::to_string(kMaxDepth) + " deep (a cycle?)");
  }
  for (const auto& [key, value] : dict->entries) {
    if (key->kind != Value::Kind::text) {
      throw Error(ErrorKind::file_format,
                  "pickle '" + source + "': a dict key is " + kind_name(key->kind) + ", not a str");
    }
    path.push_back(key->text);
    if (value->kind == Value::Kind::dict) {
      walk_leaves(value, path, source, leaf);
    } else {
      leaf(path, value);
    }
    path.pop_back();
  }
}

std::string joined(const std::vector<std::string>& path, char separator) {
  std::string out;
  for (const auto& part : path) {
    if (!out.empty()) out.push_back(separator);
    out += part;
  }
  return out;
}

[[noreturn]] void unexpected_leaf(const std::string& source, const std::string& name,
                                  const Value* value, const char* expected) {
  throw Error(ErrorKind::unsupported, "pickle '" + source + "': '" + name + "' is " +
                                          kind_name(value->kind) + ", expected a dict or " +
                                          expected);
}

}  // namespace

bool PickledTensor::contiguous() const {
  std::int64_t expected = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && stride[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

std::vector<PickledTensor> read_pickled_torch_tensors(std::span<const unsigned char> data,
                                                      const std::string& source) {
  PickleVm vm(data, source);
  std::vector<PickledTensor> out;
  std::vector<std::string> path;
  walk_leaves(run_to_dict(vm, source, "tensors (a state dict)"), path, source,
              [&](const std::vector<std::string>& key, const Value* value) {
                const std::string name = joined(key, '.');
                if (value->kind != Value::Kind::tensor)
                  unexpected_leaf(source, name, value, "a torch tensor");
                const Value* storage = value->items[0];
                PickledTensor tensor;
                tensor.name = name;
                tensor.dtype = value->dtype;
                tensor.itemsize = value->itemsize;
                tensor.storage_key = storage->text;
                tensor.storage_numel = storage->integer;
                tensor.offset = value->integer;
                tensor.shape = value->shape;
                tensor.stride = value->stride;
                out.push_back(std::move(tensor));
              });
  return out;
}

std::string PickledArray::key_string(char separator) const {
  return joined(key, separator);
}

std::vector<PickledArray> read_pickled_arrays(std::span<const unsigned char> data,
                                              const std::string& source) {
  PickleVm vm(data, source);
  std::vector<PickledArray> out;
  std::vector<std::string> path;
  walk_leaves(run_to_dict(vm, source, "parameters"), path, source,
              [&](const std::vector<std::string>& key, const Value* value) {
                if (value->kind != Value::Kind::array || !value->flag)
                  unexpected_leaf(source, joined(key, '/'), value, "an array");
                PickledArray array;
                array.key = key;
                array.dtype = value->text;
                array.itemsize = value->itemsize;
                array.shape = value->shape;
                array.data = value->bytes;
                array.owner = value->owner;
                out.push_back(std::move(array));
              });
  return out;
}

}  // namespace lwm::convert
