// Tokenizer, TextStreamer and train_tokenizer (spec §1.7).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

#include "lwm/error.h"
#include "lwm/tokenizer.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace lwm {
namespace {

using test::test_tokenizer;

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

using test::capture_error;

TEST(Tokenizer, UsesLlamaSpecialIds) {
  const Tokenizer& tokenizer = test_tokenizer();
  EXPECT_EQ(tokenizer.unk_id(), 0);
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.eos_id(), 2);
  EXPECT_EQ(tokenizer.piece(0), "<unk>");
  EXPECT_EQ(tokenizer.piece(1), "<s>");
  EXPECT_EQ(tokenizer.piece(2), "</s>");
  EXPECT_EQ(tokenizer.vocab_size(), test::kTestVocabSize);
  EXPECT_EQ(tokenizer.piece_id("<s>"), 1);
  EXPECT_EQ(tokenizer.piece_id("no such piece here"), tokenizer.unk_id());
}

TEST(Tokenizer, NewlineIsByteFallbackPiece13) {
  // As in LLaMA's tokenizer (spec §1.7): bytes follow the three special pieces.
  const Tokenizer& tokenizer = test_tokenizer();
  EXPECT_EQ(tokenizer.piece(13), "<0x0A>");
  const auto ids = tokenizer.encode("sea\nwind");
  EXPECT_NE(std::find(ids.begin(), ids.end(), 13), ids.end());
}

TEST(Tokenizer, AddsNoBosOrEos) {
  const Tokenizer& tokenizer = test_tokenizer();
  const auto ids = tokenizer.encode("The keeper watched the harbour.");
  ASSERT_FALSE(ids.empty());
  for (const auto id : ids) {
    EXPECT_NE(id, tokenizer.bos_id());
    EXPECT_NE(id, tokenizer.eos_id());
  }
  EXPECT_TRUE(tokenizer.encode("").empty());
}

TEST(Tokenizer, AddsDummyPrefixToEachSegment) {
  // Default normaliser: every separately encoded segment starts a word (spec §1.7).
  const Tokenizer& tokenizer = test_tokenizer();
  const auto ids = tokenizer.encode("keeper");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(tokenizer.piece(ids[0]).rfind("\xE2\x96\x81", 0), 0u) << tokenizer.piece(ids[0]);
}

TEST(Tokenizer, RoundTripsEveryScript) {
  const Tokenizer& tokenizer = test_tokenizer();
  const std::vector<std::string> texts = {
      "The lighthouse keeper wrote 1907 into the log.",
      "  leading spaces, double  spaces and a trailing space ",
      "tabs\tand\nnewlines\n\nkept",
      "Über Möwen, écrivait, l'escalier, mañana, Ærø, Łódź",
      "灯台守は毎晩階段を上り、海の天気を日誌に書いた。",
      "未见过的汉字：龘靐齉",  // characters absent from the corpus: byte fallback
      "emoji 🙂🚢🌊 and flags 🇳🇴 with ZWJ 👩‍👩‍👧",
      "mixed: keeper 灯台 🙂 Möwe 42",
  };
  for (const auto& text : texts) {
    const auto ids = tokenizer.encode(text);
    EXPECT_EQ(tokenizer.decode(ids), text) << "text: " << text;
  }
}

TEST(Tokenizer, UnseenCharactersUseByteFallback) {
  const Tokenizer& tokenizer = test_tokenizer();
  const auto ids = tokenizer.encode("🙂");  // U+1F642: four UTF-8 bytes
  std::vector<std::string> pieces;
  for (const auto id : ids) pieces.push_back(tokenizer.piece(id));
  const std::vector<std::string> bytes = {"<0xF0>", "<0x9F>", "<0x99>", "<0x82>"};
  ASSERT_GE(pieces.size(), bytes.size());
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), pieces.end() - 4));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tokenizer.unk_id()), 0);
}

TEST(Tokenizer, RejectsIdsOutsideTheVocabulary) {
  const Tokenizer& tokenizer = test_tokenizer();
  const std::vector<std::int32_t> bad = {5, static_cast<std::int32_t>(tokenizer.vocab_size())};
  EXPECT_EQ(capture_error([&] { tokenizer.decode(bad); }).kind(), ErrorKind::invalid_argument);
  EXPECT_EQ(capture_error([&] { tokenizer.piece(-1); }).kind(), ErrorKind::invalid_argument);
}

TEST(Tokenizer, MissingModelFileIsIoErrorNamingIt) {
  test::TempDir dir;
  const auto path = dir / "absent.model";
  const Error error = capture_error([&] { Tokenizer tokenizer(path); });
  EXPECT_EQ(error.kind(), ErrorKind::io);
  EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos) << error.what();
}

TEST(Tokenizer, CorruptModelFilesAreFormatErrorsNamingThem) {
  test::TempDir dir;
  const std::string real = read_bytes(test::test_tokenizer_path());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty.model", ""},
      {"text.model", "this is not a SentencePiece model at all\n"},
      {"truncated.model", real.substr(0, real.size() / 3)},
      {"garbage.model", std::string(4096, '\xFF')},
  };
  for (const auto& [name, contents] : cases) {
    const auto path = dir / name;
    std::ofstream(path, std::ios::binary) << contents;
    const Error error = capture_error([&] { Tokenizer tokenizer(path); });
    EXPECT_EQ(error.kind(), ErrorKind::file_format) << name << ": " << error.what();
    EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos) << error.what();
  }
}

TEST(Tokenizer, DirectoryInsteadOfFileIsIoError) {
  test::TempDir dir;
  EXPECT_EQ(capture_error([&] { Tokenizer tokenizer(dir.path()); }).kind(), ErrorKind::io);
}

TEST(Tokenizer, IsMovable) {
  Tokenizer first(test::test_tokenizer_path());
  const auto ids = first.encode("the storm");
  Tokenizer second = std::move(first);
  EXPECT_EQ(second.encode("the storm"), ids);
}

// ---------------------------------------------------------------------------------------------
// TextStreamer

// Streams `ids` and checks every chunk is whole UTF-8; returns the concatenated text.
std::string stream_all(const Tokenizer& tokenizer, const std::vector<std::int32_t>& ids) {
  TextStreamer streamer(tokenizer);
  std::string text;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::string chunk = streamer.push(ids[i]);
    EXPECT_TRUE(test::is_valid_utf8(chunk)) << "chunk after token " << i << " is broken UTF-8";
    text += chunk;
  }
  const std::string rest = streamer.finish();
  EXPECT_TRUE(test::is_valid_utf8(rest));
  return text + rest;
}

TEST(TextStreamer, StreamsEncodedTextExactly) {
  const Tokenizer& tokenizer = test_tokenizer();
  const std::string text =
      "The keeper 灯台守 wrote 🙂🚢 and Möwen flew.\n  Second line with 龘 and "
      "👩‍👩‍👧.";
  EXPECT_EQ(stream_all(tokenizer, tokenizer.encode(text)), text);
}

TEST(TextStreamer, EmitsMultiByteCharactersOnlyWhenComplete) {
  const Tokenizer& tokenizer = test_tokenizer();
  const auto ids = tokenizer.encode("🙂");
  TextStreamer streamer(tokenizer);
  std::string text;
  for (std::size_t i = 0; i + 1 < ids.size(); ++i) text += streamer.push(ids[i]);
  EXPECT_EQ(text.find("\xF0"), std::string::npos);  // no partial character leaked
  text += streamer.push(ids.back());
  EXPECT_EQ(text + streamer.finish(), tokenizer.decode(ids));
}

// Random ids drawn to stress the hard cases: byte pieces (including stray continuation bytes and
// cut-off sequences), control tokens, <unk> and pieces with and without the word marker.
std::vector<std::int32_t> random_ids(std::mt19937_64& rng, std::size_t count,
                                     std::int64_t vocab_size) {
  std::uniform_int_distribution<int> kind(0, 9);
  std::uniform_int_distribution<std::int32_t> any(0, static_cast<std::int32_t>(vocab_size - 1));
  std::uniform_int_distribution<std::int32_t> byte_piece(3, 3 + 255);
  std::uniform_int_distribution<std::int32_t> special(0, 2);
  const std::string emoji = "🙂";
  std::vector<std::int32_t> ids;
  while (ids.size() < count) {
    const int k = kind(rng);
    if (k < 4) {
      ids.push_back(any(rng));
    } else if (k < 7) {
      ids.push_back(byte_piece(rng));
    } else if (k < 8) {
      ids.push_back(special(rng));
    } else {
      // A whole or cut-off UTF-8 sequence as byte pieces.
      const std::size_t take = 1 + rng() % emoji.size();
      for (std::size_t i = 0; i < take; ++i) {
        ids.push_back(3 + static_cast<unsigned char>(emoji[i]));
      }
    }
  }
  ids.resize(count);
  return ids;
}

TEST(TextStreamer, MatchesFullDecodeForRandomIds) {
  const Tokenizer& tokenizer = test_tokenizer();
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t length = 1 + rng() % 150;
    const auto ids = random_ids(rng, length, tokenizer.vocab_size());
    const std::string expected = tokenizer.decode(ids);
    ASSERT_EQ(stream_all(tokenizer, ids), expected) << "trial " << trial;
  }
}

TEST(TextStreamer, LongStreamMatchesAndStaysLinear) {
  const Tokenizer& tokenizer = test_tokenizer();
  std::mt19937_64 rng(test::test_seed() + 1);
  const auto ids = random_ids(rng, 6000, tokenizer.vocab_size());
  const auto start = std::chrono::steady_clock::now();
  const std::string streamed = stream_all(tokenizer, ids);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(streamed, tokenizer.decode(ids));
  // Decoding the whole prefix at every token would take quadratic time; a window keeps this
  // far below the bound even on a slow, shared machine.
  EXPECT_LT(seconds, 5.0);
}

TEST(TextStreamer, RejectsAnInvalidIdWithoutLosingItsState) {
  const Tokenizer& tokenizer = test_tokenizer();
  const auto ids = tokenizer.encode("the keeper watched");
  TextStreamer streamer(tokenizer);
  std::string text = streamer.push(ids[0]);
  EXPECT_THROW(streamer.push(static_cast<std::int32_t>(tokenizer.vocab_size())), Error);
  for (std::size_t i = 1; i < ids.size(); ++i) text += streamer.push(ids[i]);
  EXPECT_EQ(text + streamer.finish(), "the keeper watched");
}

TEST(TextStreamer, FinishFlushesACutOffCharacter) {
  const Tokenizer& tokenizer = test_tokenizer();
  const std::string emoji = "🙂";
  const std::vector<std::int32_t> ids = {3 + static_cast<unsigned char>(emoji[0]),
                                         3 + static_cast<unsigned char>(emoji[1])};
  TextStreamer streamer(tokenizer);
  std::string text = streamer.push(ids[0]);
  text += streamer.push(ids[1]);
  EXPECT_TRUE(text.empty());
  text += streamer.finish();
  EXPECT_EQ(text, tokenizer.decode(ids));  // U+FFFD for the cut-off bytes, as SentencePiece does
  EXPECT_TRUE(test::is_valid_utf8(text));
}

// ---------------------------------------------------------------------------------------------
// train_tokenizer

TEST(TrainTokenizer, IsDeterministicAndLeavesNoTemporaryFiles) {
  test::TempDir dir;
  const auto corpus = dir / "corpus.txt";
  std::ofstream(corpus) << test::test_corpus_paragraphs() << test::test_corpus_generated();
  TokenizerTrainingOptions options;
  options.vocab_size = 600;
  train_tokenizer({corpus}, dir / "a.model", options);
  train_tokenizer({corpus}, dir / "b.model", options);
  EXPECT_EQ(read_bytes(dir / "a.model"), read_bytes(dir / "b.model"));
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a.model", "b.model", "corpus.txt"}));
  EXPECT_EQ(Tokenizer(dir / "a.model").vocab_size(), 600);
}

TEST(TrainTokenizer, ReadsSeveralFiles) {
  test::TempDir dir;
  std::ofstream(dir / "one.txt") << test::test_corpus_paragraphs();
  std::ofstream(dir / "two, with comma.txt") << test::test_corpus_generated();
  TokenizerTrainingOptions options;
  options.vocab_size = 500;
  train_tokenizer({dir / "one.txt", dir / "two, with comma.txt"}, dir / "t.model", options);
  const Tokenizer tokenizer(dir / "t.model");
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("Möwen and 灯台")), "Möwen and 灯台");
}

TEST(TrainTokenizer, RejectsBadInputsClearly) {
  test::TempDir dir;
  const auto corpus = dir / "corpus.txt";
  std::ofstream(corpus) << test::test_corpus_paragraphs();
  TokenizerTrainingOptions options;

  options.vocab_size = 200;  // below 3 special + 256 byte pieces
  Error error = capture_error([&] { train_tokenizer({corpus}, dir / "x.model", options); });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(error.what()).find("200"), std::string::npos) << error.what();

  options.vocab_size = 50000;  // far more pieces than a few paragraphs can give
  error = capture_error([&] { train_tokenizer({corpus}, dir / "x.model", options); });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument) << error.what();
  EXPECT_FALSE(std::filesystem::exists(dir / "x.model"));

  options.vocab_size = 400;
  error = capture_error([&] { train_tokenizer({dir / "missing.txt"}, dir / "x.model", options); });
  EXPECT_EQ(error.kind(), ErrorKind::io);
  EXPECT_NE(std::string(error.what()).find("missing.txt"), std::string::npos) << error.what();

  error = capture_error([&] { train_tokenizer({}, dir / "x.model", options); });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);

  options.model_type = "word";
  error = capture_error([&] { train_tokenizer({corpus}, dir / "x.model", options); });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.model"));
}

}  // namespace
}  // namespace lwm
