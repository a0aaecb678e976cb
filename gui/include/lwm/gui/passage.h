// The passage a citation points at (issue 7, "Look": the reader "scrolls to the cited chapter and
// page and highlights the passage"). A citation such as "chapter 3" names a whole chapter; the
// words around it in the answer say which part of that chapter the answer is about. The reader
// highlights the sentence of the chapter (or page) that shares the most telling words with the
// citing sentence, weighing words rare within the chapter most, and the chapter's first
// paragraph when no word is shared. Pure functions on QString positions, so they are tested
// without a window.
#pragma once

#include <QPair>
#include <QString>

namespace lwm::gui {

// The sentence of `text` around position `at` (the citation's place in an answer): from after the
// previous '.', '!', '?' or line break to the next one. Empty when `at` is outside the text.
QString citing_sentence(const QString& text, qsizetype at);

// The range [first, second) of `text` within [begin, end) that `context` (a citing sentence)
// points to: the best-matching sentence, else the first paragraph. `skip_heading` leaves the
// range's first line (a chapter's title) out of the candidates when there is more after it.
// {begin, begin} only when the range holds no text.
QPair<qsizetype, qsizetype> cited_passage(const QString& text, qsizetype begin, qsizetype end,
                                          const QString& context, bool skip_heading);

}  // namespace lwm::gui
