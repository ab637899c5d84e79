// The mo_host_api table handed to every plugin.
#pragma once

#include <mobileops/host.h>

namespace mobileops::core::host {

const mo_host_api &api();

} // namespace mobileops::core::host
