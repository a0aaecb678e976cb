// A small SentencePiece model trained once per test run from text written here, shared by the
// tokenizer, chat template and generation tests (they must not depend on resources/samples/).
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "lwm/tokenizer.h"
#include "test_support.h"

namespace lwm::test {

inline constexpr std::int64_t kTestVocabSize = 1000;

// A few paragraphs in several scripts. Emoji are left out on purpose: they must go through byte
// fallback. Newlines never reach the trainer (it reads lines), so "\n" is the byte piece 13 as in
// LLaMA's tokenizer (spec §1.7).
inline const char* test_corpus_paragraphs() {
  return R"(The lighthouse keeper climbed the spiral stairs every evening before the sun went down.
He trimmed the wick, polished the great lens and wrote the weather into his logbook.
Ships passed far out at sea, and their lights answered his own across the dark water.
In winter the storms came from the north, and the waves broke white against the rocks.
She asked him once whether he was lonely; he said the sea talked to him all night long.
Le gardien du phare montait l'escalier chaque soir; il nettoyait la lentille et écrivait.
Über dem Meer zogen die Möwen, und die Schiffe fuhren weiter nach Süden, ohne anzuhalten.
El farero subía la escalera cada noche y miraba el mar oscuro hasta el amanecer.
灯台守は毎晩階段を上り、レンズを磨いて、海の天気を日誌に書いた。
灯塔看守每天晚上爬上楼梯，擦亮透镜，把天气写进日志。
Numbers matter too: 1907, 2024, 3.14159 and 42 appear in the log, with tabs	and  spaces.
)";
}

// Sentences generated from word lists, so BPE has enough material for its merges.
inline std::string test_corpus_generated() {
  const std::vector<std::string> subjects = {"the keeper",  "a sailor",  "the old ship",
                                             "my sister",   "the storm", "every gull",
                                             "our captain", "the lamp"};
  const std::vector<std::string> verbs = {"watched",  "answered", "remembered", "carried",
                                          "followed", "painted",  "counted",    "described"};
  const std::vector<std::string> objects = {
      "the harbour",       "a distant light", "the long night",  "seven letters",
      "the northern wind", "a quiet island",  "the tide tables", "ninety candles"};
  std::string text;
  std::uint64_t state = 12345;
  for (int i = 0; i < 3000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const auto pick = [&](const std::vector<std::string>& words, int shift) {
      return words[(state >> shift) % words.size()];
    };
    std::string sentence = pick(subjects, 33) + " " + pick(verbs, 40) + " " + pick(objects, 47);
    sentence[0] = static_cast<char>(sentence[0] - 'a' + 'A');
    text += sentence + ((i % 5 == 4) ? ".\n" : ". ");
  }
  return text;
}

// Path of the shared model; trained on first use into a directory that lives for the process.
inline const std::filesystem::path& test_tokenizer_path() {
  static TempDir dir;
  static const std::filesystem::path model = [] {
    const auto corpus = dir / "corpus.txt";
    std::ofstream(corpus) << test_corpus_paragraphs() << test_corpus_generated();
    TokenizerTrainingOptions options;
    options.vocab_size = kTestVocabSize;
    const auto path = dir / "tokenizer.model";
    train_tokenizer({corpus}, path, options);
    return path;
  }();
  return model;
}

inline const Tokenizer& test_tokenizer() {
  static const Tokenizer tokenizer(test_tokenizer_path());
  return tokenizer;
}

// True when `text` is well-formed UTF-8 (no truncated, overlong or surrogate sequences).
inline bool is_valid_utf8(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    std::uint32_t code = 0;
    if (lead < 0x80) {
      length = 1;
      code = lead;
    } else if (lead >= 0xC2 && lead < 0xE0) {
      length = 2;
      code = lead & 0x1F;
    } else if (lead >= 0xE0 && lead < 0xF0) {
      length = 3;
      code = lead & 0x0F;
    } else if (lead >= 0xF0 && lead < 0xF5) {
      length = 4;
      code = lead & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto byte = static_cast<unsigned char>(text[i + k]);
      if ((byte & 0xC0) != 0x80) return false;
      code = (code << 6) | (byte & 0x3F);
    }
    const bool overlong = (length == 3 && code < 0x800) || (length == 4 && code < 0x10000);
    if (overlong || code > 0x10FFFF || (code >= 0xD800 && code < 0xE000)) return false;
    i += length;
  }
  return true;
}

}  // namespace lwm::test
