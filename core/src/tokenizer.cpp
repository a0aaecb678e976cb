// SentencePiece tokenizer, incremental detokenizer and trainer (spec §1.7).
#include "lwm/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <system_error>
#include <unordered_map>

#include "atomic_file.h"
#include "lwm/error.h"

namespace lwm {

// ---------------------------------------------------------------------------------------------
// Tokenizer

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
  std::filesystem::path file;
};

namespace {

// SentencePiece reads the file itself; we look first so that a missing file is reported as an
// I/O problem and a present-but-unreadable one as a format problem, both naming the file.
void check_model_file_exists(const std::filesystem::path& model_file) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(model_file, error)) {
    throw Error(ErrorKind::io,
                "tokenizer model '" + model_file.string() + "' does not exist or is not a file");
  }
}

// LLaMA's tokenizer and ours put unk, bos and eos at 0, 1, 2 (spec §1.7); the model's embedding
// rows are laid out for those ids, so a model file that disagrees cannot be used with it.
void check_special_ids(const sentencepiece::SentencePieceProcessor& processor,
                       const std::filesystem::path& model_file) {
  if (processor.GetPieceSize() <= 0 || processor.unk_id() < 0) {
    throw Error(ErrorKind::file_format, "tokenizer model '" + model_file.string() +
                                            "' has no vocabulary or no <unk> piece");
  }
}

}  // namespace

Tokenizer::Tokenizer(const std::filesystem::path& model_file) : impl_(std::make_unique<Impl>()) {
  check_model_file_exists(model_file);
  impl_->file = model_file;
  const auto status = impl_->processor.Load(model_file.string());
  if (!status.ok()) {
    throw Error(ErrorKind::file_format,
                "tokenizer model '" + model_file.string() +
                    "' is not a valid SentencePiece model: " + status.ToString());
  }
  check_special_ids(impl_->processor, model_file);
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<std::int32_t> Tokenizer::encode(std::string_view text) const {
  // No BOS/EOS: the caller (the chat template) inserts them (spec §1.7).
  std::vector<int> ids;
  const auto status = impl_->processor.Encode(text, &ids);
  if (!status.ok()) {
    throw Error(ErrorKind::invalid_argument, "cannot encode text with tokenizer '" +
                                                 impl_->file.string() + "': " + status.ToString());
  }
  return {ids.begin(), ids.end()};
}

EncodedText Tokenizer::encode_with_offsets(std::string_view text) const {
  sentencepiece::ImmutableSentencePieceText pieces;
  const auto status = impl_->processor.Encode(text, pieces.mutable_proto());
  if (!status.ok()) {
    throw Error(ErrorKind::invalid_argument, "cannot encode text with tokenizer '" +
                                                 impl_->file.string() + "': " + status.ToString());
  }
  EncodedText encoded;
  const std::size_t count = pieces.pieces_size();
  encoded.ids.reserve(count);
  encoded.begins.reserve(count);
  encoded.ends.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const auto piece = pieces.pieces(static_cast<int>(i));
    encoded.ids.push_back(static_cast<std::int32_t>(piece.id()));
    encoded.begins.push_back(piece.begin());
    encoded.ends.push_back(piece.end());
  }
  return encoded;
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  const std::vector<int> as_int(ids.begin(), ids.end());
  std::string text;
  const auto status = impl_->processor.Decode(as_int, &text);
  if (!status.ok()) {
    throw Error(ErrorKind::invalid_argument,
                "cannot decode token ids with tokenizer '" + impl_->file.string() +
                    "' (vocabulary of " + std::to_string(vocab_size()) + "): " + status.ToString());
  }
  return text;
}

std::string Tokenizer::piece(std::int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw Error(ErrorKind::invalid_argument, "token id " + std::to_string(id) +
                                                 " is outside the vocabulary of " +
                                                 std::to_string(vocab_size()) + " pieces");
  }
  return impl_->processor.IdToPiece(id);
}

std::int32_t Tokenizer::piece_id(std::string_view piece) const {
  return impl_->processor.PieceToId(piece);
}

std::int64_t Tokenizer::vocab_size() const {
  return impl_->processor.GetPieceSize();
}
std::int32_t Tokenizer::bos_id() const {
  return impl_->processor.bos_id();
}
std::int32_t Tokenizer::eos_id() const {
  return impl_->processor.eos_id();
}
std::int32_t Tokenizer::unk_id() const {
  return impl_->processor.unk_id();
}

// ---------------------------------------------------------------------------------------------
// TextStreamer
//
// SentencePiece's decode is a concatenation of per-piece surfaces except for two rules: the first
// piece loses its leading "▁" (the dummy prefix), and runs of byte-fallback pieces are merged
// into UTF-8 characters (incomplete ones become U+FFFD). So the decode of a prefix is a prefix of
// the decode of the whole, provided the prefix does not end inside a byte run that is still
// waiting for continuation bytes. We therefore hold back such a pending run, decode a bounded
// window of recent ids and emit what lies beyond the bytes already emitted.

namespace {

// Window bounds: we decode at most 2·kWindowKeep ids per token, so streaming is linear overall.
constexpr std::size_t kWindowKeep = 32;

// A byte-fallback piece is spelled "<0xHH>"; returns its byte, or -1 for any other piece.
int byte_of_piece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = piece[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

// Length of the UTF-8 sequence a lead byte announces; 1 for ASCII and for bytes that cannot start
// a sequence (those decode to U+FFFD on their own, whatever follows).
std::size_t utf8_sequence_length(unsigned char lead) {
  if (lead >= 0xC0 && lead < 0xE0) return 2;
  if (lead >= 0xE0 && lead < 0xF0) return 3;
  if (lead >= 0xF0 && lead < 0xF8) return 4;
  return 1;
}

bool is_continuation(unsigned char byte) {
  return (byte & 0xC0) == 0x80;
}

// How many of the trailing bytes form a sequence that later bytes may still complete. Holding
// back too much is harmless (it is emitted later); releasing too early is not.
std::size_t pending_byte_count(const std::vector<unsigned char>& bytes) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    const std::size_t need = utf8_sequence_length(bytes[i]);
    std::size_t have = 1;
    while (have < need && i + have < bytes.size() && is_continuation(bytes[i + have])) ++have;
    if (have < need && i + have == bytes.size()) return bytes.size() - i;
    i += (have == need) ? need : 1;
  }
  return 0;
}

}  // namespace

std::string TextStreamer::push(std::int32_t id) {
  tokenizer_.piece(id);  // throws for an id outside the vocabulary before the state changes
  ids_.push_back(id);

  // Bytes of the trailing run of byte pieces, to see whether it ends inside a character.
  std::vector<unsigned char> trailing_bytes;
  std::size_t run_start = ids_.size();
  while (run_start > 0) {
    const int byte = byte_of_piece(tokenizer_.piece(ids_[run_start - 1]));
    if (byte < 0) break;
    trailing_bytes.push_back(static_cast<unsigned char>(byte));
    --run_start;
  }
  std::reverse(trailing_bytes.begin(), trailing_bytes.end());
  const std::size_t pending = pending_byte_count(trailing_bytes);
  const std::size_t ready = ids_.size() - pending;
  if (ready == 0) return {};

  const std::string text = tokenizer_.decode(std::span(ids_).first(ready));
  std::string fresh = text.size() > emitted_bytes_ ? text.substr(emitted_bytes_) : std::string();
  emitted_bytes_ = std::max(emitted_bytes_, text.size());

  if (pending == 0 && ids_.size() > 2 * kWindowKeep) {
    // Restart the window at a piece that is neither a byte nor invisible: such a piece ends any
    // byte run before it and switches off the leading-space rule for everything after it, so the
    // window decodes the later ids exactly as the whole stream would.
    for (std::size_t start = ids_.size() - kWindowKeep; start + 1 < ids_.size(); ++start) {
      const std::string& piece = tokenizer_.piece(ids_[start]);
      if (byte_of_piece(piece) >= 0) continue;
      const std::int32_t single[] = {ids_[start]};
      if (tokenizer_.decode(single).empty()) continue;
      ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(start));
      emitted_bytes_ = tokenizer_.decode(ids_).size();
      break;
    }
  }
  return fresh;
}

std::string TextStreamer::finish() {
  // A pending byte run is final now: SentencePiece turns its bytes into U+FFFD.
  const std::string text = tokenizer_.decode(ids_);
  std::string rest = text.size() > emitted_bytes_ ? text.substr(emitted_bytes_) : std::string();
  ids_.clear();
  emitted_bytes_ = 0;
  return rest;
}

// ---------------------------------------------------------------------------------------------
// Training

namespace {

// Feeds the trainer the lines of our files, so that unreadable files are reported by name and
// paths with commas (SentencePiece's list separator) need no escaping.
class FileLineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit FileLineIterator(const std::vector<std::filesystem::path>& files) : files_(files) {
    advance();
  }
  bool done() const override { return done_; }
  void Next() override { advance(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void advance() {
    while (true) {
      if (stream_.is_open() && std::getline(stream_, line_)) {
        if (!line_.empty()) return;
        continue;
      }
      if (next_file_ == files_.size()) {
        done_ = true;
        return;
      }
      stream_ = std::ifstream(files_[next_file_++], std::ios::binary);
    }
  }

  const std::vector<std::filesystem::path>& files_;
  std::size_t next_file_ = 0;
  std::ifstream stream_;
  std::string line_;
  bool done_ = false;
};

void check_training_inputs(const std::vector<std::filesystem::path>& text_files,
                           const std::filesystem::path& output_model,
                           const TokenizerTrainingOptions& options) {
  if (text_files.empty()) {
    throw Error(ErrorKind::invalid_argument,
                "no text files given to train tokenizer '" + output_model.string() + "'");
  }
  for (const auto& file : text_files) {
    std::ifstream probe(file, std::ios::binary);
    if (!probe) {
      throw Error(ErrorKind::io, "cannot read tokenizer training text '" + file.string() + "'");
    }
  }
  if (options.model_type != "bpe" && options.model_type != "unigram") {
    throw Error(ErrorKind::invalid_argument, "tokenizer model type '" + options.model_type +
                                                 "' is not supported (use bpe or unigram)");
  }
  // unk, bos and eos, plus one piece per byte with byte fallback, plus at least one learned piece.
  const std::int64_t reserved = 3 + (options.byte_fallback ? 256 : 0);
  if (options.vocab_size <= reserved || options.vocab_size > (std::int64_t{1} << 24)) {
    throw Error(ErrorKind::invalid_argument,
                "tokenizer vocabulary size " + std::to_string(options.vocab_size) +
                    " is out of range: it must exceed the " + std::to_string(reserved) +
                    " reserved pieces" + (options.byte_fallback ? " (3 special + 256 bytes)" : "") +
                    " and stay below 2^24");
  }
}

// LLaMA's own trainer settings (spec §1.7): ids unk 0, bos 1, eos 2, no pad; identity
// normalisation that keeps whitespace; digits split; everything deterministic.
std::unordered_map<std::string, std::string> trainer_arguments(
    const TokenizerTrainingOptions& options) {
  return {
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"byte_fallback", options.byte_fallback ? "true" : "false"},
      {"character_coverage", "1.0"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "true"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"num_threads", "1"},
      {"minloglevel", "2"},
  };
}

}  // namespace

void train_tokenizer(const std::vector<std::filesystem::path>& text_files,
                     const std::filesystem::path& output_model,
                     const TokenizerTrainingOptions& options) {
  check_training_inputs(text_files, output_model, options);
  FileLineIterator lines(text_files);
  std::string serialized_model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(trainer_arguments(options), &lines,
                                                                 &serialized_model);
  if (!status.ok()) {
    throw Error(ErrorKind::invalid_argument,
                "training tokenizer '" + output_model.string() + "' failed: " + status.ToString());
  }
  // The trainer returned the model in memory; it reaches disk under its real name only whole.
  write_file_atomically(output_model, serialized_model);
}

}  // namespace lwm
