// How the window writes numbers for people: video times, sizes, durations.
#pragma once

#include <QString>

namespace lwm::gui {

// "0:42", "12:05", "1:02:03" (hours only when needed); whole seconds, rounded down.
QString format_timestamp(double seconds);
// "512 B", "1.50 KiB", "36.0 MiB", "2.00 GiB".
QString format_bytes(qint64 bytes);
// "under 0.1 s", "0.4 s", "12 s", "3 min 20 s", "1 h 05 min"; "unknown" for a negative value.
QString format_duration(double seconds);

}  // namespace lwm::gui
