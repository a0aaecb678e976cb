// End-to-end tests of the `lwm` command line: each test runs the real binary on a small model that
// `lwm make-model` writes once per test process, and checks its output and exit code.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "lwm/format.h"
#include "lwm/model_config.h"
#include "test_support.h"

namespace {

using lwm::test::CommandResult;
using lwm::test::run_command;
using lwm::test::TempDir;

std::string quoted(const std::filesystem::path& path) {
  // Appended piece by piece: GCC 12 at -O3 reports a false -Wrestrict for "'" + std::string&&.
  std::string text = "'";
  text += path.string();
  text += '\'';
  return text;
}

std::string lwm_cli() {
  return quoted(LWM_CLI);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

class CliTest : public ::testing::Test {
 protected:
  // One model per test process (ctest runs every test case in its own process).
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const CommandResult made =
        run_command(lwm_cli() + " make-model --out " + quoted(model_dir()) + " --config " +
                    quoted(lwm::test::source_dir() / "resources/demo/config.json") +
                    " --seed 5 --norm-noise 0.05 --train-tokenizer " +
                    quoted(lwm::test::sample_text_file()) + " --vocab 512");
    ASSERT_EQ(made.exit_code, 0) << made.output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::filesystem::path model_dir() { return dir_->path() / "model"; }
  static std::filesystem::path scratch(const std::string& name) { return dir_->path() / name; }

  // Runs `lwm <arguments>`; stdout goes to a file so it can be checked apart from stderr.
  static CommandResult run_lwm(const std::string& arguments, std::string* stdout_text = nullptr) {
    const auto out_file = scratch("stdout.txt");
    // The group keeps stderr on the pipe that run_command reads (it appends 2>&1).
    CommandResult result =
        run_command("{ " + lwm_cli() + " " + arguments + " >" + quoted(out_file) + "; }");
    if (stdout_text != nullptr) *stdout_text = read_file(out_file);
    return result;
  }

  static std::string model_arg() { return "--model " + quoted(model_dir()); }

  // A 4-second 160x120 MP4 test clip (needs the ffmpeg program).
  static CommandResult write_test_clip(const std::filesystem::path& clip) {
    return lwm::test::write_lavfi_video(clip, "testsrc2=size=160x120:rate=10", 4,
                                        "-pix_fmt yuv420p");
  }
  // A random tiny vision-language model with a tiny VQGAN in `dir`.
  static CommandResult make_vision_model(const std::filesystem::path& dir, int seed) {
    return run_command(lwm_cli() + " make-model --out " + quoted(dir) +
                       " --preset tiny-vision --vqgan tiny --seed " + std::to_string(seed) +
                       " --train-tokenizer " + quoted(lwm::test::sample_text_file()) +
                       " --vocab 512");
  }

 private:
  static TempDir* dir_;
};

TempDir* CliTest::dir_ = nullptr;

TEST_F(CliTest, MakeModelWritesACompleteDirectory) {
  EXPECT_TRUE(std::filesystem::is_regular_file(model_dir() / "config.json"));
  EXPECT_TRUE(std::filesystem::is_regular_file(model_dir() / "tokenizer.model"));
  const auto config = lwm::ModelConfig::load(model_dir());
  EXPECT_EQ(config.hidden_size, 256);
  EXPECT_GE(config.vocab_size, 512);
}

TEST_F(CliTest, AskAboutABookStreamsAnAnswerAndStatistics) {
  std::string answer;
  const CommandResult result =
      run_lwm("ask " + model_arg() + " --book " + quoted(lwm::test::sample_text_file()) +
                  " --question 'Who kept the light?' --max-tokens 12",
              &answer);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_FALSE(answer.empty());
  // stderr is not a terminal here, so the progress shows as plain lines.
  EXPECT_NE(result.output.find("lwm: prefill 100%"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("prompt tokens, prefill"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("tok/s"), std::string::npos) << result.output;
}

TEST_F(CliTest, AskWithPromptAndSeedIsReproducible) {
  const std::string arguments = "ask " + model_arg() +
                                " --prompt 'A keeper lived on a rock.' --question 'Where?' "
                                "--max-tokens 10 --temperature 0.9 --top-k 40 --top-p 0.95 "
                                "--seed 11 --prefill-chunk 3";
  std::string first, second;
  const CommandResult a = run_lwm(arguments, &first);
  const CommandResult b = run_lwm(arguments, &second);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_EQ(first, second);
}

TEST_F(CliTest, InfoPrintsTheParameterCountAndMemoryTable) {
  const auto config = lwm::ModelConfig::load(model_dir());
  std::string table;
  const CommandResult text = run_lwm("info " + model_arg(), &table);
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(table.find("parameters"), std::string::npos) << table;
  EXPECT_NE(table.find("1M"), std::string::npos) << table;

  std::string json_text;
  const CommandResult json_run = run_lwm("info --json " + model_arg(), &json_text);
  ASSERT_EQ(json_run.exit_code, 0) << json_run.output;
  const auto info = nlohmann::json::parse(json_text);
  EXPECT_EQ(info["parameters"].get<std::int64_t>(), config.parameter_count());
  EXPECT_EQ(info["kv_bytes_per_token"].get<std::int64_t>(),
            config.kv_bytes_per_token(lwm::DType::f32));
  ASSERT_EQ(info["memory"].size(), 5u);
  EXPECT_EQ(info["memory"][4]["context"].get<std::int64_t>(), 1048576);
  EXPECT_EQ(
      info["memory"][0]["total_bytes"].get<std::int64_t>(),
      info["weight_bytes"].get<std::int64_t>() + 2048 * config.kv_bytes_per_token(lwm::DType::f32));
}

TEST_F(CliTest, ScoreLogprobsMatchTheFullLogits) {
  std::string json_text;
  const CommandResult result = run_lwm(
      "score " + model_arg() + " --text 'The keeper climbed the stairs.' --top 5 --full-logits",
      &json_text);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto score = nlohmann::json::parse(json_text);
  const auto tokens = score["tokens"].get<std::vector<std::int32_t>>();
  ASSERT_GE(tokens.size(), 3u);
  EXPECT_EQ(tokens[0], 1);  // BOS prepended
  const auto& logprobs = score["token_logprobs"];
  const auto& logits = score["logits"];
  ASSERT_EQ(logprobs.size(), tokens.size());
  ASSERT_EQ(logits.size(), tokens.size());
  EXPECT_TRUE(logprobs[0].is_null());
  for (std::size_t i = 1; i < tokens.size(); ++i) {
    const auto row = logits[i - 1].get<std::vector<double>>();
    double max = row[0];
    for (double x : row) max = std::max(max, x);
    double sum = 0.0;
    for (double x : row) sum += std::exp(x - max);
    const double expected = row[static_cast<std::size_t>(tokens[i])] - max - std::log(sum);
    const double actual = logprobs[i].get<double>();
    EXPECT_LE(actual, 0.0);
    EXPECT_NEAR(actual, expected, 1e-4) << "position " << i;
  }
  const auto& top = score["top"];
  ASSERT_EQ(top.size(), 5u);
  const auto last = logits[tokens.size() - 1].get<std::vector<double>>();
  EXPECT_NEAR(top[0]["logit"].get<double>(), *std::max_element(last.begin(), last.end()), 1e-6);
  for (std::size_t k = 0; k < top.size(); ++k) {
    EXPECT_LE(top[k]["logprob"].get<double>(), 0.0);
    EXPECT_TRUE(top[k]["piece"].is_string());
    if (k > 0) {
      EXPECT_GE(top[k - 1]["logit"].get<double>(), top[k]["logit"].get<double>());
    }
  }

  // The same ids given directly score the same.
  std::string ids;
  for (std::size_t i = 0; i < tokens.size(); ++i) ids += (i ? "," : "") + std::to_string(tokens[i]);
  std::string again_text;
  const CommandResult again = run_lwm("score " + model_arg() + " --tokens " + ids, &again_text);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  const auto again_score = nlohmann::json::parse(again_text);
  for (std::size_t i = 1; i < tokens.size(); ++i) {
    EXPECT_NEAR(again_score["token_logprobs"][i].get<double>(), logprobs[i].get<double>(), 1e-6);
  }
  EXPECT_FALSE(again_score.contains("logits"));
}

// A bad input gives its documented exit code and one "lwm: error: " line naming the problem.
void expect_failure(const CommandResult& result, int exit_code, const std::string& needle) {
  EXPECT_EQ(result.exit_code, exit_code) << result.output;
  EXPECT_NE(result.output.find("lwm: error: "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find(needle), std::string::npos) << result.output;
}

TEST_F(CliTest, MissingModelDirectoryIsBadInput) {
  expect_failure(run_lwm("info --model " + quoted(scratch("no-such-model"))), 2, "does not exist");
  expect_failure(
      run_lwm("ask --model " + quoted(scratch("no-such-model")) + " --prompt hi --question why"), 2,
      "does not exist");
}

TEST_F(CliTest, CorruptConfigIsBadInput) {
  const auto broken = scratch("broken-model");
  std::filesystem::create_directories(broken);
  for (const auto& entry : std::filesystem::directory_iterator(model_dir())) {
    std::filesystem::copy(entry.path(), broken / entry.path().filename());
  }
  write_file(broken / "config.json", "{\"hidden_size\": ");
  const CommandResult result = run_lwm("info --model " + quoted(broken));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("lwm: error: cannot load the model"), std::string::npos)
      << result.output;
}

TEST_F(CliTest, BookThatIsNotTextIsBadInput) {
  // Binary bytes are not text in any encoding.
  const auto binary = scratch("binary.txt");
  write_file(binary, std::string("The keeper\0\x01\x81\xFE", 14));
  expect_failure(run_lwm("ask " + model_arg() + " --book " + quoted(binary) + " --question Why?"),
                 2, "is not a text file");
  // Neither UTF-8 nor Windows-1252: 0x81 is undefined there.
  const auto undefined = scratch("undefined.txt");
  write_file(undefined, "The keeper's caf\xE9 \x81 was closed.\n");
  expect_failure(
      run_lwm("ask " + model_arg() + " --book " + quoted(undefined) + " --question Why?"), 2,
      "is not UTF-8");
}

TEST_F(CliTest, Latin1BookIsAnsweredWithAWarning) {
  const auto book = scratch("latin1.txt");
  write_file(book, "The keeper's caf\xE9 was closed.\n");
  const CommandResult result =
      run_lwm("ask " + model_arg() + " --book " + quoted(book) + " --question Why? --max-tokens 2");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("lwm: warning: the book '" + book.string() + "' is not UTF-8"),
            std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("read as Windows-1252"), std::string::npos) << result.output;
}

TEST_F(CliTest, ShowSourcesListsTheTokensOfEachChapter) {
  const auto book = scratch("guide.md");
  write_file(book,
             "# The Lamp\n\nThe keeper trimmed the wick.\n\n# The Lens\n\nHe polished the "
             "great lens.\n");
  const CommandResult result = run_lwm("ask " + model_arg() + " --book " + quoted(book) +
                                       " --question Why? --max-tokens 2 --show-sources");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("(Markdown): 2 chapters, 0 pages"), std::string::npos)
      << result.output;
  const std::size_t lamp = result.output.find("chapter 1 \"The Lamp\"");
  const std::size_t lens = result.output.find("chapter 2 \"The Lens\"");
  ASSERT_NE(lamp, std::string::npos) << result.output;
  ASSERT_NE(lens, std::string::npos) << result.output;
  // "lwm: source: tokens A-B: chapter 1 ..." then "tokens C-D: chapter 2 ...", with C = B + 1.
  const auto range_before = [&](std::size_t at) {
    const std::size_t start = result.output.rfind("tokens ", at) + 7;
    const std::size_t dash = result.output.find('-', start);
    return std::pair<long, long>(std::stol(result.output.substr(start, dash - start)),
                                 std::stol(result.output.substr(dash + 1)));
  };
  const auto [lamp_first, lamp_last] = range_before(lamp);
  const auto [lens_first, lens_last] = range_before(lens);
  EXPECT_GT(lamp_first, 0);  // BOS and the template's opening come first
  EXPECT_LT(lamp_first, lamp_last);
  EXPECT_EQ(lens_first, lamp_last + 1);
  EXPECT_LT(lens_first, lens_last);
}

TEST_F(CliTest, AskAboutAVideoMapsFramesToTimes) {
  if (!lwm::test::have_ffmpeg()) GTEST_SKIP() << "no ffmpeg CLI";
  const auto clip = scratch("clip.mp4");
  ASSERT_EQ(write_test_clip(clip).exit_code, 0);
  const auto vl = scratch("vision-model");
  const CommandResult made =
      make_vision_model(vl, 3);
  ASSERT_EQ(made.exit_code, 0) << made.output;

  std::string answer;
  const CommandResult result =
      run_lwm("ask --model " + quoted(vl) + " --video " + quoted(clip) +
                  " --frames 4 --show-sources --question \"What is shown?\" --max-tokens 5",
              &answer);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_FALSE(answer.empty());
  EXPECT_NE(result.output.find("4 frames"), std::string::npos) << result.output;
  // 40 frames sampled 4 times by LWM's rule (spec §3.1): 0, 13, 26, 39 at 10 frames/s.
  for (const char* frame : {"frame 0 at 0.000 s (video frame 0)", "frame 1 at 1.300 s (video frame 13)",
                            "frame 3 at 3.900 s (video frame 39)"}) {
    EXPECT_NE(result.output.find(frame), std::string::npos) << frame << "\n" << result.output;
  }
  // A text-only model cannot read a video; a video and a book cannot be asked about together.
  expect_failure(run_lwm("ask " + model_arg() + " --video " + quoted(clip) + " --question Why?"),
                 1, "text-only");
  expect_failure(run_lwm("ask --model " + quoted(vl) + " --video " + quoted(clip) + " --book " +
                         quoted(lwm::test::sample_text_file()) + " --question Why?"),
                 1, "--book");
  expect_failure(run_lwm("ask --model " + quoted(vl) + " --video " + quoted(scratch("none.mp4")) +
                         " --question Why?"),
                 2, "none.mp4");
}

TEST_F(CliTest, MissingBookIsBadInput) {
  expect_failure(
      run_lwm("ask " + model_arg() + " --book " + quoted(scratch("none.txt")) + " --question Why?"),
      2, "cannot open the book");
}

TEST_F(CliTest, UnknownTemplateIsAUsageError) {
  expect_failure(run_lwm("ask " + model_arg() + " --prompt hi --question why --template nonsense"),
                 1, "unknown template 'nonsense'");
  expect_failure(
      run_lwm("ask " + model_arg() + " --prompt hi --question why --template video-chat"), 1,
      "video");
}

TEST_F(CliTest, BadTokenListIsAUsageError) {
  expect_failure(run_lwm("score " + model_arg() + " --tokens 1,x,3"), 1, "--tokens");
  expect_failure(run_lwm("score " + model_arg() + " --tokens 1,2,"), 1, "--tokens");
  expect_failure(run_lwm("score " + model_arg() + " --tokens 1,99999999"), 1, "vocabulary");
}

TEST_F(CliTest, UsageErrorsExitWithOne) {
  expect_failure(run_lwm(""), 1, "--help");
  expect_failure(run_lwm("ask " + model_arg() + " --question why"), 1, "--book");
  expect_failure(run_lwm("ask " + model_arg() + " --book a.txt --prompt hi --question why"), 1,
                 "excludes");
  expect_failure(run_lwm("ask " + model_arg() + " --prompt hi"), 1, "--question");
  expect_failure(run_lwm("ask " + model_arg() + " --prompt hi --question why --top-p 2"), 1,
                 "--top-p");
  expect_failure(run_lwm("score " + model_arg()), 1, "--text");
  expect_failure(run_lwm("make-model --out " + quoted(model_dir()) + " --preset tiny"), 1,
                 "not an empty directory");
  expect_failure(run_lwm("frobnicate"), 1, "frobnicate");
}

TEST_F(CliTest, PromptLongerThanTheContextIsTooLarge) {
  expect_failure(run_lwm("ask " + model_arg() + " --book " + quoted(lwm::test::sample_text_file()) +
                         " --question Why? --context 16"),
                 3, "use a shorter book or a larger --context");
}

TEST_F(CliTest, HelpDocumentsExitCodesAndVersionPrints) {
  std::string help;
  const CommandResult result = run_lwm("--help", &help);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(help.find("Exit codes:"), std::string::npos) << help;
  EXPECT_NE(help.find("4  cancelled"), std::string::npos) << help;
  std::string ask_help;
  EXPECT_EQ(run_lwm("ask --help", &ask_help).exit_code, 0);
  EXPECT_NE(ask_help.find("--prefill-chunk"), std::string::npos) << ask_help;
  EXPECT_NE(ask_help.find("Exit codes:"), std::string::npos) << ask_help;
  std::string version;
  EXPECT_EQ(run_lwm("--version", &version).exit_code, 0);
  EXPECT_EQ(version.rfind("lwm ", 0), 0u) << version;
}

// Ctrl-C during a long prefill stops between chunks and exits with code 4.
TEST_F(CliTest, InterruptCancelsCleanly) {
  const auto book = scratch("long-book.txt");
  const std::string story = read_file(lwm::test::sample_text_file());
  // Twice the story fills most of the demo shape's 4,096 positions; one token per chunk makes
  // the prefill take seconds, far longer than the signal takes to arrive.
  write_file(book, story + "\n" + story);

  int err_pipe[2];
  ASSERT_EQ(::pipe(err_pipe), 0);
  const std::string model = model_dir().string();
  const std::string book_path = book.string();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(err_pipe[1], STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, STDOUT_FILENO);
    ::close(err_pipe[0]);
    ::execl(LWM_CLI, LWM_CLI, "ask", "--model", model.c_str(), "--book", book_path.c_str(),
            "--question", "Who?", "--prefill-chunk", "1", "--max-tokens", "100", nullptr);
    ::_exit(127);
  }
  ::close(err_pipe[1]);
  // The first line on stderr comes after the handler is installed and before the prefill.
  std::string seen;
  char c;
  while (seen.find('\n') == std::string::npos && ::read(err_pipe[0], &c, 1) == 1) seen.push_back(c);
  ASSERT_NE(seen.find("prompt tokens"), std::string::npos) << seen;
  ::kill(pid, SIGINT);
  std::string rest;
  while (::read(err_pipe[0], &c, 1) == 1) rest.push_back(c);
  ::close(err_pipe[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << seen << rest;
  EXPECT_EQ(WEXITSTATUS(status), 4) << seen << rest;
  EXPECT_NE(rest.find("lwm: error: "), std::string::npos) << rest;
}

}  // namespace

namespace {

// lwm convert on a tux file written by msgpack-python (tests/python/tux_fixture.py): the converted
// model scores exactly like the model it came from; bad sources are bad input.
TEST_F(CliTest, ConvertTuxCheckpointScoresLikeTheOriginal) {
  const auto tux = scratch("params");
  const auto script = lwm::test::source_dir() / "tests/python/tux_fixture.py";
  const CommandResult fixture = run_command(quoted(lwm::test::test_python()) + " " + quoted(script) + " tux " +
                                            quoted(model_dir()) + " " + quoted(tux) + " --chunk 100000");
  ASSERT_EQ(fixture.exit_code, 0) << fixture.output;
  std::string printed;
  const auto converted = scratch("converted");
  const CommandResult result =
      run_lwm("convert --from " + quoted(tux) + " --out " + quoted(converted) + " --tokenizer " +
                  quoted(model_dir() / "tokenizer.model") + " --config " + quoted(model_dir() / "config.json") +
                  " --shard-size 1000000",
              &printed);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(printed.find("(tux params)"), std::string::npos) << printed;
  std::string original_scores, converted_scores;
  ASSERT_EQ(run_lwm("score " + model_arg() + " --tokens 1,7,42,99,5", &original_scores).exit_code, 0);
  ASSERT_EQ(run_lwm("score --model " + quoted(converted) + " --tokens 1,7,42,99,5", &converted_scores).exit_code, 0);
  EXPECT_EQ(converted_scores, original_scores);

  expect_failure(run_lwm("convert --from " + quoted(model_dir() / "tokenizer.model") + " --out " +
                         quoted(scratch("never"))),
                 2, "is not a tux checkpoint");
  expect_failure(run_lwm("convert --from " + quoted(tux) + " --out " + quoted(converted)), 1,
                 "not an empty directory");
  EXPECT_FALSE(std::filesystem::exists(scratch("never")));
}

TEST_F(CliTest, DevicesListTheCpuAndSayWhyThereIsNoGpu) {
  std::string out;
  const CommandResult table = run_lwm("devices", &out);
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_EQ(out.rfind("cpu ", 0), 0u) << out;
  EXPECT_NE(out.find("free of"), std::string::npos) << out;
  const CommandResult json = run_lwm("devices --json", &out);
  ASSERT_EQ(json.exit_code, 0) << json.output;
  const auto parsed = nlohmann::json::parse(out);
  ASSERT_FALSE(parsed["devices"].empty());
  EXPECT_EQ(parsed["devices"][0]["id"], "cpu");
  EXPECT_GT(parsed["devices"][0]["available_bytes"].get<std::int64_t>(), 0);
  bool has_gpu = false;
  for (const auto& device : parsed["devices"]) has_gpu = has_gpu || device["kind"] == "cuda";
  const std::string status = parsed["cuda_status"];
  if (!has_gpu) {
    EXPECT_TRUE(status.rfind("no CUDA device: ", 0) == 0 ||
                status.rfind("built without CUDA", 0) == 0)
        << status;
    // Never a silent fallback: asking for a GPU that is not there names what there is.
    expect_failure(run_lwm("plan " + model_arg() + " --book " +
                           quoted(lwm::test::sample_text_file()) + " --devices cuda:0"),
                   1, "cpu, cpu:N");
    expect_failure(run_lwm("ask " + model_arg() + " --prompt Hi --question Why? --devices cuda:1"),
                   1, "the devices here are cpu, cpu:N");
  }
  // Devices a session cannot use yet are refused by name, not replaced by the CPU.
  expect_failure(run_lwm("ask " + model_arg() + " --prompt Hi --question Why? --devices cpu:2"), 2,
                 "sessions cannot run on cpu:2");
}

TEST_F(CliTest, PlanShowsTokensMemoryAndTimeAndSaysWhatWouldFit) {
  std::string out;
  const std::string book = " --book " + quoted(lwm::test::sample_text_file());
  const CommandResult fits = run_lwm("plan " + model_arg() + book + " --json", &out);
  ASSERT_EQ(fits.exit_code, 0) << fits.output;
  const auto plan = nlohmann::json::parse(out);
  EXPECT_TRUE(plan["fits"].get<bool>());
  EXPECT_TRUE(plan["tokens_exact"].get<bool>());
  const std::int64_t source = plan["source_tokens"];
  EXPECT_GT(source, 100);
  EXPECT_EQ(plan["devices"][0]["device"], "cpu");
  EXPECT_GT(plan["seconds"]["prefill"].get<double>(), 0.0);
  // The plan's token count is what lwm ask then prefills before the question.
  const CommandResult asked =
      run_lwm("ask " + model_arg() + book + " --question 'Who?' --max-tokens 2");
  ASSERT_EQ(asked.exit_code, 0) << asked.output;
  const std::string digits = lwm::format_count(source);  // as lwm prints counts
  EXPECT_NE(asked.output.find("lwm: " + digits + " prompt tokens before the question"),
            std::string::npos)
      << digits << "\n" << asked.output;

  // A context smaller than the book: exit code 3, the reason, and what would fit.
  const CommandResult small = run_lwm("plan " + model_arg() + book + " --context 64 --devices cpu:2",
                                      &out);
  expect_failure(small, 3, "It does not fit");
  EXPECT_NE(small.output.find("a text of at most"), std::string::npos) << small.output;
  EXPECT_NE(out.find("verdict"), std::string::npos) << out;
  EXPECT_NE(out.find("cpu "), std::string::npos) << out;

  expect_failure(run_lwm("plan " + model_arg() + book + " --kv-cache fp4"), 1, "kv-cache");
  expect_failure(run_lwm("plan " + model_arg() + book + " --devices tpu:1"), 1, "tpu");
  expect_failure(run_lwm("plan " + model_arg()), 1, "--video FILE or --book FILE");
  expect_failure(run_lwm("plan " + model_arg() + " --book " + quoted(scratch("none.txt"))), 2,
                 "none.txt");
}

TEST_F(CliTest, PlanAndCachedAskOfAVideo) {
  if (!lwm::test::have_ffmpeg()) GTEST_SKIP() << "no ffmpeg CLI";
  const auto clip = scratch("cached-clip.mp4");
  ASSERT_EQ(write_test_clip(clip).exit_code, 0);
  const auto vl = scratch("cached-vision-model");
  ASSERT_EQ(make_vision_model(vl, 4).exit_code, 0);
  std::string out;
  const CommandResult planned =
      run_lwm("plan --model " + quoted(vl) + " --video " + quoted(clip) + " --frames 4 --json", &out);
  ASSERT_EQ(planned.exit_code, 0) << planned.output;
  const auto plan = nlohmann::json::parse(out);
  ASSERT_EQ(plan["frames"].size(), 4u);
  // 40 frames sampled 4 times by LWM's rule (spec §3.1): 0, 13, 26, 39.
  EXPECT_EQ(plan["frames"][1]["frame"], 13);
  EXPECT_EQ(plan["frames"][3]["frame"], 39);
  const std::int64_t source = plan["source_tokens"];

  // Too many frames for the model's 2,048 tokens: the largest count that fits is suggested.
  const CommandResult dense =
      run_lwm("plan --model " + quoted(vl) + " --video " + quoted(clip) + " --fps 10 --json", &out);
  EXPECT_EQ(dense.exit_code, 3) << dense.output;
  const auto too_many = nlohmann::json::parse(out);
  const std::int64_t most = too_many["max_frames"];
  ASSERT_GT(most, 4);
  EXPECT_EQ(run_lwm("plan --model " + quoted(vl) + " --video " + quoted(clip) + " --frames " +
                    std::to_string(most)).exit_code, 0);
  EXPECT_EQ(run_lwm("plan --model " + quoted(vl) + " --video " + quoted(clip) + " --frames " +
                    std::to_string(most + 1)).exit_code, 3);

  const auto cache = scratch("ingest-cache");
  const std::string ask = "ask --model " + quoted(vl) + " --video " + quoted(clip) +
                          " --frames 4 --question 'What is shown?' --max-tokens 4 --cache-dir " +
                          quoted(cache);
  std::string first_answer;
  const CommandResult first = run_lwm(ask, &first_answer);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("0 of 4 frames from the ingest cache"), std::string::npos)
      << first.output;
  EXPECT_NE(first.output.find(std::to_string(source) + " video tokens"), std::string::npos)
      << first.output;
  std::string second_answer;
  const CommandResult second = run_lwm(ask, &second_answer);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("4 of 4 frames from the ingest cache"), std::string::npos)
      << second.output;
  EXPECT_NE(second.output.find(std::to_string(source) + " of " + std::to_string(source) +
                               " source tokens restored"),
            std::string::npos)
      << second.output;
  EXPECT_EQ(second_answer, first_answer);
  // A corrupt snapshot is a warning and is written again; the answer does not change.
  for (const auto& entry : std::filesystem::directory_iterator(cache)) {
    if (entry.path().extension() == ".lwmkv") write_file(entry.path(), "garbage");
  }
  std::string third_answer;
  const CommandResult third = run_lwm(ask, &third_answer);
  ASSERT_EQ(third.exit_code, 0) << third.output;
  EXPECT_NE(third.output.find("lwm: warning: session snapshot"), std::string::npos)
      << third.output;
  EXPECT_EQ(third_answer, first_answer);
}

TEST_F(CliTest, KilledVideoIngestResumesFromTheCachedFrames) {
  if (!lwm::test::have_ffmpeg()) GTEST_SKIP() << "no ffmpeg CLI";
  const auto clip = scratch("killed-clip.mp4");
  ASSERT_EQ(write_test_clip(clip).exit_code, 0);
  const auto vl = scratch("killed-vision-model");
  ASSERT_EQ(make_vision_model(vl, 6).exit_code, 0);
  const auto cache = scratch("killed-cache");
  const std::string model = vl.string();
  const std::string video = clip.string();
  const std::string cache_dir = cache.string();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, STDOUT_FILENO);
    ::dup2(null_fd, STDERR_FILENO);
    ::execl(LWM_CLI, LWM_CLI, "ask", "--model", model.c_str(), "--video", video.c_str(),
            "--frames", "24", "--question", "Why?", "--max-tokens", "4", "--cache-dir",
            cache_dir.c_str(), nullptr);
    ::_exit(127);
  }
  // SIGKILL as soon as the first batch of frames is in the cache file: no handler runs.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool started = false;
  while (!started && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(cache, ec)) {
      started = started || (entry.path().extension() == ".lwmcodes" &&
                            std::filesystem::file_size(entry.path(), ec) >= 1000);
    }
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(started) << "the cache never received a frame";
  ASSERT_TRUE(WIFSIGNALED(status)) << "the ask finished before it could be killed";

  const std::string ask = "ask --model " + quoted(vl) + " --video " + quoted(clip) +
                          " --frames 24 --question Why? --max-tokens 4";
  std::string fresh_answer;
  ASSERT_EQ(run_lwm(ask, &fresh_answer).exit_code, 0);
  std::string resumed_answer;
  const CommandResult resumed = run_lwm(ask + " --cache-dir " + quoted(cache), &resumed_answer);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const auto at = resumed.output.find(" of 24 frames from the ingest cache");
  ASSERT_NE(at, std::string::npos) << resumed.output;
  const auto begin = resumed.output.rfind("lwm: ", at) + 5;
  const int from_cache = std::stoi(resumed.output.substr(begin, at - begin));
  EXPECT_GE(from_cache, 1) << resumed.output;
  EXPECT_LT(from_cache, 24) << resumed.output;
  EXPECT_EQ(resumed_answer, fresh_answer);
}

// ---- lwm eval needle ----

// Width and height from a PNG's IHDR chunk, or {0, 0} when the bytes are not a PNG.
std::pair<int, int> png_size(const std::string& bytes) {
  if (bytes.size() < 24 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return {0, 0};
  const auto be32 = [&](std::size_t at) {
    return (static_cast<unsigned char>(bytes[at]) << 24) |
           (static_cast<unsigned char>(bytes[at + 1]) << 16) |
           (static_cast<unsigned char>(bytes[at + 2]) << 8) |
           static_cast<unsigned char>(bytes[at + 3]);
  };
  return {be32(16), be32(20)};
}

// Checks what every needle run leaves: the table on stdout, results.json with one entry per cell
// and LWM's fields, and a heatmap PNG.
void expect_needle_outputs(const std::string& table, const std::filesystem::path& out,
                           std::size_t lengths, std::size_t depths, std::size_t rounds) {
  EXPECT_EQ(table.rfind("depth \\ length", 0), 0u) << table;
  EXPECT_EQ(static_cast<std::size_t>(std::count(table.begin(), table.end(), '\n')), depths + 2)
      << table;
  EXPECT_NE(table.find("overall: "), std::string::npos) << table;
  const auto json = nlohmann::json::parse(read_file(out / "results.json"));
  EXPECT_EQ(json.at("format"), "lwm-needle-eval");
  EXPECT_EQ(json.at("version"), 1);
  ASSERT_EQ(json.at("results").size(), lengths * depths * rounds);
  std::set<std::string> keys;
  for (const auto& cell : json.at("results")) {
    for (const char* field : {"context_length", "depth_percent", "response", "answer", "correct",
                              "seed", "prefill_seconds", "decode_seconds", "seconds"}) {
      EXPECT_TRUE(cell.contains(field)) << field << " in " << cell.dump();
    }
    EXPECT_EQ(cell.at("answer").get<std::string>().size(), 7u);
    keys.insert(cell.at("context_length").dump() + "/" + cell.at("depth_percent").dump() + "/" +
                cell.at("round").dump());
  }
  EXPECT_EQ(keys.size(), lengths * depths * rounds);  // every cell once
  const auto [width, height] = png_size(read_file(out / "heatmap.png"));
  EXPECT_GT(width, 100);
  EXPECT_GT(height, 50);
}

TEST_F(CliTest, EvalNeedleWritesTableJsonHeatmapAndResumes) {
  const auto out = scratch("needle");
  const std::string arguments = "eval needle " + model_arg() + " --haystack " +
                                quoted(lwm::test::sample_text_file()) +
                                " --lengths 300:500:2 --depths 3 --rounds 2 --max-tokens 4 "
                                "--reserve 120 --out " +
                                quoted(out);
  std::string table;
  const CommandResult result = run_lwm(arguments, &table);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  expect_needle_outputs(table, out, 2, 3, 2);
  EXPECT_NE(result.output.find("lwm: needle 100%"), std::string::npos) << result.output;
  // The sample story is about 1,000 tokens long: two rounds of 500 may need it twice, and the
  // command says so exactly when the results record it.
  const auto json = nlohmann::json::parse(read_file(out / "results.json"));
  const bool repeated = json.at("results")[0].at("extra").at("haystack_wraps").get<int>() > 0;
  EXPECT_EQ(result.output.find("text was repeated") != std::string::npos, repeated)
      << result.output;

  // Run again: every cell is found finished, nothing is recomputed, the same table comes out.
  std::string again;
  const CommandResult resumed = run_lwm(arguments + " --min-accuracy 0", &again);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("12 cells already finished"), std::string::npos) << resumed.output;
  EXPECT_EQ(again, table);
  // A random model finds no needles: a floor above its accuracy fails with exit code 6.
  expect_failure(run_lwm(arguments + " --min-accuracy 0.99"), 6, "below the floor");
  // Other settings in the same directory, bad grids and a missing haystack are refused.
  expect_failure(run_lwm(arguments + " --seed 4"), 1, "other settings: seed");
  expect_failure(run_lwm("eval needle " + model_arg() + " --haystack " +
                         quoted(lwm::test::sample_text_file()) + " --lengths 300:x"),
                 1, "MIN:MAX:N");
  expect_failure(run_lwm("eval needle " + model_arg() + " --lengths 300"), 1, "--haystack");
  expect_failure(run_lwm("eval needle " + model_arg() + " --haystack " +
                         quoted(scratch("none.txt")) + " --lengths 300"),
                 2, "none.txt");
  expect_failure(run_lwm("eval needle " + model_arg() + " --video --lengths 3"), 1, "text-only");
}

TEST_F(CliTest, EvalNeedleMultiNeedleAsksAboutSeveral) {
  const auto out = scratch("multi");
  std::string table;
  const CommandResult result = run_lwm(
      "eval needle " + model_arg() + " --haystack " + quoted(lwm::test::sample_text_file()) +
          " --lengths 400 --depths 4 --needles 3 --ask 2 --max-tokens 4 --reserve 120 "
          "--out " +
          quoted(out),
      &table);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto json = nlohmann::json::parse(read_file(out / "results.json"));
  ASSERT_EQ(json.at("results").size(), 4u);
  for (const auto& cell : json.at("results")) {
    EXPECT_EQ(cell.at("answer").size(), 2u);
    EXPECT_EQ(cell.at("correct").size(), 2u);
    EXPECT_EQ(cell.at("needle_depths").size(), 3u);
    EXPECT_EQ(
        cell.at("question").get<std::string>().rfind("What are the special magic numbers for ", 0),
        0u);
  }
}

TEST_F(CliTest, EvalNeedleVideoAsksAboutACaptionedFrame) {
  if (!lwm::test::have_ffmpeg()) GTEST_SKIP() << "no ffmpeg CLI";
  const auto vl = scratch("needle-vision-model");
  const CommandResult made =
      make_vision_model(vl, 9);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const auto out = scratch("needle-video");
  std::string table;
  const CommandResult result = run_lwm("eval needle --model " + quoted(vl) +
                                           " --video --lengths 2:4:2 --depths 2 --max-tokens 3 "
                                           "--out " +
                                           quoted(out),
                                       &table);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  expect_needle_outputs(table, out, 2, 2, 1);
  const auto json = nlohmann::json::parse(read_file(out / "results.json"));
  for (const auto& cell : json.at("results")) {
    EXPECT_EQ(cell.at("extra").at("samples_showing_caption"), 1) << cell.dump();
  }
}

// The King James Bible as a haystack (Debian's bible-kjv), written into the build directory by the
// `bible` program once; empty with `why` set when neither the file nor the program is there.
std::filesystem::path kjv_haystack(std::string& why) {
  const std::filesystem::path kjv = std::filesystem::path(LWM_BINARY_DIR) / "kjv.txt";
  if (std::filesystem::is_regular_file(kjv)) return kjv;
  if (std::system("command -v bible >/dev/null 2>&1") != 0) {
    why = "no `bible` program (Debian package bible-kjv)";
    return {};
  }
  // A name of its own per process: ctest may run two tests that want the Bible at once.
  const auto partial = kjv.string() + ".partial-" + std::to_string(::getpid());
  if (run_command("bible -f Gen1:1-Rev22:21 > '" + partial + "'").exit_code != 0) {
    why = "`bible` failed to write " + partial;
    return {};
  }
  std::filesystem::rename(partial, kjv);
  return kjv;
}

std::filesystem::path demo_model_dir() {
  return std::filesystem::path(LWM_BINARY_DIR) / "demo-model";
}

// The bundled demo model over the King James Bible: the outputs' shape.
TEST_F(CliTest, EvalNeedleOnTheKingJamesBibleWithTheDemoModel) {
  const std::filesystem::path demo = demo_model_dir();
  if (!std::filesystem::is_regular_file(demo / "config.json")) {
    GTEST_SKIP() << "no demo model in the build directory (build the `all` target)";
  }
  std::string why;
  const std::filesystem::path kjv = kjv_haystack(why);
  if (kjv.empty()) GTEST_SKIP() << why;
  const auto out = scratch("kjv");
  std::string table;
  const CommandResult result =
      run_lwm("eval needle --model " + quoted(demo) + " --haystack " + quoted(kjv) +
                  " --lengths 400:1000:3 --depths 3 --rounds 1 --max-tokens 4 --out " + quoted(out),
              &table);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  expect_needle_outputs(table, out, 3, 3, 1);
  EXPECT_EQ(result.output.find("text was repeated"), std::string::npos) << result.output;
  // The haystack is the Bible's text from Genesis on.
  const auto json = nlohmann::json::parse(read_file(out / "results.json"));
  EXPECT_EQ(json.at("settings").at("haystack_bytes").get<std::int64_t>(),
            static_cast<std::int64_t>(std::filesystem::file_size(kjv)));
}

// The demo model's accuracy floor (issue 8): a few cells of the needle grid over the King James
// Bible within its trained context, fresh cities, numbers and places every run (LWM_TEST_SEED
// replays). --reserve 96 makes each whole prompt about the cell's length (the document-qa
// template and question take ~90 tokens). The floor sits below the accuracy measured on the full
// grid (resources/demo/README.md) by enough that one or two misses in these cells do not fail it;
// `lwm eval needle` exits with 6 below it.
TEST_F(CliTest, DemoModelFindsNeedlesAboveItsFloor) {
  constexpr const char* kFloor = "0.85";
  const std::filesystem::path demo = demo_model_dir();
  if (!std::filesystem::is_regular_file(demo / "config.json")) {
    GTEST_SKIP() << "no demo model in the build directory (build the `all` target)";
  }
  std::string why;
  const std::filesystem::path kjv = kjv_haystack(why);
  if (kjv.empty()) GTEST_SKIP() << why;
  const std::uint64_t seed = lwm::test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  std::string table;
  const CommandResult result = run_lwm(
      "eval needle --model " + quoted(demo) + " --haystack " + quoted(kjv) +
          " --lengths 128:1024:3 --depths 5 --rounds 2 --reserve 96 --max-tokens 24 --seed " +
          std::to_string(seed) + " --min-accuracy " + kFloor + " --out " + quoted(scratch("floor")),
      &table);
  EXPECT_EQ(result.exit_code, 0) << table << result.output;
}

// A run killed (SIGKILL) after its first saved cell leaves a valid results.json; the same command
// then resumes, skipping the saved cells.
TEST_F(CliTest, EvalNeedleKilledRunResumes) {
  const auto out = scratch("killed");
  const std::string arguments = "eval needle " + model_arg() + " --haystack " +
                                quoted(lwm::test::sample_text_file()) +
                                " --lengths 300:500:2 --depths 3 --rounds 2 --max-tokens 1 "
                                "--reserve 120 --out " +
                                quoted(out);
  const auto results = out / "results.json";
  const CommandResult killed =
      run_command("{ " + lwm_cli() + " " + arguments +
                  " >/dev/null 2>&1 & pid=$!; i=0; while [ ! -s " + quoted(results) +
                  " ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; kill -9 $pid; "
                  "wait $pid; echo \"status $?\"; }");
  ASSERT_NE(killed.output.find("status 137"), std::string::npos) << killed.output;
  const auto saved = nlohmann::json::parse(read_file(results));  // whole, thanks to atomic writes
  const std::size_t finished = saved.at("results").size();
  ASSERT_GE(finished, 1u);
  ASSERT_LT(finished, 12u);
  std::string table;
  const CommandResult resumed = run_lwm(arguments, &table);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find(std::to_string(finished) + " cells already finished"),
            std::string::npos)
      << resumed.output;
  expect_needle_outputs(table, out, 2, 3, 2);
  const auto all = nlohmann::json::parse(read_file(results));
  for (std::size_t i = 0; i < finished; ++i)
    EXPECT_EQ(all.at("results")[i], saved.at("results")[i]);
}

}  // namespace
