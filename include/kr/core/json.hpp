#pragma once

#include <nlohmann/json.hpp>

namespace kr {
using Json = nlohmann::ordered_json;
}
