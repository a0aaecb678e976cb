#include "lwm/gui/text_format.h"

#include <cmath>

#include "lwm/format.h"

namespace lwm::gui {

QString format_timestamp(double seconds) {
  const qint64 total = seconds > 0 ? static_cast<qint64>(std::floor(seconds)) : 0;
  const qint64 h = total / 3600, m = (total / 60) % 60, s = total % 60;
  if (h > 0)
    return QStringLiteral("%1:%2:%3").arg(h).arg(m, 2, 10, QChar('0')).arg(s, 2, 10, QChar('0'));
  return QStringLiteral("%1:%2").arg(m).arg(s, 2, 10, QChar('0'));
}

QString format_bytes(qint64 bytes) { return QString::fromStdString(lwm::format_bytes(bytes)); }

QString format_duration(double seconds) {
  if (seconds < 0) return QStringLiteral("unknown");
  if (seconds < 0.05) return QStringLiteral("under 0.1 s");
  if (seconds < 10) return QStringLiteral("%1 s").arg(seconds, 0, 'f', 1);
  const qint64 total = static_cast<qint64>(std::round(seconds));
  if (total < 60) return QStringLiteral("%1 s").arg(total);
  if (total < 3600)
    return QStringLiteral("%1 min %2 s").arg(total / 60).arg(total % 60, 2, 10, QChar('0'));
  return QStringLiteral("%1 h %2 min").arg(total / 3600).arg((total / 60) % 60, 2, 10, QChar('0'));
}

}  // namespace lwm::gui
