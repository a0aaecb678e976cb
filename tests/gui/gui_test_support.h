// Helpers for the Qt Test suites of lwm::gui: the run's seed, random chats, tiny models, books
// and videos.
#pragma once

#include <QString>
#include <QTemporaryDir>
#include <random>

#include "lwm/gui/chat_record.h"

namespace lwm::gui::test {

// Differs per run (fresh random data every run) unless LWM_TEST_SEED is set, like the GoogleTest
// suites (tests/support). Call log_seed() in initTestCase so a failing run can be replayed.
quint64 test_seed();
void log_seed(const char* suite);

// Text of up to `max_length` code points drawn from ASCII, Latin-1, Greek, Cyrillic, Hebrew,
// Arabic, CJK, combining marks, emoji outside the BMP, quotes, backslashes, tabs and newlines.
QString random_text(std::mt19937_64& rng, int max_length);

// A chat with random fields and `messages` alternating questions and answers.
ChatRecord random_chat(std::mt19937_64& rng, int messages);

// Whole-file helpers. write_file returns false when the file cannot be written; a test that
// needs "a file where a folder should be" (to make every write below it fail) writes one.
QByteArray read_file(const QString& path);
bool write_file(const QString& path, const QByteArray& bytes = {});

// The engine and window suites' fixtures: a random "tiny" model in `dir`/name with a tokenizer
// trained on the sample story (vision: the tiny-vision preset and a tiny VQGAN); a Markdown book
// of `chapters` chapters ("# Chapter N: …") of `paragraphs` paragraphs after a title heading; a
// `seconds`-long 64×48 video at 8 fps made with the ffmpeg CLI (empty when ffmpeg is missing).
QString make_tiny_model(const QTemporaryDir& dir, const QString& name, bool vision, quint64 seed);
QString write_book(const QTemporaryDir& dir, int chapters, int paragraphs);
QString write_video(const QTemporaryDir& dir, int seconds);

// Empty when equal; otherwise the first field that differs, e.g. "messages[3].stats.prompt_tokens:
// 12 != 13".
QString first_difference(const ChatRecord& a, const ChatRecord& b);

}  // namespace lwm::gui::test
