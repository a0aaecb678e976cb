// Fixtures shared by the GUI tests: a tiny random model (text or vision) with a tokenizer trained
// on the sample story, a generated Markdown book with chapters, and a generated video.
#pragma once

#include <QString>
#include <QTemporaryDir>

namespace lwm::gui::test {

// A random "tiny" model in `dir`/name (vision: the tiny-vision preset and a tiny VQGAN).
// The seed comes from LWM_TEST_SEED when set, else from the clock (printed by the caller).
QString make_tiny_model(const QTemporaryDir& dir, const QString& name, bool vision,
                        quint64 seed);

// A Markdown book of `chapters` chapters ("# Chapter N: …"), each `paragraphs` paragraphs long.
QString write_book(const QTemporaryDir& dir, int chapters, int paragraphs);

// A `seconds`-long 64×48 test video made with the ffmpeg CLI; empty when ffmpeg is missing.
QString write_video(const QTemporaryDir& dir, int seconds);

quint64 test_seed();

}  // namespace lwm::gui::test
