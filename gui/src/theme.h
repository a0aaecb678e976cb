// Light, dark or the system's palette (issue 7, settings: theme).
#pragma once

#include <QString>

namespace lwm::gui {

// "light", "dark" or "system"; an unknown name means "system".
void apply_theme(const QString& name);

}  // namespace lwm::gui
