// The video needle evaluation (needle_video.h): needle videos drawn by the ffmpeg program, then
// sampled, encoded and asked about like `lwm ask --video`.
#include "lwm/needle_video.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "eval/needle_cells.h"
#include "lwm/chat_template.h"
#include "lwm/error.h"
#include "lwm/needle.h"
#include "lwm/session.h"
#include "lwm/video.h"
#include "lwm/video_tokens.h"

extern char** environ;

namespace lwm {

namespace {

struct ProcessResult {
  bool started = false;
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs argv[0] (looked up on PATH) without a shell, its output captured in a temporary file.
ProcessResult run_process(const std::vector<std::string>& args) {
  ProcessResult result;
  char log_template[] = "/tmp/lwm-ffmpeg-XXXXXX";
  const int log_fd = ::mkstemp(log_template);
  if (log_fd < 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, log_fd, STDERR_FILENO);
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned == 0) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.started = true;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    // posix_spawnp reports a missing program as exit 127 from the child on some libcs.
    if (result.exit_code == 127) result.started = false;
  }
  ::close(log_fd);
  std::ifstream log(log_template, std::ios::binary);
  std::stringstream text;
  text << log.rdbuf();
  result.output = text.str();
  ::unlink(log_template);
  return result;
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4f", seconds);
  return text;
}

}  // namespace

bool ffmpeg_available(const std::string& ffmpeg) {
  const ProcessResult result = run_process({ffmpeg, "-hide_banner", "-version"});
  return result.started && result.exit_code == 0;
}

void write_needle_video(const std::filesystem::path& path, const NeedleVideoSpec& spec,
                        const std::string& ffmpeg) {
  if (!(spec.seconds > 0) || !(spec.fps > 0) || spec.size < 64) {
    throw Error(ErrorKind::invalid_argument, "a needle video needs a positive length and frame "
                                             "rate and at least 64 pixels a side");
  }
  const std::string enable = "enable='between(t," + seconds_text(spec.caption_begin) + "," +
                             seconds_text(spec.caption_end) + ")'";
  const int band = spec.size * 3 / 8;
  const std::string size = std::to_string(spec.size);
  // The caption's words above, the number large below, on a black band across the middle.
  const std::string caption = needle::video_caption(spec.number);
  const std::string words = caption.substr(0, caption.size() - spec.number.size());
  const std::string filter =
      "drawbox=x=0:y=(ih-" + std::to_string(band) + ")/2:w=iw:h=" + std::to_string(band) +
      ":color=black:t=fill:" + enable + ",drawtext=text='" + words +
      "':fontcolor=white:fontsize=" + std::to_string(spec.size / 14) +
      ":x=(w-tw)/2:y=h/2-" + std::to_string(band / 2 - 4) + ":" + enable +
      ",drawtext=text='" + spec.number + "':fontcolor=white:fontsize=" +
      std::to_string(spec.size / 6) + ":x=(w-tw)/2:y=h/2-" + std::to_string(spec.size / 36) +
      ":" + enable;
  const std::string source = "life=size=" + size + "x" + size + ":rate=" + seconds_text(spec.fps) +
                             ":seed=" + std::to_string(spec.background_seed % 2147483647) +
                             ":ratio=0.3:mold=8:life_color=0x70b0f0:death_color=0x203040"
                             ":mold_color=0x305060";
  const ProcessResult result = run_process(
      {ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-t",
       seconds_text(spec.seconds), "-vf", filter, "-pix_fmt", "yuv420p", path.string()});
  if (!result.started) {
    throw Error(ErrorKind::unsupported,
                "the video needle evaluation draws its videos with the ffmpeg program, and '" +
                    ffmpeg + "' could not be run; install ffmpeg (Debian: apt-get install ffmpeg)");
  }
  if (result.exit_code != 0) {
    throw Error(ErrorKind::io, "ffmpeg could not write the needle video '" + path.string() +
                                   "' (exit " + std::to_string(result.exit_code) +
                                   "): " + result.output);
  }
}

nlohmann::json needle_video_settings(const NeedleVideoOptions& options) {
  return {{"variant", "video"},
          {"frames", options.grid.context_lengths},
          {"depths", options.grid.depths},
          {"rounds", options.grid.rounds},
          {"seconds_per_frame", options.seconds_per_frame},
          {"fps", options.fps},
          {"size", options.size},
          {"max_new_tokens", options.max_new_tokens},
          {"seed", options.seed},
          {"template", needle::kVideoTemplate}};
}

void run_needle_video_eval(const Model& model, const Tokenizer& tokenizer, const Vqgan& vqgan,
                           const NeedleVideoOptions& options, NeedleResultsFile& results,
                           const ProgressCallback& progress, const NeedleCellCallback& on_cell) {
  needle_detail::check_needle_counts(options.grid, 1, 1);
  if (!model.config().has_vision()) {
    throw Error(ErrorKind::invalid_argument,
                "the video needle evaluation needs a vision-language model; this model is "
                "text-only (its config.json has no vision_vocab_size)");
  }
  if (!ffmpeg_available(options.ffmpeg)) {
    throw Error(ErrorKind::unsupported,
                "the video needle evaluation draws its videos with the ffmpeg program, and '" +
                    options.ffmpeg + "' could not be run; install ffmpeg (Debian: apt-get "
                    "install ffmpeg)");
  }
  const std::filesystem::path work_dir =
      options.work_dir.empty() ? std::filesystem::temp_directory_path() : options.work_dir;
  std::filesystem::create_directories(work_dir);

  const auto body = [&](const NeedleCellKey& key, const needle_detail::CellProgress& step) {
    const auto start = std::chrono::steady_clock::now();
    NeedleCellResult result;
    result.key = key;
    result.seed = needle_cell_seed(options.seed, key);
    std::mt19937_64 rng(result.seed);
    const std::string number = needle::random_number(rng);

    // Which video frame sample k of LWM's uniform sampling lands on, and a caption window around
    // it that reaches no other sample.
    const std::int64_t samples = key.context_length;
    const double seconds = static_cast<double>(samples) * options.seconds_per_frame;
    const auto frame_count = static_cast<std::int64_t>(std::llround(seconds * options.fps));
    const auto indices = uniform_frame_indices(frame_count, samples);
    if (static_cast<std::int64_t>(indices.size()) < samples) {
      throw Error(ErrorKind::invalid_argument,
                  "a " + seconds_text(seconds) + " s video at " + seconds_text(options.fps) +
                      " frames/s has fewer than " + std::to_string(samples) +
                      " frames; raise --seconds-per-frame or --fps");
    }
    const auto k = static_cast<std::size_t>(
        std::llround(key.depth_percent / 100.0 * static_cast<double>(samples - 1)));
    std::int64_t gap = frame_count;
    if (k > 0) gap = std::min(gap, indices[k] - indices[k - 1]);
    if (k + 1 < indices.size()) gap = std::min(gap, indices[k + 1] - indices[k]);
    const std::int64_t half = std::clamp<std::int64_t>((gap - 1) / 2, 0, 2);
    NeedleVideoSpec spec;
    spec.seconds = seconds;
    spec.fps = options.fps;
    spec.size = options.size;
    spec.number = number;
    spec.caption_begin = (static_cast<double>(indices[k] - half) - 0.25) / options.fps;
    spec.caption_end = (static_cast<double>(indices[k] + half) + 0.25) / options.fps;
    spec.background_seed = rng();
    const auto video_path = work_dir / ("needle-" + std::to_string(key.context_length) + "-" +
                                        std::to_string(key.depth_percent) + "-" +
                                        std::to_string(key.round) + ".mp4");
    write_needle_video(video_path, spec, options.ffmpeg);

    FrameSamplingOptions sampling;
    sampling.max_frames = samples;
    sampling.progress = [&](const Progress& p) {
      return step(p.total > 0 ? 0.5 * p.done / p.total : 0.0);
    };
    VideoTokens video;
    try {
      video = tokenize_video(video_path, vqgan, sampling);
    } catch (...) {
      std::filesystem::remove(video_path);
      throw;
    }
    std::filesystem::remove(video_path);

    std::int64_t shown = 0, shown_sample = -1;
    for (std::size_t i = 0; i < video.frames.size(); ++i) {
      const double t = video.frames[i].seconds;
      if (t >= spec.caption_begin && t <= spec.caption_end) {
        ++shown;
        shown_sample = static_cast<std::int64_t>(i);
      }
    }

    // The question comes before the video here, so the context is sized from the whole prompt.
    const ChatTemplate& chat_template = ChatTemplates::builtin().get(needle::kVideoTemplate);
    const Prompt prompt = render_prompt(chat_template, tokenizer,
                                        {{"question", needle::video_question()}}, &video.codes);
    SessionOptions session_options;
    session_options.template_name = needle::kVideoTemplate;
    session_options.context = prompt.size() + options.max_new_tokens;
    session_options.prefill_chunk = options.prefill_chunk;
    const auto session = Session::for_video(model, tokenizer, video.codes, session_options);
    GenerationOptions generation;
    generation.max_new_tokens = options.max_new_tokens;
    generation.prefill_chunk = options.prefill_chunk;
    const AskResult answer =
        session->ask(needle::video_question(), generation, {}, [&](const Progress& p) {
          return step(p.total > 0 ? 0.5 + 0.5 * p.done / p.total : 0.5);
        });

    result.question = needle::video_question();
    result.response = answer.generation.text;
    result.answers = {number};
    result.found = {needle::is_correct(result.response, number)};
    result.needle_depths = {key.depth_percent};
    result.prompt_tokens = prompt.size();
    result.reused_tokens = answer.reused_tokens;
    result.prefill_seconds = answer.generation.prefill_seconds;
    result.decode_seconds = answer.generation.decode_seconds;
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.extra = {{"frames", static_cast<std::int64_t>(video.frames.size())},
                    {"video_seconds", seconds},
                    {"needle_sample", static_cast<std::int64_t>(k)},
                    {"needle_video_frame", indices[k]},
                    {"caption_seconds", {spec.caption_begin, spec.caption_end}},
                    {"samples_showing_caption", shown},
                    {"sample_showing_caption", shown_sample}};
    return result;
  };
  needle_detail::run_cells(options.grid, results, body, progress, on_cell);
}

}  // namespace lwm
