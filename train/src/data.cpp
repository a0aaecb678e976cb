#include "lwm/train/data.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "lwm/error.h"

namespace lwm::train {

using nlohmann::json;

JsonlReader::JsonlReader(std::filesystem::path path)
    : path_(std::move(path)), in_(path_, std::ios::binary) {
  if (!in_) throw Error(ErrorKind::io, "cannot open the data set '" + path_.string() + "'");
}

void JsonlReader::seek(const Position& position) {
  in_.clear();
  in_.seekg(position.byte_offset);
  if (!in_)
    throw Error(ErrorKind::file_format, "data set '" + path_.string() + "' has no byte offset " +
                                            std::to_string(position.byte_offset) + " to resume at");
  position_ = position;
}

JsonlReader::Line JsonlReader::next() {
  bool wrapped = false;
  std::string text;
  for (;;) {
    if (!std::getline(in_, text)) {
      if (wrapped) {  // a whole pass from the start found nothing
        throw Error(ErrorKind::file_format,
                    "data set '" + path_.string() + "' has no line holding a JSON object");
      }
      // Spec §5.1: at the end the reader wraps to the start.
      wrapped = true;
      in_.clear();
      in_.seekg(0);
      position_ = {0, 0, position_.epoch + 1};
      continue;
    }
    const std::int64_t index = position_.line_index;
    position_.byte_offset += static_cast<std::int64_t>(text.size()) + (in_.eof() ? 0 : 1);
    position_.line_index += 1;
    json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_object()) return {std::move(value), index};
    // Blank or unparsable lines are skipped (spec §5.1).
  }
}

ExampleProcessor::ExampleProcessor(FieldFormat format, std::shared_ptr<const Tokenizer> tokenizer,
                                   std::int32_t bos_id, std::int32_t eos_id)
    : format_(std::move(format)),
      tokenizer_(std::move(tokenizer)),
      bos_id_(bos_id),
      eos_id_(eos_id) {
  if (format_.fields.empty() && format_.fields_from_example.empty()) {
    throw Error(ErrorKind::invalid_argument, "a data set needs 'fields' or 'fields_from_example'");
  }
}

namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t end = text.find(separator, begin);
    parts.push_back(text.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
    if (end == std::string::npos) return parts;
    begin = end + 1;
  }
}

std::vector<std::int32_t> ids_of(const json& value, const std::string& key) {
  std::vector<std::int32_t> ids;
  for (const json& v : value) {
    if (!v.is_number_integer())
      throw Error(ErrorKind::file_format, "field '" + key + "' holds a non-integer id");
    ids.push_back(v.get<std::int32_t>());
  }
  return ids;
}

}  // namespace

Example ExampleProcessor::process(const json& example, std::int64_t line_index) const {
  std::string spec = format_.fields;
  if (!format_.fields_from_example.empty()) {
    const auto it = example.find(format_.fields_from_example);
    if (it == example.end()) {
      throw Error(ErrorKind::file_format, "example " + std::to_string(line_index) +
                                              " has no key '" + format_.fields_from_example +
                                              "' naming its fields");
    }
    if (it->is_array()) {  // alternatives: fixed index or chosen with an RNG seeded by the line
      if (it->empty())
        throw Error(ErrorKind::file_format,
                    "example " + std::to_string(line_index) + " lists no fields");
      std::size_t choice = 0;
      if (format_.fields_index >= 0) {
        choice = static_cast<std::size_t>(format_.fields_index) % it->size();
      } else {
        std::mt19937_64 rng(static_cast<std::uint64_t>(line_index));
        choice = static_cast<std::size_t>(rng() % it->size());
      }
      spec = (*it)[choice].get<std::string>();
    } else {
      spec = it->get<std::string>();
    }
  }
  Example out;
  auto emit = [&](std::int32_t id, bool loss, bool vision) {
    out.tokens.push_back(id);
    out.loss_mask.push_back(loss);
    out.vision_mask.push_back(vision);
  };
  if (format_.add_bos_token) emit(bos_id_, false, false);  // BOS carries no loss
  const std::vector<std::string> fields = split(spec, ',');
  for (std::size_t f = 0; f < fields.size(); ++f) {
    std::string field = fields[f];
    bool loss = true;
    if (field.size() >= 2 && field.front() == '[' && field.back() == ']') {
      loss = false;
      field = field.substr(1, field.size() - 2);
    }
    if (field == "<|bos|>") {
      emit(bos_id_, loss, false);
      continue;
    }
    if (field == "<|eos|>") {
      emit(eos_id_, loss, false);
      continue;
    }
    if (field.find("vision") != std::string::npos) {
      const auto it = example.find(field);
      if (it == example.end() || !it->is_array()) {
        throw Error(ErrorKind::file_format, "example " + std::to_string(line_index) +
                                                ": vision field '" + field +
                                                "' must be a list of VQGAN codes");
      }
      const std::vector<std::int32_t> codes = ids_of(*it, field);
      const std::int64_t per = format_.tokens_per_frame;
      if (codes.empty() || static_cast<std::int64_t>(codes.size()) % per != 0) {
        throw Error(ErrorKind::file_format,
                    "example " + std::to_string(line_index) + ": vision field '" + field +
                        "' holds " + std::to_string(codes.size()) +
                        " codes, not a positive multiple of " + std::to_string(per));
      }
      const std::int64_t frames = static_cast<std::int64_t>(codes.size()) / per;
      std::vector<std::int64_t> keep;
      if (format_.max_frames > 0 && frames > format_.max_frames) {
        // int(linspace(0, n−1, max_frames)) (spec §5.1).
        for (std::int64_t i = 0; i < format_.max_frames; ++i) {
          const double x = format_.max_frames == 1
                               ? 0.0
                               : static_cast<double>(i) * static_cast<double>(frames - 1) /
                                     static_cast<double>(format_.max_frames - 1);
          keep.push_back(static_cast<std::int64_t>(x));
        }
      } else {
        for (std::int64_t i = 0; i < frames; ++i) keep.push_back(i);
      }
      for (std::size_t k = 0; k < keep.size(); ++k) {
        for (std::int64_t c = 0; c < per; ++c)
          emit(codes[static_cast<std::size_t>(keep[k] * per + c)], loss, true);
        emit(k + 1 == keep.size() ? format_.eov_token : format_.eof_token, loss, true);
      }
      continue;
    }
    // Text: a+b+c joined with the separator, or already tokenized ids.
    std::string text;
    std::vector<std::int32_t> ids;
    const std::vector<std::string> keys = split(field, '+');
    for (std::size_t k = 0; k < keys.size(); ++k) {
      const auto it = example.find(keys[k]);
      if (it == example.end()) {
        throw Error(ErrorKind::file_format,
                    "example " + std::to_string(line_index) + " has no key '" + keys[k] + "'");
      }
      if (it->is_array()) {
        const auto part = ids_of(*it, keys[k]);
        ids.insert(ids.end(), part.begin(), part.end());
      } else if (it->is_string()) {
        if (k > 0) text += format_.subfield_separator;
        text += it->get<std::string>();
      } else {
        throw Error(ErrorKind::file_format, "example " + std::to_string(line_index) + ": key '" +
                                                keys[k] +
                                                "' is neither text nor a list of token ids");
      }
    }
    if (!text.empty() || ids.empty()) {
      if (f == 0) text = format_.prepend_text + text;
      if (!tokenizer_) {
        throw Error(ErrorKind::invalid_argument,
                    "example " + std::to_string(line_index) + ": field '" + field +
                        "' holds text but the recipe names no tokenizer");
      }
      const auto encoded = tokenizer_->encode(text);
      ids.insert(ids.end(), encoded.begin(), encoded.end());
    }
    for (std::int32_t id : ids) emit(id, loss, false);
  }
  if (format_.add_eos_token) emit(eos_id_, true, false);  // EOS is predicted (spec §5.1)
  return out;
}

JsonlSource::JsonlSource(const std::filesystem::path& path, ExampleProcessor processor)
    : reader_(path), processor_(std::move(processor)) {}

Example JsonlSource::next() {
  const JsonlReader::Line line = reader_.next();
  return processor_.process(line.value, line.index);
}

json JsonlSource::state() const {
  const auto p = reader_.position();
  return {{"byte_offset", p.byte_offset}, {"line_index", p.line_index}, {"epoch", p.epoch}};
}

void JsonlSource::restore(const json& state) {
  reader_.seek({state.at("byte_offset").get<std::int64_t>(),
                state.at("line_index").get<std::int64_t>(), state.at("epoch").get<std::int64_t>()});
}

CopyTaskSource::CopyTaskSource(CopyTask task) : task_(task) {
  if (task_.low >= task_.high || task_.min_length <= 0 || task_.max_length < task_.min_length) {
    throw Error(ErrorKind::invalid_argument,
                "copy task: needs low < high and 0 < min_length <= max_length");
  }
}

Example CopyTaskSource::next() {
  std::mt19937_64 rng(task_.seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(index_++));
  const auto length =
      task_.min_length +
      static_cast<std::int64_t>(
          rng() % static_cast<std::uint64_t>(task_.max_length - task_.min_length + 1));
  std::vector<std::int32_t> body;
  for (std::int64_t i = 0; i < length; ++i) {
    body.push_back(task_.low + static_cast<std::int32_t>(
                                   rng() % static_cast<std::uint64_t>(task_.high - task_.low)));
  }
  Example e;
  auto emit = [&](std::int32_t id, bool loss) {
    e.tokens.push_back(id);
    e.loss_mask.push_back(loss);
    e.vision_mask.push_back(0);
  };
  emit(task_.bos_id, false);
  for (auto id : body) emit(id, false);
  emit(task_.separator, false);
  for (auto id : body) emit(id, true);
  emit(task_.eos_id, true);
  return e;
}

json CopyTaskSource::state() const {
  return {{"index", index_}};
}
void CopyTaskSource::restore(const json& state) {
  index_ = state.at("index").get<std::int64_t>();
}

MixtureSource::MixtureSource(std::vector<std::unique_ptr<ExampleSource>> sources,
                             std::vector<double> weights, std::uint64_t seed)
    : sources_(std::move(sources)), seed_(seed) {
  if (sources_.empty() || weights.size() != sources_.size()) {
    throw Error(ErrorKind::invalid_argument,
                "a data mix needs at least one source and one weight per source");
  }
  double total = 0.0;
  for (double w : weights) {
    if (!(w > 0.0) || !std::isfinite(w))
      throw Error(ErrorKind::invalid_argument, "data mix weights must be positive");
    cumulative_.push_back(total += w);
  }
  for (double& c : cumulative_) c /= total;
}

Example MixtureSource::next() {
  std::size_t which = 0;
  if (sources_.size() > 1) {
    std::mt19937_64 rng(seed_ * 0xD1B54A32D192ED03ull + static_cast<std::uint64_t>(draws_));
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    which = static_cast<std::size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), u) -
                                     cumulative_.begin());
    which = std::min(which, sources_.size() - 1);
  }
  ++draws_;
  return sources_[which]->next();
}

json MixtureSource::state() const {
  json sources = json::array();
  for (const auto& s : sources_) sources.push_back(s->state());
  return {{"draws", draws_}, {"sources", sources}};
}

void MixtureSource::restore(const json& state) {
  const json& sources = state.at("sources");
  if (sources.size() != sources_.size()) {
    throw Error(ErrorKind::file_format,
                "checkpoint data state has " + std::to_string(sources.size()) +
                    " sources for a mix of " + std::to_string(sources_.size()));
  }
  for (std::size_t i = 0; i < sources_.size(); ++i) sources_[i]->restore(sources[i]);
  draws_ = state.at("draws").get<std::int64_t>();
}

}  // namespace lwm::train
