// LWM's SentencePiece tokenizer (spec §1.7) over the system SentencePiece library.
// Text segments are encoded separately with the model's default normaliser and never get BOS or
// EOS implicitly: callers insert them (the chat templates do), as the original LWM code did.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lwm {

// Token ids with the bytes of the input each token came from (SentencePiece's piece offsets).
struct EncodedText {
  std::vector<std::int32_t> ids;
  std::vector<std::size_t> begins;  // token i came from bytes [begins[i], ends[i]) of the input
  std::vector<std::size_t> ends;
};

class Tokenizer {
 public:
  // Loads a SentencePiece model file; throws Error naming the file if it is missing or invalid.
  explicit Tokenizer(const std::filesystem::path& model_file);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  std::vector<std::int32_t> encode(std::string_view text) const;
  // The same ids as encode(), each with its input bytes, so positions in a prompt map back to the
  // text (source_map.h). A piece that starts with the dummy-prefix space starts at the input's
  // space, or at byte 0 for the text's first piece; byte-fallback pieces of one character share it.
  EncodedText encode_with_offsets(std::string_view text) const;
  std::string decode(std::span<const std::int32_t> ids) const;
  std::string piece(std::int32_t id) const;
  std::int32_t piece_id(std::string_view piece) const;  // unk id when absent
  std::int64_t vocab_size() const;
  std::int32_t bos_id() const;
  std::int32_t eos_id() const;
  std::int32_t unk_id() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of token ids into text as it grows, emitting only complete UTF-8 characters
// (byte-fallback pieces may split a character across tokens).
class TextStreamer {
 public:
  explicit TextStreamer(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  // Adds one token; returns the text that became final with it (possibly empty).
  std::string push(std::int32_t id);
  // Whatever text is left at the end of the stream.
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  std::vector<std::int32_t> ids_;
  std::size_t emitted_bytes_ = 0;
};

struct TokenizerTrainingOptions {
  std::int64_t vocab_size = 2000;
  std::string model_type = "bpe";  // LLaMA's tokenizer is BPE with byte fallback
  bool byte_fallback = true;
};

// Trains a SentencePiece model on UTF-8 text files (for the model maker and tests) and writes
// `output_model` (a .model file) atomically. The result uses LLaMA's ids: unk 0, bos 1, eos 2.
void train_tokenizer(const std::vector<std::filesystem::path>& text_files,
                     const std::filesystem::path& output_model, const TokenizerTrainingOptions& options);

}  // namespace lwm
