#include "lwm/train/needle_data.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <utility>

#include "atomic_file.h"
#include "lwm/chat_template.h"
#include "lwm/error.h"
#include "lwm/needle.h"

namespace lwm::train {
namespace {

// Example i gets its own generator, so any example can be made alone and in any order.
std::mt19937_64 example_rng(std::uint64_t seed, std::int64_t index) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (static_cast<std::uint64_t>(index) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return std::mt19937_64(z ^ (z >> 31));
}

// Plain modulo and 53-bit fractions instead of std distributions, whose results differ between
// standard libraries: the data must be the same wherever it is generated.
std::int64_t uniform_int(std::mt19937_64& rng, std::int64_t low, std::int64_t high) {
  return low + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(high - low + 1));
}

double uniform_unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1p-53;
}

// What the model is taught to answer: the needle's sentence, so the digits follow the same words
// as in the document (needle.h defines what is asked, not the answer).
std::string answer_text(std::string_view city, std::string_view number) {
  return "The special magic " + std::string(city) + " number is: " + std::string(number) + ".";
}

std::vector<std::int32_t> render(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                                 const std::string& context, const std::string& question) {
  return render_prompt(chat_template, tokenizer, {{"context", context}, {"question", question}});
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::io, "cannot read haystack '" + path.string() + "'");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

NeedleExampleGenerator::NeedleExampleGenerator(std::vector<std::string> haystacks,
                                               std::shared_ptr<const Tokenizer> tokenizer,
                                               NeedleDataOptions options)
    : tokenizer_(std::move(tokenizer)), options_(std::move(options)) {
  if (!tokenizer_) throw Error(ErrorKind::invalid_argument, "needle data needs a tokenizer");
  if (haystacks.empty()) {
    throw Error(ErrorKind::invalid_argument, "needle data needs at least one haystack text");
  }
  if (options_.min_tokens < 1 || options_.max_tokens < options_.min_tokens) {
    throw Error(ErrorKind::invalid_argument,
                "needle example lengths " + std::to_string(options_.min_tokens) + ".." +
                    std::to_string(options_.max_tokens) +
                    " are not a range; give 1 <= min-tokens <= max-tokens");
  }
  ChatTemplates::builtin().get(options_.template_name);  // names the known ones if it is not
  for (std::size_t i = 0; i < haystacks.size(); ++i) {
    std::string& text = haystacks[i];
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
      throw Error(ErrorKind::invalid_argument,
                  "haystack " + std::to_string(i) + " holds no text to hide a needle in");
    }
    Haystack haystack;
    haystack.text = text;
    haystack.encoded = tokenizer_->encode_with_offsets(haystack.text);
    while (static_cast<std::int64_t>(haystack.encoded.ids.size()) < options_.max_tokens) {
      haystack.text += "\n\n" + text;
      haystack.encoded = tokenizer_->encode_with_offsets(haystack.text);
    }
    haystacks_.push_back(std::move(haystack));
  }
}

NeedleExample NeedleExampleGenerator::make(std::int64_t index) const {
  std::mt19937_64 rng = example_rng(options_.seed, index);
  const Haystack& haystack =
      haystacks_[static_cast<std::size_t>(uniform_int(rng, 0, std::ssize(haystacks_) - 1))];
  const std::int64_t target = uniform_int(rng, options_.min_tokens, options_.max_tokens);
  NeedleExample ex;
  ex.city = needle::random_city(rng);
  ex.number = needle::random_number(rng);
  ex.depth = uniform_unit(rng);
  const double start_fraction = uniform_unit(rng);
  ex.question = needle::question(ex.city);
  ex.answer = answer_text(ex.city, ex.number);
  ex.answer_ids = tokenizer_->encode(ex.answer);
  const std::string sentence = needle::sentence(ex.city, ex.number);

  const ChatTemplate& chat_template = ChatTemplates::builtin().get(options_.template_name);
  const auto overhead = static_cast<std::int64_t>(
      render(chat_template, *tokenizer_, sentence, ex.question).size() + ex.answer_ids.size() + 1);
  if (overhead >= options_.max_tokens) {
    throw Error(ErrorKind::invalid_argument, "a needle example without haystack is already " +
                                                 std::to_string(overhead) +
                                                 " tokens; give max-tokens above that");
  }
  const auto& enc = haystack.encoded;
  const auto n = static_cast<std::int64_t>(enc.ids.size());
  std::int64_t length = std::max<std::int64_t>(target - overhead, 1);
  // Re-tokenizing the joined text moves the count by a few tokens; correct the window until the
  // whole example lands in range.
  for (int attempt = 0; attempt < 32; ++attempt) {
    length = std::clamp<std::int64_t>(length, 1, n);
    const auto first =
        static_cast<std::int64_t>(start_fraction * static_cast<double>(n - length + 1));
    const std::size_t begin = enc.begins[static_cast<std::size_t>(first)];
    const std::size_t end = enc.ends[static_cast<std::size_t>(first + length - 1)];
    const auto at = first + static_cast<std::int64_t>(ex.depth * static_cast<double>(length));
    std::size_t insert = at >= first + length ? end : enc.begins[static_cast<std::size_t>(at)];
    // As LWM's evaluation: move left to just after a full stop (or to the window's start).
    if (insert < end) {
      const std::size_t stop = haystack.text.rfind('.', insert == 0 ? 0 : insert - 1);
      insert = (stop == std::string::npos || stop < begin || insert == begin) ? begin : stop + 1;
    }
    ex.context = haystack.text.substr(begin, insert - begin) + sentence +
                 haystack.text.substr(insert, end - insert);
    ex.needle_offset = insert - begin;
    ex.prompt = render(chat_template, *tokenizer_, ex.context, ex.question);
    const std::int64_t total = ex.total_tokens();
    if (total >= options_.min_tokens && total <= options_.max_tokens) return ex;
    if (total > options_.max_tokens && length == 1) break;
    if (total < options_.min_tokens && length == n) break;
    length += target - total;
  }
  throw Error(ErrorKind::invalid_argument, "cannot fit needle example " + std::to_string(index) +
                                               " into " + std::to_string(options_.min_tokens) +
                                               ".." + std::to_string(options_.max_tokens) +
                                               " tokens; widen the range");
}

std::string needle_tokenizer_text(int repeats) {
  std::string text;
  std::int64_t number = 1234567;
  for (int r = 0; r < repeats; ++r) {
    for (const std::string_view city : needle::cities()) {
      number = 1000000 + (number * 7919 + 104729) % 9000000;  // walks through all digits
      const std::string n = std::to_string(number);
      text +=
          needle::sentence(city, n) + needle::question(city) + "\n" + answer_text(city, n) + "\n";
    }
  }
  return text;
}

void write_needle_tokenizer_text(const std::filesystem::path& out, int repeats) {
  write_file_atomically(out, needle_tokenizer_text(repeats));
}

nlohmann::json to_json(const NeedleExample& example, bool with_text) {
  nlohmann::json j = {{"prompt", example.prompt}, {"answer", example.answer_ids},
                      {"city", example.city},     {"number", example.number},
                      {"depth", example.depth},   {"tokens", example.total_tokens()}};
  if (with_text) {
    j["context"] = example.context;
    j["question"] = example.question;
  }
  return j;
}

void write_needle_data(const std::vector<std::filesystem::path>& haystack_files,
                       const std::filesystem::path& tokenizer_model,
                       const std::filesystem::path& out, const NeedleDataOptions& options,
                       const ProgressCallback& progress) {
  std::vector<std::string> texts;
  for (const auto& file : haystack_files) texts.push_back(read_text(file));
  const NeedleExampleGenerator generator(std::move(texts),
                                         std::make_shared<Tokenizer>(tokenizer_model), options);
  const ProgressReporter reporter(progress, options.examples, "writing needle data", "examples");
  AtomicFileWriter writer(out);
  for (std::int64_t i = 0; i < options.examples; ++i) {
    writer.write(to_json(generator.make(i), options.with_text).dump() + "\n");
    reporter.report(i + 1);
  }
  writer.commit();
}

}  // namespace lwm::train
