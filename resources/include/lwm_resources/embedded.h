// Resource files embedded at build time (see resources/CMakeLists.txt).
#pragma once

#include <string_view>

namespace lwm::resources {

// resources/templates/chat_templates.json
std::string_view chat_templates_json();

}  // namespace lwm::resources
